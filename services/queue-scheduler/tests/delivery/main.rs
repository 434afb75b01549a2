//! Delivery against real peers: Postfix's smtp-sink as an SMTP relay and Dovecot as an LMTP
//! relay, Postfix with STARTTLS as a DANE-checked MX host, with the queue on an embedded
//! store.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod dane;
mod destinations;
mod handoff;
mod lease;
mod mta_sts;
mod mx;
mod pipelining;
mod priority;
mod relay_auth;
mod reuse;
mod sharing;
mod throttling;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferrymail_e2e::{ALICE, BOB, Dovecot, SmtpSink, SmtpSinkOptions, TEMPFAIL_USER};
use ferrymail_queue_scheduler::{
    Committed, MessageId, Outcome, Queue, Scheduler, SchedulerOptions,
};
use ferrymail_rpc::queue::{
    BodyError, BodyPart, Envelope, QueueService, QueueStats, Recipient, RecipientState,
};
use ferrymail_store::{Store, StoreOptions};
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

const BODY: &str = "Subject: relay test\r\n\r\n.a line that starts with a dot\r\nbye\r\n";
const RETRY: Duration = Duration::from_secs(60);

/// The configuration of a relay `remote.relay` at `port`, speaking `protocol`.
fn config(port: u16, protocol: &str) -> ferrymail_config::Config {
    ferrymail_config::load_str("test.toml", &config_text(port, protocol)).unwrap()
}

/// The text of [`config`].
fn config_text(port: u16, protocol: &str) -> String {
    format!(
        r#"
[server]
hostname = "queue.test"
[remote.relay]
address = "127.0.0.1"
port = {port}
protocol = "{protocol}"
tls.implicit = false
tls.allow-invalid-certs = true
timeout = "10s"
concurrency = 2
[queue.outbound]
next-hop = "relay"
[queue.schedule]
retry = ["1m", "5m"]
expire = "1d"
"#
    )
}

struct Lab {
    store: Store,
    queue: Arc<Queue>,
    scheduler: Arc<Scheduler>,
    _dir: tempfile::TempDir,
}

fn options(owner: &str) -> SchedulerOptions {
    SchedulerOptions {
        owner: owner.into(),
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(200),
        ..SchedulerOptions::new("queue.test")
    }
}

fn lab(config: &ferrymail_config::Config) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(
        dir.path(),
        StoreOptions {
            run_closures_twice: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let queue = Arc::new(Queue::new(store.clone(), &config.queue));
    let scheduler = Arc::new(Scheduler::new(queue.clone(), config, options("one")));
    Lab {
        store,
        queue,
        scheduler,
        _dir: dir,
    }
}

async fn enqueue(queue: &Queue, recipients: &[&str]) -> MessageId {
    let envelope = Envelope {
        sender: "sender@example.net".into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from(BODY).into(),
    )]));
    let wire = queue.enqueue(envelope, body).await.unwrap();
    MessageId::from_wire(&wire).unwrap()
}

