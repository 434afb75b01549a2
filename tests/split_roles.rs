//! The roles split into separate processes talking gRPC over mutual TLS, as on Kubernetes:
//! smtp-ingress asks directory-proxy and hands messages to queue-scheduler; when either is
//! away, or refuses the ingress, the client gets a 4xx, never a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{
    ALICE, CLUSTER_DOMAIN, ClusterCertificates, Dovecot, DovecotOptions, Ferrymail, SmtpClient,
    SmtpSink, SmtpSinkOptions, sasl_plain,
};
use ferrymail_rpc::cluster_tls::{ChannelSecurity, ClusterTls, Credentials};
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

/// The processes of a split installation and what they need.
struct Cluster {
    _certificates_dir: tempfile::TempDir,
    certificates: ClusterCertificates,
    _dovecot: Dovecot,
    _relay: SmtpSink,
    queue: Ferrymail,
    proxy: Ferrymail,
    queue_grpc: std::net::SocketAddr,
    proxy_grpc: std::net::SocketAddr,
    proxy_admin: std::net::SocketAddr,
    directory: String,
}

/// A queue-scheduler and a directory-proxy, each with its role's certificate; the relay
/// refuses for now, so what the ingress hands over stays in the queue to count.
fn cluster() -> Cluster {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = ClusterCertificates::generate(certificates_dir.path(), "cluster");
    let store =
        "[store.local]\ntype = \"embedded\"\npath = \"data\"\n[storage]\ndata = \"local\"\n";
    let relay = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        ..SmtpSinkOptions::default()
    });
    let next_hop = format!(
        "[remote.relay]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\n[queue.outbound]\nnext-hop = \"relay\"\n",
        relay.address().port()
    );
    let queue_tls = certificates.config(&certificates.role(&["queue-scheduler"]));
    let mut queue = Ferrymail::start(
        "queue-scheduler",
        &format!("{BASE}{GRPC}{store}{next_hop}{queue_tls}"),
    );
    let queue_grpc = queue.address("grpc");
    let proxy_tls = certificates.config(&certificates.role(&["directory-proxy"]));
    let directory = directory(&dovecot);
    let mut proxy = Ferrymail::start(
        "directory-proxy",
        &format!("{BASE}{GRPC}{directory}{proxy_tls}"),
    );
    let proxy_grpc = proxy.address("grpc");
    let proxy_admin = proxy.address("admin");
    Cluster {
        _certificates_dir: certificates_dir,
        certificates,
        _dovecot: dovecot,
        _relay: relay,
        queue,
        proxy,
        queue_grpc,
        proxy_grpc,
        proxy_admin,
        directory,
    }
}

impl Cluster {
    /// An smtp-ingress holding the certificate of `roles`.
    fn ingress(&self, roles: &[&str]) -> Ferrymail {
        let tls = self.certificates.config(&self.certificates.role(roles));
        let config = format!(
            "{BASE}[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n[cluster.directory]\nendpoint = \"https://{}\"\n[cluster.queue]\nendpoint = \"https://{}\"\n[session.auth]\ndirectory = \"mailboxes\"\nallow-plain-text = true\n{}{tls}",
            self.proxy_grpc, self.queue_grpc, self.directory
        );
        Ferrymail::start("smtp-ingress", &config)
    }

    /// The queue's client with the admin's certificate.
    fn admin(&self) -> GrpcQueue {
        let admin = self.certificates.role(&["admin"]);
        let path = |p: &std::path::Path| p.display().to_string();
        let credentials = Credentials::from_files(
            &path(&admin.cert_pem),
            &path(&admin.key_pem),
            &path(&self.certificates.ca_pem),
            CLUSTER_DOMAIN,
        )
        .unwrap();
        let security = ChannelSecurity::MutualTls(ClusterTls::new(credentials));
        GrpcQueue::connect_with(&format!("https://{}", self.queue_grpc), &security).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_directory_and_queue_in_separate_processes() {
    let cluster = cluster();
    let mut ingress = cluster.ingress(&["smtp-ingress"]);
    let smtp = ingress.address("smtp");

    let mut client = SmtpClient::connect(smtp);
    assert_eq!(client.command("HELO client.test").code, 250);
    assert_eq!(send(&mut client, ALICE.0), (250, 250));
    assert_eq!(send(&mut client, "nosuch@example.org").0, 550);
    let stats = cluster.admin().stats().await.unwrap();
    assert_eq!(
        stats.messages, 1,
        "the message is in the queue-scheduler's store"
    );

    // The queue goes away: the message is refused with a 4xx, and nothing is lost.
    let (status, _) = cluster.queue.terminate();
    assert!(status.success());
    let (rcpt, data) = send(&mut client, ALICE.0);
    assert_eq!(rcpt, 250);
    assert!(
        (400..500).contains(&data),
        "queue down must be 4xx, got {data}"
    );

    // The directory goes away: recipients get a 4xx, never "unknown".
    let (status, _) = cluster.proxy.terminate();
    assert!(status.success());
    let (rcpt, _) = send(&mut client, "bob@example.org");
    assert!(
        (400..500).contains(&rcpt),
        "directory down must be 4xx, got {rcpt}"
    );
    assert_eq!(client.command("QUIT").code, 221);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_the_other_roles_refuse_answers_4xx_and_accepts_nothing() {
    let cluster = cluster();
    // A certificate of the cluster, but the operator's: it may not ask the directory nor
    // enqueue.
    let mut ingress = cluster.ingress(&["operator"]);
    let mut client = SmtpClient::connect(ingress.address("smtp"));
    assert_eq!(client.command("EHLO client.test").code, 250);
    let auth = client.command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, ALICE.1)));
    assert_eq!(auth.code, 454, "{auth:?}");
    assert_eq!(client.command("MAIL FROM:<s@remote.test>").code, 250);
    let rcpt = client.command(&format!("RCPT TO:<{}>", ALICE.0));
    assert_eq!(rcpt.code, 451, "{rcpt:?}");
    assert_eq!(client.command("QUIT").code, 221);
    assert_eq!(cluster.admin().stats().await.unwrap().messages, 0);
    let refused = ferrymail_e2e::http_get(cluster.proxy_admin, "/metrics")
        .unwrap()
        .body;
    assert!(
        refused.contains("grpc_requests_refused_total{caller=\"operator\",method=\"/ferrymail.v1.Directory/IsLocalDomain\",code=\"permission_denied\"}"),
        "{refused}"
    );
}
