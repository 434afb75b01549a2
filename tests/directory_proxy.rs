//! The `directory-proxy` role serves the `Directory` gRPC service, answering from a real
//! Dovecot, and picks up a changed directory without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{ALICE, Dovecot, DovecotOptions, Ferrymail};
use ferrymail_rpc::directory::{DirectoryService, GrpcDirectory, Reachability, Verdict};

fn config(lmtp_port: u16, domains: &str) -> String {
    format!(
        r#"
[server]
hostname = "proxy.test"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
[store.local]
type = "embedded"
path = "data"
[storage]
data = "local"
[directory.mailboxes]
type = "lmtp"
address = "127.0.0.1"
port = {lmtp_port}
tls.allow-invalid-certs = true
lookup.domains = [{domains}]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_role_answers_over_grpc_and_follows_config_changes() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let mut process = Ferrymail::start(
        "directory-proxy",
        &config(dovecot.ports.lmtp, "\"example.org\""),
    );
    let grpc = process.address("grpc");
    let client = GrpcDirectory::connect(&format!("http://{grpc}")).unwrap();

    let alice = client.verify_recipient("mailboxes", ALICE.0).await.unwrap();
    assert_eq!(alice.verdict, Verdict::Yes, "{alice:?}");
    let nosuch = client
        .verify_recipient("mailboxes", "nosuch@example.org")
        .await
        .unwrap();
    assert_eq!(nosuch.verdict, Verdict::No);
    assert_eq!(nosuch.reply.map(|r| r.code), Some(550));
    assert!(
        client
            .is_local_domain("mailboxes", "example.org")
            .await
            .unwrap()
            .is_yes()
    );
    assert!(
        !client
            .is_local_domain("mailboxes", "example.net")
            .await
            .unwrap()
            .is_yes()
    );

    // A new local domain appears in the file; the running role applies it.
    process.write_config(&config(
        dovecot.ports.lmtp,
        "\"example.org\", \"example.net\"",
    ));
    process.wait_for("the reload", |l| l.message() == "configuration reloaded");
    // The reload is logged before the services apply it: ask until they have (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut applied = false;
    while !applied && std::time::Instant::now() < deadline {
        applied = client
            .is_local_domain("mailboxes", "example.net")
            .await
            .unwrap()
            .is_yes();
    }
    assert!(applied, "the reloaded directory was not applied");
    // An unknown directory is the caller's mistake, not a "no".
    assert!(client.verify_recipient("nosuch", ALICE.0).await.is_err());
}

/// The role probes its remotes at start and reports them over gRPC, as the operator asks:
/// Dovecot's LMTP reachable, a closed port not, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_role_reports_remote_reachability_over_grpc() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let remotes = format!(
        "[remote.mailstore]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"lmtp\"\ntls.implicit = false\ntls.allow-invalid-certs = true\n[remote.gone]\naddress = \"127.0.0.1\"\nport = {closed_port}\nprotocol = \"smtp\"\ntls.implicit = false\n",
        dovecot.ports.lmtp
    );
    let text = format!("{}{remotes}", config(dovecot.ports.lmtp, "\"example.org\""));
    let mut process = Ferrymail::start("directory-proxy", &text);
    let grpc = process.address("grpc");
    let client = GrpcDirectory::connect(&format!("http://{grpc}")).unwrap();
    // The first probes run at start; ask until both are in (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let states = loop {
        let states = client.remote_states().await.unwrap();
        if states.len() == 2 {
            break states;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not probed: {states:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(states[0].remote, "gone");
    match &states[0].reachability {
        Reachability::Unreachable { reason } => assert!(
            reason.starts_with(&format!("127.0.0.1:{closed_port}: network error")),
            "{reason}"
        ),
        Reachability::Reachable => panic!("a closed port is reachable: {states:?}"),
    }
    assert_eq!(states[1].remote, "mailstore");
    assert_eq!(states[1].reachability, Reachability::Reachable);
    let metrics = ferrymail_e2e::http_get(process.address("admin"), "/metrics")
        .unwrap()
        .body;
    for line in [
        "directory_remote_up{remote=\"mailstore\"} 1",
        "directory_remote_up{remote=\"gone\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}