/// Waits until the queue's stats satisfy `done`.
async fn wait_for_stats(queue: &Queue, what: &str, done: impl Fn(&QueueStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = queue.stats().await.unwrap();
        if done(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_relays_on_enqueue_and_removes_the_message() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let lab = lab(&config(sink.address().port(), "smtp"));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));

    enqueue(&lab.queue, &["bob@example.net", "carol@example.net"]).await;
    enqueue(&lab.queue, &["dave@example.net"]).await;
    wait_for_stats(&lab.queue, "an empty queue", |s| {
        *s == QueueStats::default()
    })
    .await;
    tokio::task::block_in_place(|| sink.wait_for_messages(2));
    let messages = sink.messages();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\n.a line that starts with a dot\n")),
        "dots survive stuffing: {messages:?}"
    );
    // The bodies went with their messages, not at some later collection.
    let left: Vec<_> = lab
        .store
        .scan(lab.queue.blobs().key_range(), 100)
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "body keys left after delivery: {left:?}");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_added_after_the_body_are_delivered_in_front_of_it() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let lab = lab(&config(sink.address().port(), "smtp"));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));
    let envelope = Envelope {
        sender: "sender@example.net".into(),
        recipients: vec![Recipient::new("bob@example.net")],
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let parts = [
        Ok::<_, BodyError>(Bytes::from(BODY).into()),
        Ok(BodyPart::Prepend(Bytes::from_static(
            b"Authentication-Results: mx.test; spf=pass smtp.mailfrom=example.net\r\n",
        ))),
    ];
    lab.queue
        .enqueue(envelope, Box::pin(futures::stream::iter(parts)))
        .await
        .unwrap();
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let message = &sink.messages()[0];
    let added = message.find("Authentication-Results: mx.test; spf=pass");
    let subject = message.find("Subject:");
    assert!(
        added.is_some() && added < subject,
        "the added header comes first: {message}"
    );
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_are_retried_once_the_relay_is_back() {
    let refusing = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        ..SmtpSinkOptions::default()
    });
    let lab = lab(&config(refusing.address().port(), "smtp"));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let first = lab.scheduler.attempt(&id, now).await.unwrap();
    assert_eq!(first, Some(Committed::Kept { live: 1 }));
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    let bob = &detail.recipients[0];
    assert_eq!(bob.state, RecipientState::TempFailed);
    assert_eq!(bob.attempts, 1);
    assert!(
        bob.last_reply.as_deref().unwrap().starts_with("450 4.3.0"),
        "{bob:?}"
    );
    assert_eq!(lab.queue.stats().await.unwrap().recipients.temp_failed, 1);
    assert_eq!(
        lab.scheduler.attempt(&id, now).await.unwrap(),
        None,
        "not due before the first retry interval"
    );

    // The relay is back (on another port: the new configuration is applied as a reload).
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    lab.scheduler.apply(&config(sink.address().port(), "smtp"));
    let later = now + RETRY + Duration::from_secs(1);
    let second = lab.scheduler.attempt(&id, later).await.unwrap();
    assert_eq!(second, Some(Committed::Removed));
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(lab.queue.stats().await.unwrap(), QueueStats::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_carry_the_remote_reply() {
    let sink = SmtpSink::start(SmtpSinkOptions {
        reject_permanently: vec!["RCPT".into()],
        permanent_reply: Some("550 5.1.1 No such user".into()),
        ..SmtpSinkOptions::default()
    });
    let lab = lab(&config(sink.address().port(), "smtp"));
    let id = enqueue(&lab.queue, &["nobody@example.net"]).await;
    let now = SystemTime::now();
    let claim = lab.scheduler.claim(&id, now).await.unwrap().unwrap();
    let outcomes = lab.scheduler.deliver(&claim, now).await;
    assert_eq!(
        outcomes,
        [(0, Outcome::PermFailed("550 5.1.1 No such user".into()))]
    );
    let committed = lab.scheduler.commit(&claim, outcomes, now).await.unwrap();
    assert_eq!(committed, Committed::Removed);
    assert_eq!(sink.received(), 0);
    // What is left is the notice to the sender, from the null sender.
    let notices = notices(&lab.queue).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    let (envelope_to, report) = &notices[0];
    assert_eq!(envelope_to, "sender@example.net");
    assert!(
        report.contains(
            "Final-Recipient: rfc822; nobody@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("Subject: relay test"),
        "the original header is quoted: {report}"
    );
    assert!(
        !report.contains("a line that starts with a dot"),
        "not the body: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_report_reaches_the_sender_and_a_notice_is_never_reported_on() {
    let dovecot = Dovecot::start();
    let lab = lab(&config(dovecot.ports.lmtp, "lmtp"));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));
    let envelope = Envelope {
        sender: ALICE.0.into(),
        recipients: vec![Recipient::new("nobody@example.org"), Recipient::new(BOB.0)],
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from(BODY).into(),
    )]));
    lab.queue.enqueue(envelope, body).await.unwrap();
    // A message from the null sender that fails is dropped, not bounced.
    let bounce = Envelope {
        sender: String::new(),
        recipients: vec![Recipient::new("ghost@example.org")],
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from(BODY).into(),
    )]));
    lab.queue.enqueue(bounce, body).await.unwrap();
    wait_for_stats(&lab.queue, "an empty queue", |s| {
        *s == QueueStats::default()
    })
    .await;
    stop.cancel();
    worker.await.unwrap();

    assert_eq!(dovecot.delivered(BOB.0), 1);
    assert_eq!(
        dovecot.delivered(ALICE.0),
        1,
        "one report, for the one failure"
    );
    let report = maildir_messages(&dovecot, ALICE.0).pop().unwrap();
    for expected in [
        "From: \"Mail Delivery System\" <MAILER-DAEMON@queue.test>",
        "Content-Type: multipart/report",
        "Final-Recipient: rfc822; nobody@example.org\nAction: failed\nStatus: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
    assert!(
        !report.contains("bob@example.org\nAction"),
        "bob was delivered: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delays_are_reported_once_per_notify_time() {
    let sink = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        ..SmtpSinkOptions::default()
    });
    let text = config_text(sink.address().port(), "smtp").replace("\"1d\"", "\"5d\"");
    let lab = lab(&ferrymail_config::load_str("test.toml", &text).unwrap());
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    lab.scheduler.attempt(&id, now).await.unwrap();
    assert!(
        notices(&lab.queue).await.is_empty(),
        "not delayed long enough yet"
    );
    // The default notify times are 1d and 3d.
    let mut at = now;
    for _ in 0..3 {
        at += Duration::from_secs(3600 * 6);
        lab.scheduler.attempt(&id, at).await.unwrap();
    }
    assert!(notices(&lab.queue).await.is_empty(), "18 hours");
    at += Duration::from_secs(3600 * 6 + 60);
    lab.scheduler.attempt(&id, at).await.unwrap();
    let first = notices(&lab.queue).await;
    assert_eq!(first.len(), 1, "one notice after a day");
    assert!(
        first[0].1.contains("Action: delayed\r\nStatus: 4.3.0")
            && first[0].1.contains("Will-Retry-Until: "),
        "{}",
        first[0].1
    );
    lab.scheduler.attempt(&id, at + RETRY * 6).await.unwrap();
    assert_eq!(
        notices(&lab.queue).await.len(),
        1,
        "not twice for the same notify time"
    );
}

