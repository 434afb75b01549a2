//! Delivery events pushed to a webhook by the real binary: every kind arrives with its
//! fields and a valid signature; a failing webhook holds events without holding delivery;
//! events in the outbox survive a SIGKILL; two schedulers on one store deliver each event.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrymail_e2e::{
    Ferrymail, Postgres, SmtpSink, SmtpSinkOptions, WebhookReceiver, WebhookRequest, python,
};
use ferrymail_rpc::queue::{
    BodyError, BodyStream, Envelope, GrpcQueue, QueueId, QueueService, Recipient,
};
use serde_json::Value;

const KEY: &str = "the webhook's signature key";
const GRPC: &str = "[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n";
/// Long enough for a loaded test machine, short enough for a failing test to end.
const PATIENCE: Duration = Duration::from_secs(60);

/// `[webhook.hook]` sending to `receiver`, signed, fast to retry.
fn webhook(receiver: &WebhookReceiver) -> String {
    format!(
        "[webhook.hook]\nurl = \"{}\"\nsignature-key = \"{KEY}\"\nthrottle = \"20ms\"\ntimeout = \"5s\"\n\
         headers = [\"X-Team: mail\"]\nauth.username = \"ops\"\nauth.secret = \"hunter2\"\n\
         [queue.events.retry]\nmin-backoff = \"100ms\"\nmax-backoff = \"500ms\"\n",
        receiver.url()
    )
}

/// A relay named `id` on `sink`.
fn remote(id: &str, sink: &SmtpSink) -> String {
    format!(
        "[remote.{id}]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\ntimeout = \"10s\"\n",
        sink.address().port()
    )
}

/// An embedded store at `path`, outside the process's own directory: it outlives a kill.
fn store_at(path: &Path) -> String {
    format!(
        "[store.db]\ntype = \"embedded\"\npath = \"{}\"\n[storage]\ndata = \"db\"\n",
        path.display()
    )
}

async fn enqueue(queue: &GrpcQueue, recipients: &[&str], hold_for: Option<u64>) -> QueueId {
    let hold_until = hold_for.map(|s| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + s
    });
    let envelope = Envelope {
        hold_until,
        sender: "sender@example.org".into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body: BodyStream = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from_static(b"Subject: events\r\n\r\nhi\r\n").into(),
    )]));
    queue.enqueue(envelope, body).await.unwrap()
}

/// The base64 HMAC-SHA256 of `body` under `KEY`, by Python's `hmac`: an implementation
/// independent of the one under test.
fn python_signature(body: &[u8]) -> String {
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    python(&format!(
        "import base64, hashlib, hmac\nbody = bytes.fromhex('{hex}')\n\
         print(base64.b64encode(hmac.new({KEY:?}.encode(), body, hashlib.sha256).digest()).decode())"
    ))
    .trim()
    .to_owned()
}

/// Checks the headers every request carries, and its signature.
fn check_request(request: &WebhookRequest) {
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-team"), Some("mail"));
    // "ops:hunter2"
    assert_eq!(
        request.header("authorization"),
        Some("Basic b3BzOmh1bnRlcjI=")
    );
    let signature = request.header("x-signature").expect("a signed request");
    assert_eq!(signature, python_signature(&request.body));
}

/// The one event of `kind` for `recipient`.
fn event_of<'a>(events: &'a BTreeMap<String, Value>, kind: &str, recipient: &str) -> &'a Value {
    let found: Vec<&Value> = events
        .values()
        .filter(|e| e["type"] == kind && e["data"]["recipient"] == recipient)
        .collect();
    assert_eq!(found.len(), 1, "{kind} for {recipient}: {found:#?}");
    found[0]
}

