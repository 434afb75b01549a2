//! The cost of milters and MTA hooks: acceptance and relay throughput of `ferrymail all` with
//! no filter, with rspamd as a milter, with an MTA hook, and with both, in the same run with
//! the same load; Postfix without and with the same rspamd as a milter for reference.
//!
//! Postfix's `smtp-source` (20 sessions, 4 KB messages, a connection per message) sends to
//! each target in turn: `ferrymail all` (the release build, embedded store, relaying to a
//! discarding `smtp-sink` with `concurrency = 20`), or a private Postfix relaying to its own
//! sink. The milter is one private rspamd (Debian's, proxy worker in milter mode, scanning by
//! itself, no network lookups), asked at every stage; the hook is an in-process HTTP server
//! in this benchmark answering `{"action":"accept"}` at `data` (Stalwart's default stage),
//! so its CPU shows in the benchmark process's own. A run is timed from smtp-source's start
//! until the sink has every message; each process's CPU is counted over the run. Rounds
//! rotate the order; the table gives medians.
//!
//! With `FERRYMAIL_BASELINE_BIN` naming a release build of an earlier revision, a first row
//! measures it without filters, so that "no filters" can be compared with the code before
//! filters existed, in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferrymail_e2e::{
    Ferrymail, HookServer, Postfix, Rspamd, SmtpSink, SmtpSource, bench_config, check_received,
    discarding_sink, load_average, machine_line, median, own_cpu, process_tree_cpu,
    reaped_children_cpu, release_binary, require_peer,
};

const SESSIONS: usize = 20;
const MESSAGE_BYTES: usize = 4096;
const MESSAGES_PER_RUN: usize = 1000;
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;
const ROUNDS: usize = 3;
const RECIPIENT: &str = "rcpt@relay.bench.test";
const REMOTE_CONCURRENCY: usize = 20;

/// What a target runs.
enum Server {
    Ferrymail(Ferrymail),
    Postfix(Postfix),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Ferrymail(process) => process.pid(),
            Server::Postfix(postfix) => postfix.master_pid().unwrap(),
        }
    }

    fn log(&self) -> String {
        match self {
            Server::Ferrymail(process) => process.dump(),
            Server::Postfix(postfix) => postfix.log(),
        }
    }
}

/// One target and its sink.
struct Target {
    label: &'static str,
    // Dropped in declaration order: the server before its sink.
    server: Server,
    smtp: SocketAddr,
    sink: SmtpSink,
    /// Whether the target asks rspamd, whose CPU then counts.
    milter: bool,
    sent: usize,
}

/// CPU per message of each process over one run, and the rate.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    server: f64,
    milter: f64,
    bench: f64,
    sink: f64,
    client: f64,
}

/// The `[session.milter]` and `[session.hook]` tables of a target.
fn filters(milter: Option<SocketAddr>, hook: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(milter) = milter {
        out.push_str(&format!(
            "[session.milter.rspamd]\nhostname = \"{}\"\nport = {}\n\
             stages = [\"connect\", \"ehlo\", \"mail\", \"rcpt\", \"data\"]\n",
            milter.ip(),
            milter.port()
        ));
    }
    if let Some(url) = hook {
        out.push_str(&format!("[session.hook.bench]\nurl = \"{url}\"\n"));
    }
    out
}

impl Target {
    fn ferrymail(
        label: &'static str,
        program: Option<&PathBuf>,
        milter: Option<SocketAddr>,
        hook: Option<&str>,
    ) -> Target {
        let sink = discarding_sink(None);
        let config = format!(
            "{}\n{}",
            bench_config(
                sink.address(),
                REMOTE_CONCURRENCY,
                "[session.rcpt]\nrelay = true\n"
            ),
            filters(milter, hook)
        );
        let mut process = match program {
            Some(program) => Ferrymail::start_program(program, "all", &config, &[], &[]),
            None => Ferrymail::start("all", &config),
        };
        let smtp = process.address("smtp");
        Target {
            label,
            server: Server::Ferrymail(process),
            smtp,
            sink,
            milter: milter.is_some(),
            sent: 0,
        }
    }

    fn postfix(label: &'static str, milter: Option<SocketAddr>) -> Target {
        let sink = discarding_sink(None);
        let settings = milter.map_or_else(String::new, |m| {
            format!("smtpd_milters = inet:{m}\nmilter_default_action = tempfail\n")
        });
        let postfix = Postfix::start_with_settings(sink.address(), &settings);
        Target {
            label,
            smtp: postfix.address(),
            server: Server::Postfix(postfix),
            sink,
            milter: milter.is_some(),
            sent: 0,
        }
    }

