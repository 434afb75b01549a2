//! `ferrymail queue …` against a running queue-scheduler.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

use bytes::Bytes;
use ferrymail_e2e::{EMBEDDED_STORE, FakeDns, Ferrymail, binary};
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
