//! `ferrymail all` relays end to end: a message sent with smtplib to a local recipient is
//! queued, delivered to the relay named by `queue.outbound.next-hop` (Postfix's smtp-sink),
//! and leaves the queue.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, Ferrymail, SmtpSink, SmtpSinkOptions, python,
};
use ferrymail_rpc::queue::{GrpcQueue, QueueService, QueueStats};

/// `ferrymail all` relaying to `sink`, with the embedded store; `extra` is appended.
fn relay_config(dovecot: &Dovecot, sink: &SmtpSink, extra: &str) -> String {
    ferrymail_e2e::relay_config(EMBEDDED_STORE, dovecot, sink, extra)
}

/// A Dovecot answering recipient checks at once.
fn dovecot() -> Dovecot {
    Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn all_relays_a_message_to_the_next_hop_and_empties_the_queue() {
    let dovecot = dovecot();
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = relay_config(&dovecot, &sink, "");
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let grpc = process.address("grpc");
    let admin = process.address("admin");

    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
print(s.sendmail("sender@remote.test", ["{rcpt}"], b"Subject: relayed\r\n\r\nhello relay\r\n"))
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    python(&script);

    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let messages = sink.messages();
    assert!(
        messages[0].contains(&format!("X-Rcpt-Args: <{}>", ALICE.0))
            && messages[0].contains("hello relay"),
        "{messages:?}"
    );

    let queue = GrpcQueue::connect(&format!("http://{grpc}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = queue.stats().await.unwrap();
        if stats == QueueStats::default() {
            break;
        }
        assert!(Instant::now() < deadline, "the queue stays {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The reference documents' metric names, after real traffic.
    let metrics = ferrymail_e2e::http_get(admin, "/metrics").unwrap().body;
    for line in [
        "queue_messages_enqueued_total 1",
        "queue_deliveries_total{result=\"delivered\"} 1",
        "smtp_messages_received_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_quota_is_a_temporary_refusal_at_the_smtp_level() {
    let dovecot = dovecot();
    // The relay refuses for now, so the first message stays queued and holds the quota.
    let sink = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        ..SmtpSinkOptions::default()
    });
    let config = relay_config(
        &dovecot,
        &sink,
        "[queue.quota.per-sender]\nkey = [\"sender\"]\nmessages = 1\n",
    );
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let script = format!(
        r#"
import smtplib
def send(sender):
    s = smtplib.SMTP("{host}", {port}, timeout=30)
    s.ehlo("client.test")
    try:
        s.sendmail(sender, ["{rcpt}"], b"Subject: q\r\n\r\nquota\r\n")
        print(sender, 250)
    except smtplib.SMTPDataError as e:
        print(sender, e.smtp_code, e.smtp_error.decode())
    s.quit()
send("one@remote.test")
send("one@remote.test")
send("two@remote.test")
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    let stdout = python(&script);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "one@remote.test 250", "{stdout}");
    assert!(
        lines[1].starts_with("one@remote.test 452 4.3.1"),
        "the sender's second message waits for room: {stdout}"
    );
    assert_eq!(
        lines[2], "two@remote.test 250",
        "another sender has room: {stdout}"
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn futurerelease_and_mt_priority_travel_from_the_client_to_the_queue() {
    let dovecot = dovecot();
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = relay_config(&dovecot, &sink, "");
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let grpc = process.address("grpc");
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
assert s.has_extn("futurerelease") and s.has_extn("mt-priority"), s.esmtp_features
s.mail("sender@remote.test", ["HOLDFOR=3", "MT-PRIORITY=4"])
s.rcpt("{rcpt}")
code, reply = s.data(b"Subject: later\r\n\r\nheld\r\n")
print(code, reply.decode())
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    let stdout = python(&script);
    let id = stdout
        .trim()
        .strip_prefix("250 2.0.0 Message queued as ")
        .unwrap_or_else(|| panic!("{stdout}"));

    let queue = GrpcQueue::connect(&format!("http://{grpc}")).unwrap();
    let detail = queue
        .get(&ferrymail_rpc::queue::QueueId::new(id))
        .await
        .unwrap();
    assert_eq!(detail.summary.priority.get(), 4);
    let next = detail.summary.next_attempt.unwrap();
    assert!(
        next >= detail.summary.arrival + 2,
        "held for HOLDFOR=3: next attempt {next}, arrival {}",
        detail.summary.arrival
    );
    // Released when the hold ends.
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now >= next, "delivered before its release time");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_received_header_names_the_queue_id_the_message_got() {
    let dovecot = dovecot();
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = relay_config(&dovecot, &sink, "");
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
s.mail("sender@remote.test")
s.rcpt("{rcpt}")
code, reply = s.data(b"Subject: traced\r\n\r\ntraced\r\n")
print(code, reply.decode())
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    let stdout = python(&script);
    let id = stdout
        .trim()
        .strip_prefix("250 2.0.0 Message queued as ")
        .unwrap_or_else(|| panic!("{stdout}"));

    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let message = &sink.messages()[0];
    assert!(
        message
            .lines()
            .any(|line| line.trim_end() == format!("\tby mx.test (ferrymail) with ESMTP id {id}")),
        "{message}"
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_show_finds_a_message_by_its_message_id() {
    let dovecot = dovecot();
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = relay_config(&dovecot, &sink, "");
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let grpc = format!("http://{}", process.address("grpc"));
    // Held for an hour (FUTURERELEASE), so it stays in the queue to be found.
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
s.mail("sender@remote.test", ["HOLDFOR=3600"])
s.rcpt("{rcpt}")
code, reply = s.data(b"Message-ID: <Found.Me@remote.test>\r\nSubject: find me\r\n\r\nhi\r\n")
print(code, reply.decode())
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    let stdout = python(&script);
    let id = stdout
        .trim()
        .strip_prefix("250 2.0.0 Message queued as ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();

    let show = |message_id: &str| {
        std::process::Command::new(ferrymail_e2e::binary())
            .args([
                "queue",
                "--server",
                &grpc,
                "show",
                "--json",
                "--message-id",
                message_id,
            ])
            .output()
            .unwrap()
    };
    let found = show("found.me@REMOTE.test");
    assert!(found.status.success(), "{found:?}");
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(found["queue_id"], id.as_str());
    assert_eq!(found["recipient_states"][0]["address"], ALICE.0);
    let missing = show("<nobody@remote.test>");
    assert!(!missing.status.success());
    let reason = String::from_utf8_lossy(&missing.stderr);
    assert!(reason.contains("no message with Message-ID"), "{reason}");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