fn count_of(events: &BTreeMap<String, Value>, kind: &str) -> usize {
    events.values().filter(|e| e["type"] == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_event_arrives_signed_with_its_fields() {
    let receiver = WebhookReceiver::start();
    let ok = SmtpSink::start(SmtpSinkOptions::default());
    let bounce = SmtpSink::start(SmtpSinkOptions {
        reject_permanently: vec!["RCPT".into()],
        permanent_reply: Some("550 5.1.1 No such user here".into()),
        ..SmtpSinkOptions::default()
    });
    let defer = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        temporary_reply: Some("452 4.2.2 Mailbox full".into()),
        ..SmtpSinkOptions::default()
    });
    // Recipients are routed by domain through static lists of a directory never asked.
    let config = format!(
        "[server]\nhostname = \"events.test\"\n{GRPC}{}{}{}{}{}\
         [directory.corp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = 9\n\
         [directory.corp.lookup]\nbounce = [\"bounce.test\"]\ndefer = [\"defer.test\"]\n\
         [queue.outbound]\nnext-hop = [ {{ if = \"rcpt-domain\", in-list = \"corp/bounce\", then = \"bounce\" }},\n\
         {{ if = \"rcpt-domain\", in-list = \"corp/defer\", then = \"defer\" }}, {{ else = \"ok\" }} ]\n\
         [queue.schedule]\nretry = [\"1h\"]\n",
        ferrymail_e2e::EMBEDDED_STORE,
        remote("ok", &ok),
        remote("bounce", &bounce),
        remote("defer", &defer),
        webhook(&receiver),
    );
    let mut process = Ferrymail::start("queue-scheduler", &config);
    let queue = GrpcQueue::connect(&format!("http://{}", process.address("grpc"))).unwrap();

    let delivered = enqueue(&queue, &["rcpt@deliver.test"], None).await;
    let bounced = enqueue(&queue, &["gone@bounce.test"], None).await;
    let deferred = enqueue(&queue, &["full@defer.test"], None).await;
    let held = enqueue(&queue, &["a@later.test", "b@later.test"], Some(3600)).await;
    receiver.wait_for(PATIENCE, "delivery events", |e| {
        [
            "delivery.delivered",
            "delivery.bounced",
            "delivery.deferred",
        ]
        .iter()
        .all(|k| count_of(e, k) == 1)
    });
    assert!(queue.hold(&held).await.unwrap());
    assert!(queue.release(&held).await.unwrap());
    assert_eq!(
        queue.cancel(&held, &["a@later.test".into()]).await.unwrap(),
        1
    );
    assert_eq!(queue.cancel(&deferred, &[]).await.unwrap(), 1);
    let events = receiver.wait_for(PATIENCE, "admin events", |e| {
        count_of(e, "queue.held") == 2
            && count_of(e, "queue.released") == 2
            && count_of(e, "queue.cancelled") == 2
    });

    let event = event_of(&events, "delivery.delivered", "rcpt@deliver.test");
    let data = &event["data"];
    assert_eq!(data["queueId"], delivered.as_str());
    assert_eq!(data["sender"], "sender@example.org");
    assert_eq!(data["attempt"], 1);
    assert_eq!(
        data["nextHop"],
        serde_json::json!({"type": "remote", "id": "ok"})
    );
    assert_eq!(data["reply"]["code"], 250);
    assert_eq!(data["status"], "2.0.0");
    assert!(data["category"].is_null());
    assert_eq!(event["id"].as_str().unwrap().len(), 26);
    assert!(event["createdAt"].as_str().unwrap().ends_with('Z'));

    let data = &event_of(&events, "delivery.bounced", "gone@bounce.test")["data"];
    assert_eq!(data["queueId"], bounced.as_str());
    assert_eq!(data["nextHop"]["id"], "bounce");
    assert_eq!(data["reply"]["code"], 550);
    assert_eq!(data["reply"]["enhancedCode"], "5.1.1");
    assert_eq!(data["reply"]["text"], "No such user here");
    assert_eq!(
        (&data["status"], &data["category"]),
        (&"5.1.1".into(), &"invalid-recipient".into())
    );

    let data = &event_of(&events, "delivery.deferred", "full@defer.test")["data"];
    assert_eq!(data["queueId"], deferred.as_str());
    assert_eq!(data["attempt"], 1);
    assert_eq!(
        (&data["status"], &data["category"]),
        (&"4.2.2".into(), &"mailbox-full".into())
    );
    assert!(data["retryAt"].as_str().unwrap().ends_with('Z'));
    let cancelled = event_of(&events, "queue.cancelled", "full@defer.test");
    assert_eq!(cancelled["data"]["nextHop"]["id"], "defer");

    for recipient in ["a@later.test", "b@later.test"] {
        for kind in ["queue.held", "queue.released"] {
            let data = &event_of(&events, kind, recipient)["data"];
            assert_eq!(data["queueId"], held.as_str());
            assert_eq!(data["attempt"], 0);
            assert!(data["reply"].is_null() && data["status"].is_null());
        }
    }
    event_of(&events, "queue.cancelled", "a@later.test");
    assert_eq!(events.len(), 9, "exactly the expected events");

    let requests = receiver.requests();
    assert!(!requests.is_empty());
    requests.iter().for_each(check_request);
    process.read_log();
    let log = process.dump();
    assert!(
        !log.contains(KEY) && !log.contains("hunter2"),
        "a secret was logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_webhook_holds_the_events_not_the_mail() {
    let receiver = WebhookReceiver::start();
    receiver.answer(500);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = format!(
        "[server]\nhostname = \"events.test\"\n{GRPC}{}{}[queue.outbound]\nnext-hop = \"sink\"\n{}",
        ferrymail_e2e::EMBEDDED_STORE,
        remote("sink", &sink),
        webhook(&receiver),
    );
    let mut process = Ferrymail::start("queue-scheduler", &config);
    let queue = GrpcQueue::connect(&format!("http://{}", process.address("grpc"))).unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(enqueue(&queue, &[&format!("r{i}@example.net")], None).await);
    }
    // Delivery goes on while every request fails.
    sink.wait_for_messages(20);
    ferrymail_e2e::wait_until(
        "failed webhook requests",
        || receiver.requests().len() >= 3,
        || format!("{} requests", receiver.requests().len()),
    );
    assert!(receiver.accepted_events().is_empty());
    receiver.answer(200);
    let events = receiver.wait_for(PATIENCE, "the held events", |e| e.len() == 20);
    let queue_ids: std::collections::BTreeSet<&str> = events
        .values()
        .map(|e| e["data"]["queueId"].as_str().unwrap())
        .collect();
    let expected: std::collections::BTreeSet<&str> = ids.iter().map(QueueId::as_str).collect();
    assert_eq!(queue_ids, expected);
    assert!(events.values().all(|e| e["type"] == "delivery.delivered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn events_in_the_outbox_survive_a_sigkill() {
    let receiver = WebhookReceiver::start();
    receiver.answer(503);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let store = tempfile::tempdir().unwrap();
    // A short lease: the restarted process takes the dead one's sender lease soon.
    let config = format!(
        "[server]\nhostname = \"events.test\"\n{GRPC}{}{}[queue.outbound]\nnext-hop = \"sink\"\n\
         [queue.lease]\nduration = \"2s\"\nmax-clock-skew = \"200ms\"\n{}",
        store_at(&store.path().join("queue.redb")),
        remote("sink", &sink),
        webhook(&receiver),
    );
    let mut process = Ferrymail::start("queue-scheduler", &config);
    let queue = GrpcQueue::connect(&format!("http://{}", process.address("grpc"))).unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(enqueue(&queue, &[&format!("r{i}@example.net")], None).await);
    }
    sink.wait_for_messages(10);
    ferrymail_e2e::wait_until(
        "failed webhook requests",
        || receiver.requests().len() >= 2,
        || format!("{} requests", receiver.requests().len()),
    );
    process.kill();
    receiver.answer(200);
    let _restarted = Ferrymail::start("queue-scheduler", &config);
    let events = receiver.wait_for(PATIENCE, "the events of before the kill", |e| e.len() == 10);
    let queue_ids: std::collections::BTreeSet<&str> = events
        .values()
        .map(|e| e["data"]["queueId"].as_str().unwrap())
        .collect();
    let expected: std::collections::BTreeSet<&str> = ids.iter().map(QueueId::as_str).collect();
    assert_eq!(queue_ids, expected);
    assert_eq!(sink.received(), 10, "no message delivered twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_on_one_store_send_each_event() {
    let receiver = WebhookReceiver::start();
    let sink = SmtpSink::start(SmtpSinkOptions {
        discard: true,
        ..SmtpSinkOptions::default()
    });
    let postgres = Postgres::start();
    postgres.create_database("events");
    let mut processes = Vec::new();
    for index in 0..2 {
        let config = format!(
            "[server]\nhostname = \"scheduler-{index}.test\"\n{GRPC}{}{}[queue.outbound]\nnext-hop = \"sink\"\n\
             [queue.lease]\nduration = \"2s\"\nmax-clock-skew = \"200ms\"\n{}",
            postgres.store_config("shared", "events", postgres.port()),
            remote("sink", &sink),
            webhook(&receiver),
        );
        processes.push(Ferrymail::start("queue-scheduler", &config));
    }
    let mut queues = Vec::new();
    for process in &mut processes {
        let address = format!("http://{}", process.address("grpc"));
        queues.push(GrpcQueue::connect(&address).unwrap());
    }
    let mut ids = Vec::new();
    for i in 0..60 {
        let queue = &queues[i % 2];
        ids.push(enqueue(queue, &[&format!("r{i}@example.net")], None).await);
    }
    let events = receiver.wait_for(PATIENCE, "every event once", |e| e.len() == 60);
    let queue_ids: std::collections::BTreeSet<&str> = events
        .values()
        .map(|e| e["data"]["queueId"].as_str().unwrap())
        .collect();
    let expected: std::collections::BTreeSet<&str> = ids.iter().map(QueueId::as_str).collect();
    assert_eq!(queue_ids, expected);
    // Give a second sender the time to send what it should not.
    std::thread::sleep(Duration::from_secs(1));
    let (_, duplicates) = receiver.events_by_id();
    assert_eq!(duplicates, 0, "an event was sent twice without a failure");
}