    fn send(&mut self, messages: usize, rspamd: &Rspamd) -> Run {
        let load = SmtpSource {
            sessions: SESSIONS,
            message_bytes: MESSAGE_BYTES,
            messages,
            reuse_connections: false,
            recipient: RECIPIENT.to_owned(),
        };
        self.sent += messages;
        let expected = self.sent;
        let pid = self.server.pid();
        let sink_pid = self.sink.pid();
        let sink_cpu = || sink_pid.map_or(Duration::ZERO, process_tree_cpu);
        let milter_cpu = || {
            if self.milter {
                process_tree_cpu(rspamd.pid())
            } else {
                Duration::ZERO
            }
        };
        let before = (
            process_tree_cpu(pid),
            milter_cpu(),
            own_cpu(),
            sink_cpu(),
            reaped_children_cpu(),
        );
        let log = || self.server.log();
        let took = load.run_until_received(self.smtp, &self.sink, expected, log);
        check_received(&self.sink, expected, log);
        let n = messages as f64;
        let per_msg =
            |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() * 1e6 / n;
        Run {
            rate: n / took.as_secs_f64(),
            server: per_msg(process_tree_cpu(pid), before.0),
            milter: per_msg(milter_cpu(), before.1),
            bench: per_msg(own_cpu(), before.2),
            sink: per_msg(sink_cpu(), before.3),
            client: per_msg(reaped_children_cpu(), before.4),
        }
    }
}

fn main() {
    for peer in ["smtp-source", "smtp-sink", "postfix", "rspamd"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let baseline = std::env::var_os("FERRYMAIL_BASELINE_BIN").map(PathBuf::from);
    let load_at_start = load_average();
    let rspamd = Rspamd::start();
    let hook = HookServer::start();
    let url = hook.url();
    let milter = Some(rspamd.address());
    let mut targets = Vec::new();
    if let Some(program) = &baseline {
        targets.push(Target::ferrymail("before", Some(program), None, None));
    }
    targets.push(Target::ferrymail("no filters", None, None, None));
    targets.push(Target::ferrymail("rspamd milter", None, milter, None));
    targets.push(Target::ferrymail("MTA hook", None, None, Some(&url)));
    targets.push(Target::ferrymail("milter + hook", None, milter, Some(&url)));
    targets.push(Target::postfix("Postfix", None));
    targets.push(Target::postfix("Postfix+rspamd", milter));
    for target in &mut targets {
        target.send(WARM_UP_MESSAGES, &rspamd);
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for round in 0..ROUNDS {
        for step in 0..targets.len() {
            let index = (round + step) % targets.len();
            runs[index].push(targets[index].send(MESSAGES_PER_RUN, &rspamd));
        }
    }
    println!(
        "Milters and MTA hooks: smtp-source -> server -> smtp-sink, {SESSIONS} sessions, \
         {MESSAGE_BYTES}-byte messages, {MESSAGES_PER_RUN} messages per run, median of {ROUNDS} rounds"
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    if let Some(program) = &baseline {
        println!("before: {}", program.display());
    }
    println!("milter: rspamd in milter mode, asked at every stage; hook: in this process, at data");
    println!("{}", machine_line(&load_at_start));
    println!(
        "{:<15} {:>8} {:>12} {:>12} {:>16} {:>10} {:>13}",
        "", "msgs/s", "server CPU", "rspamd CPU", "bench (hook) CPU", "sink CPU", "client CPU"
    );
    let mut medians = Vec::new();
    for (target, runs) in targets.iter().zip(&runs) {
        let m = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let row = Run {
            rate: m(|r| r.rate),
            server: m(|r| r.server),
            milter: m(|r| r.milter),
            bench: m(|r| r.bench),
            sink: m(|r| r.sink),
            client: m(|r| r.client),
        };
        println!(
            "{:<15} {:>8.0} {:>9.0} µs {:>9.0} µs {:>13.0} µs {:>7.0} µs {:>10.0} µs",
            target.label, row.rate, row.server, row.milter, row.bench, row.sink, row.client
        );
        medians.push((target.label, row));
    }
    let row = |label: &str| {
        medians
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, r)| *r)
            .unwrap()
    };
    let none = row("no filters");
    if baseline.is_some() {
        let before = row("before");
        println!(
            "no filters / before: throughput {:.3}, server CPU per message {:.3} (target: within noise, about ±5%)",
            none.rate / before.rate,
            none.server / before.server
        );
    }
    for label in ["rspamd milter", "MTA hook", "milter + hook"] {
        let with = row(label);
        println!(
            "{label}: ferrymail's own cost {:+.0} µs/message, the filter's {:.0} µs/message, throughput {:.3} of no filters",
            with.server - none.server,
            (with.milter - none.milter) + (with.bench - none.bench),
            with.rate / none.rate
        );
    }
    let (postfix, postfix_milter) = (row("Postfix"), row("Postfix+rspamd"));
    println!(
        "Postfix with rspamd: Postfix's own cost {:+.0} µs/message; ferrymail / Postfix with the milter: throughput {:.2}",
        postfix_milter.server - postfix.server,
        row("rspamd milter").rate / postfix_milter.rate
    );
    for (target, runs) in targets.iter().zip(&runs) {
        let rounds: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rate)).collect();
        println!("{} rounds (msgs/s): {}", target.label, rounds.join(", "));
    }
}
