//! Paused and dead destinations with the real binary: `ferrymail queue pause|resume|paused`
//! hold a relay's, a domain's or the whole queue's mail back and let it go, and a relay that
//! accepts connections and never speaks (a TCP relay the test cuts, counting the connections
//! it holds) is suspended after one failed connection, its mail deferred without another
//! connection until one probe finds it answering again.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymail_e2e::{
    EMBEDDED_STORE, Ferrymail, Postgres, SmtpSink, SmtpSinkOptions, TcpRelay, binary,
};
use ferrymail_rpc::queue::{
    BodyError, BodyStream, Envelope, GrpcQueue, QueueId, QueueService, Recipient,
};

/// A queue-scheduler relaying to `remote.sink` at `port`, whose connections time out after
/// a second, dead for 3 s after one failed connection: long enough that no probe comes
/// while a test counts connections, short enough to wait for.
fn config(port: u16) -> String {
    config_on(EMBEDDED_STORE, port)
}

/// [`config`] with the queue in `store` (a configuration fragment).
fn config_on(store: &str, port: u16) -> String {
    format!(
        r#"
[server]
hostname = "queue.test"
shutdown-timeout = "5s"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
{store}
[remote.sink]
address = "127.0.0.1"
port = {port}
protocol = "smtp"
tls.implicit = false
timeout = "1s"
[queue.outbound]
next-hop = "sink"
[queue.outbound.dead]
failed-cohort-limit = 1
min-backoff = "3s"
max-backoff = "6s"
[queue.schedule]
retry = ["1s"]
"#
    )
}

fn cli(server: &str, args: &[&str]) -> String {
    let output: Output = Command::new(binary())
        .args(["queue", "--server", server])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn enqueue(queue: &GrpcQueue, rcpt: &str) -> QueueId {
    let envelope = Envelope {
        sender: "sender@example.org".into(),
        recipients: vec![Recipient::new(rcpt)],
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body: BodyStream = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from_static(b"Subject: x\r\n\r\nhi\r\n").into(),
    )]));
    queue.enqueue(envelope, body).await.unwrap()
}

