//! `ferrymail queue …` against a running queue-scheduler.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use ferrymail_e2e::{
    CLUSTER_DOMAIN, ClusterCertificates, EMBEDDED_STORE, FakeDns, Ferrymail, IssuedCertificate,
    SmtpSink, SmtpSinkOptions, binary,
};
use ferrymail_rpc::queue::{BodyError, BodyStream, Envelope, GrpcQueue, QueueService, Recipient};

fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(["queue", "--server", server])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_show_stats_retry_and_cancel() {
    // DNS fails for the recipients' domain: once retried, they fail temporarily and stay.
    let dns = FakeDns::start();
    dns.fail("example.net");
    let config = format!(
        "[server]\nhostname = \"queue.test\"\n[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n{EMBEDDED_STORE}{}",
        dns.resolver_config()
    );
    let mut process = Ferrymail::start("queue-scheduler", &config);
    let server = format!("http://{}", process.address("grpc"));
    let queue = GrpcQueue::connect(&server).unwrap();
    // Held for an hour: the message stays pending until `retry` releases it.
    let hold_until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let envelope = Envelope {
        hold_until: Some(hold_until),
        sender: "sender@example.org".into(),
        recipients: vec![
            Recipient::new("a@example.net"),
            Recipient::new("b@example.net"),
        ],
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body: BodyStream = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from_static(b"Subject: x\r\n\r\nhi\r\n").into(),
    )]));
    let id = queue.enqueue(envelope, body).await.unwrap().to_string();

    let list = stdout(&cli(&server, &["list"]));
    assert!(
        list.starts_with(&id) && list.contains("2 rcpt") && list.contains("<sender@example.org>"),
        "{list}"
    );
    assert!(stdout(&cli(&server, &["list", "--domain", "other.test"])).is_empty());
    let show = stdout(&cli(&server, &["show", &id]));
    assert!(
        show.contains("a@example.net") && show.contains("Pending"),
        "{show}"
    );
    let stats = stdout(&cli(&server, &["stats"]));
    assert!(
        stats.contains("messages 1 ") && stats.contains("pending 2 "),
        "{stats}"
    );
    assert_eq!(
        stdout(&cli(&server, &["retry", &id])),
        "2 recipient(s) scheduled for delivery now\n"
    );
    assert_eq!(
        stdout(&cli(&server, &["cancel", &id, "a@example.net"])),
        "1 recipient(s) cancelled\n"
    );
    assert_eq!(
        stdout(&cli(&server, &["cancel", &id])),
        "1 recipient(s) cancelled\n"
    );
    assert!(stdout(&cli(&server, &["stats"])).starts_with("messages 0 "));

    // Mistakes are errors with a reason and a non-zero exit, never a crash.
    let garbage = cli(&server, &["show", "not-a-queue-id"]);
    assert!(!garbage.status.success());
    assert!(
        String::from_utf8_lossy(&garbage.stderr).starts_with("ferrymail queue: "),
        "{garbage:?}"
    );
    let down = cli("http://127.0.0.1:9", &["stats"]);
    assert!(!down.status.success());
}

/// A queue-scheduler relaying to `sink`, with its gRPC address.
fn relaying_scheduler(sink: &SmtpSink) -> (Ferrymail, String) {
    let config = format!(
        "[server]\nhostname = \"queue.test\"\n[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n{EMBEDDED_STORE}[remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\ntimeout = \"10s\"\n[queue.outbound]\nnext-hop = \"sink\"\n",
        sink.address().port()
    );
    let mut process = Ferrymail::start("queue-scheduler", &config);
    let server = format!("http://{}", process.address("grpc"));
    (process, server)
}

