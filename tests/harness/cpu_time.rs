//! CPU time used by the processes a benchmark measures, read from `/proc` (Linux).
//!
//! Throughput on a shared machine moves with whatever else runs; the CPU a server spends per
//! message moves much less, so the benches print both.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Times of one `/proc/<pid>/stat`: its own (user + system) and its reaped children's.
#[derive(Debug, Clone, Copy, Default)]
struct StatTimes {
    parent: u32,
    own_ticks: u64,
    children_ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` once the process is gone.
fn stat(pid: u32) -> Option<StatTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split(' ').collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // Fields 4 (ppid), 14-17 (utime, stime, cutime, cstime) of proc_pid_stat(5), from 3.
    Some(StatTimes {
        parent: u32::try_from(field(1)?).ok()?,
        own_ticks: field(11)? + field(12)?,
        children_ticks: field(13)? + field(14)?,
    })
}

/// Clock ticks per second of `/proc`'s times (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100)
    })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// CPU used so far by process `pid`, the children it has reaped, and its live children
/// (Postfix's master and the daemons it spawns and reaps); zero once `pid` is gone.
pub fn process_tree_cpu(pid: u32) -> Duration {
    let Some(root) = stat(pid) else {
        return Duration::ZERO;
    };
    let mut ticks = root.own_ticks + root.children_ticks;
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    for entry in entries {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(times) = stat(child).filter(|t| t.parent == pid) {
            ticks += times.own_ticks + times.children_ticks;
        }
    }
    ticks_to_duration(ticks)
}

/// CPU used so far by this process itself, every thread (a server a benchmark runs in a
/// thread, and the threads reading its peers' logs), without its children.
pub fn own_cpu() -> Duration {
    stat(std::process::id()).map_or(Duration::ZERO, |t| ticks_to_duration(t.own_ticks))
}

/// CPU used so far by the children this process has waited for (e.g. finished clients).
pub fn reaped_children_cpu() -> Duration {
    stat(std::process::id()).map_or(Duration::ZERO, |t| ticks_to_duration(t.children_ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_child_shows_in_the_reaped_time() {
        let before = reaped_children_cpu();
        // Roughly 0.2 s of CPU in a child, then waited for.
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(reaped_children_cpu() > before);
        assert!(process_tree_cpu(std::process::id()) >= reaped_children_cpu());
        assert_eq!(process_tree_cpu(u32::MAX), Duration::ZERO);
    }
}