/// Waits until `remote.sink` is suspended; the connections `relay` has held by then.
async fn wait_until_dead(queue: &GrpcQueue, relay: &TcpRelay) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let suspended = queue.destinations().await.unwrap().suspended;
        if suspended
            .iter()
            .any(|s| s.destination == "remote.sink" && s.until.is_some())
        {
            return relay.held();
        }
        assert!(Instant::now() < deadline, "never suspended: {suspended:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the first recipient of `id` has been attempted; its attempts then.
async fn wait_for_attempts(queue: &GrpcQueue, id: &QueueId) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempts = queue.get(id).await.unwrap().recipients[0].attempts;
        if attempts > 0 || Instant::now() >= deadline {
            return attempts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the first recipient of `id` has a last reply starting with `prefix`; its
/// attempts then.
async fn wait_for_reply(queue: &GrpcQueue, id: &QueueId, prefix: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let detail = queue.get(id).await.unwrap();
        let r = &detail.recipients[0];
        if r.last_reply
            .as_deref()
            .is_some_and(|l| l.starts_with(prefix))
        {
            return r.attempts;
        }
        assert!(Instant::now() < deadline, "waiting for {prefix:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_a_remote_a_domain_and_the_whole_queue() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = Ferrymail::start("queue-scheduler", &config(sink.address().port()));
    let server = format!("http://{}", process.address("grpc"));
    let queue = GrpcQueue::connect(&server).unwrap();
    let scopes: [&[&str]; 3] = [
        &["--remote", "sink"],
        &["--domain", "Example.NET"],
        &["--all"],
    ];
    for (delivered, scope) in scopes.into_iter().enumerate() {
        let paused = cli(&server, &[&["pause"], scope].concat());
        assert!(paused.contains("paused"), "{paused}");
        let listed = cli(&server, &["paused"]);
        assert!(!listed.contains("paused: none"), "{listed}");
        let listed: serde_json::Value = serde_json::from_str(&cli(&server, &["--json", "paused"]))
            .expect("paused --json is one JSON object");
        let paused = &listed["paused"][0];
        // Domains are kept in lower case, as they compare.
        let expected = match scope.get(1) {
            Some(value) => serde_json::Value::from(value.to_ascii_lowercase()),
            None => serde_json::Value::Bool(true),
        };
        assert_eq!(
            paused[scope[0].trim_start_matches("--")],
            expected,
            "{listed}"
        );
        assert!(paused["since"].as_u64().is_some(), "{listed}");

        let id = enqueue(&queue, "rcpt@example.net").await;
        let attempts = wait_for_reply(&queue, &id, "delivery paused").await;
        assert_eq!(attempts, 0, "{scope:?}: paused is not an attempt");
        assert_eq!(sink.received(), delivered, "nothing delivered while paused");

        let resumed = cli(&server, &[&["resume"], scope].concat());
        assert!(resumed.contains("resumed"), "{resumed}");
        assert!(resumed.contains("1 recipient(s)"), "{resumed}");
        tokio::task::block_in_place(|| sink.wait_for_messages(delivered + 1));
    }
    assert!(cli(&server, &["paused"]).contains("paused: none"));
    // A scope is required, and only one.
    let refused = Command::new(binary())
        .args(["queue", "--server", &server, "pause"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blackholed_relay_is_suspended_then_revived_by_one_probe() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let relay = TcpRelay::start(sink.address());
    relay.cut();
    let mut process = Ferrymail::start("queue-scheduler", &config(relay.port()));
    let server = format!("http://{}", process.address("grpc"));
    let admin = process.address("admin");
    let queue = GrpcQueue::connect(&server).unwrap();

    let first = enqueue(&queue, "a@example.net").await;
    let held = wait_until_dead(&queue, &relay).await;
    assert_eq!(held, 1, "dead after one connection");
    // The suspension and the attempt's result are separate commits: the result may show a
    // moment later.
    let attempts = wait_for_attempts(&queue, &first).await;
    assert_eq!(attempts, 1, "the failed connection is an attempt");
    let mut waiting = Vec::new();
    for rcpt in ["b@example.net", "c@example.net"] {
        let id = enqueue(&queue, rcpt).await;
        let attempts = wait_for_reply(&queue, &id, "delivery temporarily suspended").await;
        assert_eq!(attempts, 0, "a suspended relay is not attempted");
        waiting.push(id);
    }
    assert_eq!(relay.held(), 1, "no connection to a dead relay");
    let stats = cli(&server, &["stats"]);
    assert!(stats.contains("suspended: remote.sink until"), "{stats}");
    let stats: serde_json::Value = serde_json::from_str(&cli(&server, &["--json", "stats"]))
        .expect("stats --json is one JSON object");
    let suspended = &stats["destinations"]["suspended"][0];
    assert_eq!(suspended["destination"], "remote.sink", "{stats}");
    assert!(suspended["until"].as_u64().is_some(), "{stats}");
    let metrics = ferrymail_e2e::http_get(admin, "/metrics").unwrap().body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("queue_deferred_total{reason=\"suspended\"}")),
        "{metrics}"
    );

    // Answering again: after the backoff one delivery probes it, then the rest follow.
    relay.restore();
    tokio::task::block_in_place(|| sink.wait_for_messages(3));
    assert_eq!(relay.held(), 1);
    let destinations = queue.destinations().await.unwrap();
    assert!(destinations.suspended.is_empty(), "{destinations:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_postgresql_share_pauses_and_dead_relays() {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let store = postgres.store_config("shared", "mail", postgres.port());
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let relay = TcpRelay::start(sink.address());
    let config = config_on(&store, relay.port());
    let mut one = Ferrymail::start("queue-scheduler", &config);
    let mut two = Ferrymail::start("queue-scheduler", &config);
    let (server_one, server_two) = (
        format!("http://{}", one.address("grpc")),
        format!("http://{}", two.address("grpc")),
    );
    let (queue_one, queue_two) = (
        GrpcQueue::connect(&server_one).unwrap(),
        GrpcQueue::connect(&server_two).unwrap(),
    );

    // Paused through one process, held back by the other's scheduler, resumed through it.
    cli(&server_one, &["pause", "--remote", "sink"]);
    let id = enqueue(&queue_two, "a@example.net").await;
    assert_eq!(wait_for_reply(&queue_two, &id, "delivery paused").await, 0);
    assert_eq!(sink.received(), 0);
    let resumed = cli(&server_two, &["resume", "--remote", "remote.sink"]);
    assert!(resumed.contains("1 recipient(s)"), "{resumed}");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));

    // Found dead by one process, skipped by the other without a connection.
    relay.cut();
    enqueue(&queue_one, "b@example.net").await;
    let held = wait_until_dead(&queue_one, &relay).await;
    assert!(held >= 1);
    let second = enqueue(&queue_two, "c@example.net").await;
    let attempts = wait_for_reply(&queue_two, &second, "delivery temporarily suspended").await;
    assert_eq!(attempts, 0);
    assert_eq!(relay.held(), held, "the other process did not connect");
    let listed = cli(&server_two, &["paused"]);
    assert!(listed.contains("suspended: remote.sink until"), "{listed}");

    relay.restore();
    tokio::task::block_in_place(|| sink.wait_for_messages(3));
}
