//! `ferrymail all` killed with SIGKILL in the middle of a load of 5,000 messages, then
//! restarted on the same store: every message that was answered `250` reaches the relay.
//!
//! The load comes from a Python smtplib client rather than Postfix's smtp-source because the
//! test must know *which* messages were acknowledged: each carries its own Message-ID, and the
//! client prints it the moment `250` arrives.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrymail_e2e::{Ferrymail, SmtpSink, SmtpSinkOptions};

const MESSAGES: usize = 5000;
const KILL_AFTER: usize = 1500;

const CLIENT: &str = r#"
import smtplib, sys, threading
host, port, total, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()
def worker(first):
    try:
        s = smtplib.SMTP(host, port, timeout=30)
        s.ehlo("load.test")
        for n in range(first, total, threads):
            body = "Message-ID: <%d@crash.test>\r\nSubject: %d\r\n\r\nmessage %d\r\n" % (n, n, n)
            s.sendmail("load@client.test", ["rcpt%d@remote.test" % n], body.encode())
            with lock:
                print("ACK %d" % n, flush=True)
    except Exception as e:
        with lock:
            print("STOP %r" % e, flush=True)
ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
"#;

fn config(store: &std::path::Path, sink_port: u16) -> String {
    format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
max-connections-per-ip = 64
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[store.local]
type = "embedded"
path = "{store}"
[storage]
data = "local"
[session.rcpt]
relay = true
max-recipients = 10
[session.data.limits]
messages = 10000
[remote.sink]
address = "127.0.0.1"
port = {sink_port}
protocol = "smtp"
tls.implicit = false
timeout = "10s"
concurrency = 20
[queue.outbound]
next-hop = "sink"
"#,
        store = store.display()
    )
}

#[test]
fn every_acknowledged_message_survives_a_sigkill_mid_load() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let store = tempfile::tempdir().unwrap();
    let config = config(&store.path().join("queue"), sink.address().port());
    let mut process = Some(Ferrymail::start("all", &config));
    let smtp = process.as_mut().map(|p| p.address("smtp")).unwrap();

    let mut client = Command::new("python3")
        .args(["-c", CLIENT])
        .args([
            smtp.ip().to_string(),
            smtp.port().to_string(),
            MESSAGES.to_string(),
            "20".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acknowledged = BTreeSet::new();
    let lines = BufReader::new(client.stdout.take().unwrap()).lines();
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ACK ") {
            acknowledged.insert(format!("<{n}@crash.test>"));
        }
        if acknowledged.len() >= KILL_AFTER {
            // Dropping the handle kills the process with SIGKILL: no shutdown, no flush.
            drop(process.take());
        }
    }
    assert!(client.wait().unwrap().success());
    assert!(
        process.is_none(),
        "the load ended before the kill: {} acknowledged",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < MESSAGES,
        "the kill came after the last message: nothing was in flight"
    );

    let _restarted = Ferrymail::start("all", &config);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let received = ids(&sink);
        let missing: Vec<_> = acknowledged
            .iter()
            .filter(|id| !received.contains_key(*id))
            .collect();
        if missing.is_empty() {
            let duplicates: usize = received.values().map(|n| n - 1).sum();
            eprintln!(
                "{} acknowledged before the kill, all delivered after the restart; {} duplicates",
                acknowledged.len(),
                duplicates
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged messages never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many times the relay received each Message-ID.
fn ids(sink: &SmtpSink) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for message in sink.messages() {
        if let Some(id) = message.lines().find_map(|l| l.strip_prefix("Message-ID: ")) {
            *ids.entry(id.trim().to_owned()).or_default() += 1;
        }
    }
    ids
}
