//! `ferrymail all` delivers by MX end to end: a message sent with smtplib to a domain routed
//! to `"mx"` (the default next hop) is looked up in a fake DNS server, whose MX record points
//! at Postfix's smtp-sink on loopback (`queue.outbound.mx-port`), and leaves the queue.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ferrymail_e2e::{EMBEDDED_STORE, FakeDns, Ferrymail, SmtpSink, SmtpSinkOptions};
use ferrymail_rpc::queue::{GrpcQueue, QueueService, QueueStats};

#[tokio::test(flavor = "multi_thread")]
async fn all_delivers_to_the_mx_of_the_recipient_domain() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("remote.test", 10, "mx.remote.test");
    dns.add_a("mx.remote.test", "127.0.0.1".parse().unwrap());
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
{store}[session.rcpt]
relay = true
[queue.outbound]
mx-port = {port}
{resolver}"#,
        store = EMBEDDED_STORE,
        port = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let grpc = process.address("grpc");

    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
print(s.sendmail("sender@client.test", ["bob@remote.test", "carol@remote.test"], b"Subject: by mx\r\n\r\nhello mx\r\n"))
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
    );
    ferrymail_e2e::python(&script);

    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let messages = sink.messages();
    assert!(
        messages[0].contains("X-Rcpt-Args: <bob@remote.test>")
            && messages[0].contains("X-Rcpt-Args: <carol@remote.test>")
            && messages[0].contains("hello mx"),
        "both recipients in one transaction: {messages:?}"
    );
    assert!(
        dns.queries()
            .iter()
            .any(|(name, kind)| name == "remote.test" && kind.to_string() == "MX"),
        "the MX record was asked: {:?}",
        dns.queries()
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
    assert_eq!(sink.received(), 1);
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