/// The notices in the queue: (recipient, content) of each message from the null sender.
async fn notices(queue: &Queue) -> Vec<(String, String)> {
    let page = queue.list(Default::default()).await.unwrap();
    let mut notices = Vec::new();
    for summary in page.messages.iter().filter(|m| m.sender.is_empty()) {
        let stored = queue
            .load(&MessageId::from_wire(&summary.queue_id).unwrap())
            .await
            .unwrap();
        let content = queue.blobs().read(&stored.record.blob).await.unwrap();
        notices.push((
            stored.recipients[0].recipient.address.clone(),
            String::from_utf8(content).unwrap(),
        ));
    }
    notices
}

/// Every message in `address`'s maildir, as text.
fn maildir_messages(dovecot: &Dovecot, address: &str) -> Vec<String> {
    let mut messages = Vec::new();
    for folder in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dovecot.maildir(address).join(folder)) else {
            continue;
        };
        for entry in entries {
            let text = std::fs::read(entry.unwrap().path()).unwrap();
            // Dovecot stores lines ending in LF.
            messages.push(String::from_utf8_lossy(&text).replace("\r\n", "\n"));
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread")]
async fn lmtp_relays_answer_per_recipient() {
    let dovecot = Dovecot::start();
    let lab = lab(&config(dovecot.ports.lmtp, "lmtp"));
    let id = enqueue(&lab.queue, &[ALICE.0, "nobody@example.org", TEMPFAIL_USER]).await;
    let committed = lab.scheduler.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    let states: Vec<_> = detail.recipients.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RecipientState::Delivered,
            RecipientState::PermFailed,
            RecipientState::TempFailed
        ],
        "{detail:?}"
    );
    let unknown = detail.recipients[1].last_reply.as_deref().unwrap();
    assert!(unknown.starts_with("550 5.1.1"), "{unknown}");
    let tempfail = detail.recipients[2].last_reply.as_deref().unwrap();
    assert!(tempfail.starts_with('4'), "{tempfail}");
    assert_eq!(dovecot.delivered(ALICE.0), 1);
    let stats = lab.queue.stats().await.unwrap();
    assert_eq!(
        (
            stats.messages,
            stats.recipients.delivered,
            stats.recipients.perm_failed,
            stats.recipients.temp_failed
        ),
        (2, 1, 1, 1),
        "the message, and the notice of the failure to its sender"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_lease_cannot_commit() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = config(sink.address().port(), "smtp");
    let lab = lab(&config);
    let other = Scheduler::new(lab.queue.clone(), &config, options("two"));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let stale = lab.scheduler.claim(&id, now).await.unwrap().unwrap();
    assert!(other.claim(&id, now).await.unwrap().is_none(), "held");
    // The first scheduler pauses past its lease; the second takes the message over.
    let after_lease = now + Duration::from_secs(31);
    let fresh = other.claim(&id, after_lease).await.unwrap().unwrap();
    assert!(fresh.lease.token > stale.lease.token);
    assert_eq!(fresh.lease.owner, "two");

    let outcomes = lab.scheduler.deliver(&stale, now).await;
    assert!(
        matches!(outcomes[..], [(0, Outcome::Delivered(_))]),
        "{outcomes:?}"
    );
    assert_eq!(
        lab.scheduler.commit(&stale, outcomes, now).await.unwrap(),
        Committed::Stale
    );
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Pending);
    assert_eq!(detail.recipients[0].attempts, 0);

    let outcomes = other.deliver(&fresh, after_lease).await;
    assert_eq!(
        other.commit(&fresh, outcomes, after_lease).await.unwrap(),
        Committed::Removed
    );
    tokio::task::block_in_place(|| sink.wait_for_messages(2));
    assert_eq!(lab.queue.stats().await.unwrap(), QueueStats::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_messages_fail_without_delivery() {
    let sink = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        ..SmtpSinkOptions::default()
    });
    let lab = lab(&config(sink.address().port(), "smtp"));
    let id = enqueue(&lab.queue, &["bob@example.net", "carol@example.net"]).await;
    let now = SystemTime::now();
    assert_eq!(
        lab.scheduler.attempt(&id, now).await.unwrap(),
        Some(Committed::Kept { live: 2 })
    );
    let past_expiry = now + Duration::from_secs(24 * 3600 + 1);
    let claim = lab
        .scheduler
        .claim(&id, past_expiry)
        .await
        .unwrap()
        .unwrap();
    let outcomes = lab.scheduler.deliver(&claim, past_expiry).await;
    assert_eq!(outcomes.len(), 2);
    for (_, outcome) in &outcomes {
        assert!(
            matches!(outcome, Outcome::PermFailed(r) if r.starts_with("expired")),
            "{outcome:?}"
        );
    }
    assert_eq!(
        lab.scheduler
            .commit(&claim, outcomes, past_expiry)
            .await
            .unwrap(),
        Committed::Removed
    );
    // One notice reports both recipients as expired.
    let notices = notices(&lab.queue).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    for rcpt in ["bob@example.net", "carol@example.net"] {
        let block =
            format!("Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 4.4.7\r\n");
        assert!(notices[0].1.contains(&block), "{}", notices[0].1);
    }
}