/// Queues a message from `sender` to `recipients`, not due for an hour (FUTURERELEASE).
async fn enqueue_later(queue: &GrpcQueue, sender: &str, recipients: &[&str]) -> String {
    let hold_until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let envelope = Envelope {
        hold_until: Some(hold_until),
        sender: sender.into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body: BodyStream = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from_static(b"Subject: x\r\n\r\nhi\r\n").into(),
    )]));
    queue.enqueue(envelope, body).await.unwrap().to_string()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_message_is_not_delivered_until_released() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let (_process, server) = relaying_scheduler(&sink);
    let queue = GrpcQueue::connect(&server).unwrap();
    let id = enqueue_later(&queue, "sender@example.org", &["a@example.net"]).await;

    assert_eq!(
        stdout(&cli(&server, &["hold", &id])),
        format!("{id} held\n")
    );
    assert_eq!(
        stdout(&cli(&server, &["hold", &id])),
        format!("{id} was already held\n")
    );
    // Retried, the recipient is due now, and still the message waits: the sink is up.
    assert_eq!(
        stdout(&cli(&server, &["retry", &id])),
        "1 recipient(s) scheduled for delivery now\n"
    );
    let waited = tokio::task::block_in_place(|| sink.received_within(1, Duration::from_secs(4)));
    assert_eq!(waited, 0, "a held message was delivered");
    let list = stdout(&cli(&server, &["list"]));
    assert!(
        list.starts_with(&id) && list.trim_end().ends_with("HELD"),
        "{list}"
    );
    let shown = json_lines(&stdout(&cli(&server, &["show", &id, "--json"])));
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["queue_id"], id.as_str());
    assert_eq!(shown[0]["held"], true);
    assert_eq!(shown[0]["next_attempt"], serde_json::Value::Null);
    assert_eq!(shown[0]["recipient_states"][0]["state"], "pending");

    let released = json_lines(&stdout(&cli(&server, &["--json", "release", &id])));
    assert_eq!(
        released,
        [serde_json::json!({"action": "release", "queue_id": id, "result": true})]
    );
    tokio::task::block_in_place(|| sink.wait_for_messages(1));

    // Delivered, the message has left the queue: its id is now unknown, and said so.
    let gone = cli(&server, &["hold", &id]);
    assert!(!gone.status.success());
    let reason = String::from_utf8_lossy(&gone.stderr);
    assert!(reason.contains(&format!("no message {id}")), "{reason}");
    let malformed = cli(&server, &["release", "not-a-queue-id"]);
    assert!(!malformed.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_stats_and_changes_print_json_one_object_per_line() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let (_process, server) = relaying_scheduler(&sink);
    let queue = GrpcQueue::connect(&server).unwrap();
    let first = enqueue_later(&queue, "one@example.org", &["a@example.net"]).await;
    let second = enqueue_later(
        &queue,
        "two@example.org",
        &["b@example.net", "c@example.net"],
    )
    .await;

    let listed = json_lines(&stdout(&cli(&server, &["list", "--json"])));
    let ids: Vec<_> = listed.iter().map(|m| m["queue_id"].clone()).collect();
    assert_eq!(ids, [serde_json::json!(first), serde_json::json!(second)]);
    assert_eq!(listed[1]["sender"], "two@example.org");
    assert_eq!(listed[1]["recipients"], 2);
    assert_eq!(listed[1]["held"], false);

    let stats = json_lines(&stdout(&cli(&server, &["--json", "stats"])));
    assert_eq!(stats[0]["messages"], 2);
    assert_eq!(stats[0]["recipients"]["pending"], 3);

    let cancelled = json_lines(&stdout(&cli(&server, &["cancel", &second, "--json"])));
    assert_eq!(cancelled[0]["action"], "cancel");
    assert_eq!(cancelled[0]["result"], 2);
}

fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "the command succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_actions_by_filter_in_batches_resumable_with_a_cursor() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let (_process, server) = relaying_scheduler(&sink);
    let queue = GrpcQueue::connect(&server).unwrap();
    for n in 0..3 {
        enqueue_later(&queue, &format!("s{n}@example.org"), &["a@example.net"]).await;
    }
    for n in 3..5 {
        enqueue_later(&queue, &format!("s{n}@example.org"), &["b@other.test"]).await;
    }

    let dry = stdout(&cli(
        &server,
        &[
            "bulk",
            "hold",
            "--recipient-domain",
            "example.net",
            "--dry-run",
        ],
    ));
    assert_eq!(
        dry,
        "dry run: 3 message(s) selected of 5 examined; nothing changed\n"
    );
    for (hop, selected) in [("sink", 5), ("mx", 0)] {
        let dry = stdout(&cli(
            &server,
            &["bulk", "hold", "--next-hop", hop, "--dry-run"],
        ));
        assert!(
            dry.starts_with(&format!("dry run: {selected} message(s) selected")),
            "{hop}: {dry}"
        );
    }
    // More messages than one batch holds.
    let held = json_lines(&stdout(&cli(
        &server,
        &[
            "bulk",
            "hold",
            "--recipient-domain",
            "example.net",
            "--batch-size",
            "2",
            "--json",
        ],
    )));
    assert_eq!(
        held,
        [
            serde_json::json!({"action": "hold", "dry_run": false, "examined": 5, "matched": 3,
            "messages_changed": 3, "recipients_changed": 0, "cursor": null})
        ]
    );
    // Everything due now: only the two messages not held are delivered.
    let retried = stdout(&cli(
        &server,
        &["bulk", "retry", "--sender-domain", "example.org"],
    ));
    assert_eq!(
        retried,
        "retry: 5 message(s) selected of 5 examined, 5 changed, 5 recipient(s)\n"
    );
    tokio::task::block_in_place(|| sink.wait_for_messages(2));
    let waited = tokio::task::block_in_place(|| sink.received_within(3, Duration::from_secs(3)));
    assert_eq!(waited, 2, "a held message was delivered");

    // Released a message at a time, in two runs: the first stops at its limit with a cursor.
    let first = json_lines(&stdout(&cli(
        &server,
        &[
            "--json",
            "bulk",
            "release",
            "--recipient",
            "a@example.net",
            "--limit",
            "2",
            "--batch-size",
            "1",
        ],
    )));
    assert_eq!(first[0]["examined"], 2);
    let cursor = first[0]["cursor"].as_str().unwrap().to_owned();
    let rest = json_lines(&stdout(&cli(
        &server,
        &[
            "--json",
            "bulk",
            "release",
            "--recipient",
            "a@example.net",
            "--cursor",
            &cursor,
        ],
    )));
    assert_eq!(rest[0]["cursor"], serde_json::Value::Null);
    assert_eq!(
        first[0]["messages_changed"].as_u64().unwrap()
            + rest[0]["messages_changed"].as_u64().unwrap(),
        3
    );
    tokio::task::block_in_place(|| sink.wait_for_messages(5));

    // Cancelling is a stated choice: silently, or with a notice to the sender.
    enqueue_later(&queue, "late@example.org", &["c@example.net"]).await;
    enqueue_later(&queue, "quiet@example.org", &["d@example.net"]).await;
    let unstated = failure(&cli(&server, &["bulk", "cancel", "--sender", "late@"]));
    assert!(
        unstated.contains("--silent") && unstated.contains("--notify-sender"),
        "{unstated}"
    );
    let cancelled = stdout(&cli(
        &server,
        &["bulk", "cancel", "--notify-sender", "--sender", "late@"],
    ));
    assert!(
        cancelled.starts_with("cancel: 1 message(s) selected"),
        "{cancelled}"
    );
    let silent = stdout(&cli(
        &server,
        &["bulk", "cancel", "--silent", "--sender", "quiet@"],
    ));
    assert!(
        silent.starts_with("cancel: 1 message(s) selected"),
        "{silent}"
    );
    // The notice goes to late@example.org through the next hop; quiet@ hears nothing.
    tokio::task::block_in_place(|| sink.wait_for_messages(6));
    let more = tokio::task::block_in_place(|| sink.received_within(7, Duration::from_secs(2)));
    assert_eq!(more, 6, "one notice only");
    let notice = sink
        .messages()
        .into_iter()
        .find(|m| m.contains("X-Rcpt-Args: <late@example.org>"))
        .expect("the notice");
    assert!(
        notice.contains("delivery cancelled by the administrator")
            && notice.contains("Action: failed")
            && notice.contains("c@example.net"),
        "{notice}"
    );
    for _ in 0..50 {
        if stdout(&cli(&server, &["stats"])).starts_with("messages 0 ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stdout(&cli(&server, &["stats"])).starts_with("messages 0 "));

    // Malformed filters are refused with a reason, before anything changes.
    for (args, reason) in [
        (vec!["bulk", "hold"], "the filter is empty"),
        (
            vec!["bulk", "hold", "--recipient-domain", "a@b"],
            "is not a domain",
        ),
        (
            vec!["bulk", "hold", "--recipient", "nobody"],
            "is not an address",
        ),
        (
            vec!["bulk", "hold", "--priority", "12"],
            "a priority is -9..9",
        ),
        (vec!["bulk", "hold", "--older-than", "soon"], "--older-than"),
        (
            vec!["bulk", "hold", "--sender", "x", "--cursor", "nope"],
            "invalid cursor",
        ),
    ] {
        let error = failure(&cli(&server, &args));
        assert!(error.contains(reason), "{args:?}: {error}");
    }
}

/// A queue-scheduler serving gRPC over mutual TLS with the certificate at `certificate`,
/// `key`, issued by `certificates`.
fn tls_scheduler(certificates: &ClusterCertificates, identity: &IssuedCertificate) -> Ferrymail {
    let config = format!(
        "[server]\nhostname = \"queue.test\"\n[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n[server.listener.admin]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n{EMBEDDED_STORE}{}",
        certificates.config(identity)
    );
    Ferrymail::start("queue-scheduler", &config)
}

fn tls_cli(
    server: &str,
    certificates: &ClusterCertificates,
    identity: &IssuedCertificate,
) -> Output {
    let path = |p: &std::path::Path| p.display().to_string();
    Command::new(binary())
        .args(["queue", "--server", server, "--cert"])
        .arg(path(&identity.cert_pem))
        .arg("--key")
        .arg(path(&identity.key_pem))
        .arg("--ca")
        .arg(path(&certificates.ca_pem))
        .arg("stats")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "the command succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_cli_speaks_mutual_tls_with_an_admin_certificate_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = ClusterCertificates::generate(dir.path(), "cluster");
    let mut process = tls_scheduler(&certificates, &certificates.role(&["queue-scheduler"]));
    let server = format!("https://{}", process.address("grpc"));

    let admin = certificates.role(&["admin"]);
    assert!(stdout(&tls_cli(&server, &certificates, &admin)).contains("messages 0"));

    let ingress = certificates.role(&["smtp-ingress"]);
    let refused = stderr(&tls_cli(&server, &certificates, &ingress));
    assert!(refused.contains("refused the call"), "{refused}");
    assert!(
        refused.contains("admin only, and the caller is smtp-ingress"),
        "{refused}"
    );

    let without = stderr(&cli(&server, &["stats"]));
    assert!(without.contains("give --cert, --key"), "{without}");
    let plain = stderr(&cli(&server.replace("https://", "http://"), &["stats"]));
    assert!(!plain.is_empty());
}

#[test]
fn a_certificate_replaced_while_running_is_used_and_garbage_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = ClusterCertificates::generate(dir.path(), "cluster");
    let served = certificates.role(&["queue-scheduler"]);
    let mut process = tls_scheduler(&certificates, &served);
    let server = format!("https://{}", process.address("grpc"));
    let admin_port = process.address("admin");
    let admin = certificates.role(&["admin"]);
    assert!(stdout(&tls_cli(&server, &certificates, &admin)).contains("messages 0"));

    // Garbage where the certificate was: the configuration is refused, counted, and the
    // certificate in force goes on serving.
    let good = std::fs::read(&served.cert_pem).unwrap();
    replace_file(&served.cert_pem, b"garbage\n");
    process.log.clear();
    process.wait_for("the refused reload", |l| {
        l.message().starts_with("configuration change refused")
    });
    assert!(stdout(&tls_cli(&server, &certificates, &admin)).contains("messages 0"));

    // A key that does not belong to the certificate: the configuration loads, the
    // certificate does not, and that is counted apart.
    replace_file(&served.cert_pem, &good);
    let other = certificates.role(&["operator"]);
    replace_file(&served.key_pem, &std::fs::read(&other.key_pem).unwrap());
    process.log.clear();
    process.wait_for("the refused certificate", |l| {
        l.message()
            .starts_with("cluster.tls: the new certificate does not load")
    });
    let metrics = ferrymail_e2e::http_get(admin_port, "/metrics")
        .unwrap()
        .body;
    assert!(
        metrics.contains("cluster_tls_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(stdout(&tls_cli(&server, &certificates, &admin)).contains("messages 0"));

    // A renewed certificate and key: new connections get it. (Each file is replaced in one
    // step; between the two, a reload may see the new key with the old certificate, refused
    // as above until the second file follows.)
    let now = time::OffsetDateTime::now_utc();
    let renewed = certificates.issue(
        "renewed",
        &[format!("queue-scheduler.{CLUSTER_DOMAIN}")],
        now - time::Duration::days(1),
        now + time::Duration::days(90),
    );
    process.log.clear();
    replace_file(&served.cert_pem, &std::fs::read(&renewed.cert_pem).unwrap());
    replace_file(&served.key_pem, &std::fs::read(&renewed.key_pem).unwrap());
    process.wait_for("the renewed certificate", |l| {
        l.message() == "configuration reloaded"
            && ferrymail_e2e::http_get(admin_port, "/metrics")
                .unwrap()
                .body
                .contains("cluster_tls_reloads_total{result=\"success\"} 1")
    });
    assert!(stdout(&tls_cli(&server, &certificates, &admin)).contains("messages 0"));
}

/// Replaces `path` with `content` in one step (a new file renamed over it), as Kubernetes
/// replaces a mounted Secret: a reload never reads half a file.
fn replace_file(path: &std::path::Path, content: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_tells_the_sender_only_when_asked() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let (_process, server) = relaying_scheduler(&sink);
    let queue = GrpcQueue::connect(&server).unwrap();
    let silent = enqueue_later(&queue, "quiet@example.org", &["a@example.net"]).await;
    let told = enqueue_later(&queue, "told@example.org", &["b@example.net"]).await;

    assert_eq!(
        stdout(&cli(&server, &["cancel", &silent])),
        "1 recipient(s) cancelled\n"
    );
    assert_eq!(
        stdout(&cli(&server, &["cancel", &told, "--notify-sender"])),
        "1 recipient(s) cancelled\n"
    );
    // One notice, to the sender whose cancel said so, through the relay.
    sink.wait_for_messages(1);
    let notice = &sink.messages()[0];
    assert!(
        notice.contains("delivery cancelled by the administrator")
            && notice.contains("b@example.net")
            && !notice.contains("a@example.net")
            && notice.contains("X-Rcpt-Args: <told@example.org>"),
        "{notice}"
    );
}
