//! A large message streams through `ferrymail all`: the process grows by far less than the
//! message while it arrives, by DATA or by BDAT, and gives that memory back afterwards.
//! Measured as an administrator would, in the resident set of the real process
//! (`/proc/<pid>/status`), with Python's smtplib as the client.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrymail_e2e::{EMBEDDED_STORE, Ferrymail, PEER_PATIENCE, python};

/// The message: 40 MB, the size the memory bound is documented for.
const MESSAGE_BYTES: usize = 40_000_000;

/// What README states a session holds of a message in transit, whatever its size, with the
/// queue's blob writer for it (about 0.5 MiB and 2 MiB), and what verification keeps (the
/// header section); with room for the allocator's slack.
const GROWTH_BOUND_KIB: u64 = 8 * 1024;

/// How far above its resident set before the message the process may stay once the message
/// is queued: the allocator gives what the message used back (README).
const RETURNED_BOUND_KIB: u64 = 4 * 1024;

fn config() -> String {
    format!(
        r#"
[server]
hostname = "mx.test"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[session.rcpt]
relay = true
[session.data.limits]
size = "100MB"
{EMBEDDED_STORE}"#
    )
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Makes `VmHWM` (the peak resident set) start again from the current resident set.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// Sends one message of [`MESSAGE_BYTES`] with smtplib, by `DATA` or in 1 MiB `BDAT`
/// chunks, and returns the final reply code.
fn send_large(smtp: SocketAddr, bdat: bool) -> String {
    python(&format!(
        r#"
import smtplib
line = b"x" * 76 + b"\r\n"
body = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: large\r\n\r\n" + line * ({size} // len(line))
with smtplib.SMTP("{host}", {port}) as s:
    s.ehlo("client.example.org")
    if not {bdat}:
        print(s.sendmail("a@example.com", ["b@example.net"], body))
    else:
        s.mail("a@example.com")
        s.rcpt("b@example.net")
        step = 1 << 20
        for at in range(0, len(body), step):
            chunk = body[at:at + step]
            last = b" LAST" if at + step >= len(body) else b""
            s.send(b"BDAT %d%s\r\n" % (len(chunk), last))
            s.send(chunk)
            code, text = s.getreply()
        print(code)
"#,
        size = MESSAGE_BYTES,
        host = smtp.ip(),
        port = smtp.port(),
        bdat = if bdat { "True" } else { "False" },
    ))
    .trim()
    .to_string()
}

/// Waits until the resident set is at most `bound_kib`, returning the last reading.
fn wait_for_rss_at_most(pid: u32, bound_kib: u64) -> u64 {
    let deadline = Instant::now() + PEER_PATIENCE;
    loop {
        let rss = status_kib(pid, "VmRSS:");
        if rss <= bound_kib || Instant::now() > deadline {
            return rss;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_40_mb_message_by_data_and_by_bdat_stays_within_the_documented_bound() {
    let mut process = Ferrymail::start("all", &config());
    let smtp = process.address("smtp");
    // Delivery fails temporarily (no MX), so the message stays queued and unread.
    process.dns.as_ref().unwrap().fail("example.net");
    let pid = process.pid();
    // The first large message fills what is filled once: the store's page cache (README:
    // at most 32 MiB), the allocator's arenas, the threads' buffers.
    assert_eq!(send_large(smtp, false), "{}");
    for bdat in [false, true] {
        let before = status_kib(pid, "VmRSS:");
        reset_peak(pid);
        let reply = send_large(smtp, bdat);
        assert_eq!(reply, if bdat { "250" } else { "{}" }, "queued");
        let peak = status_kib(pid, "VmHWM:");
        let growth = peak.saturating_sub(before);
        eprintln!("bdat={bdat}: {before} KiB before, peak {peak} KiB (+{growth} KiB)");
        assert!(
            growth <= GROWTH_BOUND_KIB,
            "a {MESSAGE_BYTES}-byte message grew the process by {growth} KiB (bdat={bdat})"
        );
        let after = wait_for_rss_at_most(pid, before + RETURNED_BOUND_KIB);
        eprintln!("bdat={bdat}: {after} KiB after");
        assert!(
            after <= before + RETURNED_BOUND_KIB,
            "{after} KiB after the message, {before} KiB before (bdat={bdat})"
        );
    }
}
