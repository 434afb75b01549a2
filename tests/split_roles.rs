//! The roles split into separate processes talking gRPC, as on Kubernetes: smtp-ingress
//! asks directory-proxy and hands messages to queue-scheduler; when either is away, the
//! client gets a 4xx, never a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, Ferrymail, SmtpClient, SmtpSink, SmtpSinkOptions,
};
use ferrymail_rpc::queue::{GrpcQueue, QueueService};

const BASE: &str = r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
"#;

const GRPC: &str = r#"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
"#;

fn directory(dovecot: &Dovecot) -> String {
    format!(
        "[directory.mailboxes]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = {}\ntls.allow-invalid-certs = true\nlookup.domains = [\"example.org\"]\n[session.rcpt]\ndirectory = \"mailboxes\"\n",
        dovecot.ports.lmtp
    )
}

fn send(client: &mut SmtpClient, to: &str) -> (u16, u16) {
    assert_eq!(client.command("MAIL FROM:<s@remote.test>").code, 250);
    let rcpt = client.command(&format!("RCPT TO:<{to}>")).code;
    if rcpt != 250 {
        assert_eq!(client.command("RSET").code, 250);
        return (rcpt, 0);
    }
    assert_eq!(client.command("DATA").code, 354);
    (rcpt, client.send_data("Subject: split\r\n\r\nhello").code)
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_directory_and_queue_in_separate_processes() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let store =
        "[store.local]\ntype = \"embedded\"\npath = \"data\"\n[storage]\ndata = \"local\"\n";
    // The relay refuses for now, so what the ingress handed over stays in the queue to count.
    let relay = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        ..SmtpSinkOptions::default()
    });
    let next_hop = format!(
        "[remote.relay]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\n[queue.outbound]\nnext-hop = \"relay\"\n",
        relay.address().port()
    );
    let mut queue = Ferrymail::start("queue-scheduler", &format!("{BASE}{GRPC}{store}{next_hop}"));
    let queue_grpc = queue.address("grpc");
    let mut proxy = Ferrymail::start(
        "directory-proxy",
        &format!("{BASE}{GRPC}{}", directory(&dovecot)),
    );
    let proxy_grpc = proxy.address("grpc");
    let ingress_config = format!(
        "{BASE}[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n[cluster.directory]\nendpoint = \"http://{proxy_grpc}\"\n[cluster.queue]\nendpoint = \"http://{queue_grpc}\"\n{}",
        directory(&dovecot)
    );
    let mut ingress = Ferrymail::start("smtp-ingress", &ingress_config);
    let smtp = ingress.address("smtp");

    let mut client = SmtpClient::connect(smtp);
    assert_eq!(client.command("HELO client.test").code, 250);
    assert_eq!(send(&mut client, ALICE.0), (250, 250));
    assert_eq!(send(&mut client, "nosuch@example.org").0, 550);
    let stats = GrpcQueue::connect(&format!("http://{queue_grpc}"))
        .unwrap()
        .stats()
        .await
        .unwrap();
    assert_eq!(
        stats.messages, 1,
        "the message is in the queue-scheduler's store"
    );

    // The queue goes away: the message is refused with a 4xx, and nothing is lost.
    let (status, _) = queue.terminate();
    assert!(status.success());
    let (rcpt, data) = send(&mut client, ALICE.0);
    assert_eq!(rcpt, 250);
    assert!(
        (400..500).contains(&data),
        "queue down must be 4xx, got {data}"
    );

    // The directory goes away: recipients get a 4xx, never "unknown".
    let (status, _) = proxy.terminate();
    assert!(status.success());
    let (rcpt, _) = send(&mut client, "bob@example.org");
    assert!(
        (400..500).contains(&rcpt),
        "directory down must be 4xx, got {rcpt}"
    );
    assert_eq!(client.command("QUIT").code, 221);
}
