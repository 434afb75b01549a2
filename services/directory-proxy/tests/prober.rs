//! The prober of `remote.<id>` hosts: reachable against a real Dovecot (LMTP, submission
//! with STARTTLS, IMAP with STARTTLS and implicit TLS); unreachable, with the reason, for a
//! closed port, a server that greets with 554 and a certificate that is not trusted.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrymail_config::Config;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{ALICE, Dovecot, DovecotOptions};
use ferrymail_rpc::directory::{DirectoryService, Reachability, RemoteState};
use ferrymail_telemetry::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bound on waiting for the background prober: a guard against hangs, not a timing.
const GUARD: Duration = Duration::from_secs(60);

fn load(text: &str) -> Config {
    let text = format!("[server]\nhostname = \"proxy.test\"\n{text}");
    ferrymail_config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// `remote.<id>` of `protocol` on 127.0.0.1:`port`, with extra keys.
fn remote(id: &str, protocol: &str, port: u16, extra: &str) -> String {
    format!(
        "[remote.{id}]\naddress = \"127.0.0.1\"\nport = {port}\nprotocol = \"{protocol}\"\ntimeout = \"20s\"\n{extra}\n"
    )
}

async fn proxy(config: &Config) -> (Arc<DirectoryProxy>, Metrics) {
    let metrics = Metrics::new("test");
    let proxy = DirectoryProxy::new(config, None, DirectoryMetrics::register(&metrics))
        .await
        .unwrap();
    (Arc::new(proxy), metrics)
}

async fn state_of(proxy: &DirectoryProxy, remote: &str) -> Option<RemoteState> {
    proxy
        .remote_states()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.remote == remote)
}

fn reason_of(state: &RemoteState) -> &str {
    match &state.reachability {
        Reachability::Unreachable { reason } => reason,
        Reachability::Reachable => panic!("{} is reachable", state.remote),
    }
}

fn served(metrics: &Metrics, line: &str) -> bool {
    metrics.encode().unwrap().lines().any(|l| l == line)
}

/// A server that greets every connection with `554` and closes it.
async fn refusing_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket
                    .write_all(b"554 5.3.2 mx.test not accepting connections\r\n")
                    .await;
                let mut rest = Vec::new();
                let _ = socket.read_to_end(&mut rest).await;
            });
        }
    });
    port
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_is_reachable_by_every_protocol_and_tls_mode() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let p = dovecot.ports;
    // The test certificate is self-signed: allowed everywhere but in `imaps-verified`.
    let allow = "tls.allow-invalid-certs = true";
    let starttls = "tls.implicit = false\ntls.allow-invalid-certs = true";
    let config = load(
        &[
            remote("lmtp", "lmtp", p.lmtp, starttls),
            remote("submission", "smtp", p.submission, starttls),
            remote("imap", "imap", p.imap, starttls),
            remote("imaps", "imap", p.imaps, allow),
            remote("imaps-verified", "imap", p.imaps, ""),
        ]
        .concat(),
    );
    let (proxy, metrics) = proxy(&config).await;
    let before = SystemTime::now();
    proxy.probe_all().await;
    for id in ["lmtp", "submission", "imap", "imaps"] {
        let state = state_of(&proxy, id).await.unwrap();
        assert_eq!(state.reachability, Reachability::Reachable, "{id}");
        assert!(state.checked_at >= before, "{id}: {state:?}");
        assert!(
            served(
                &metrics,
                &format!("directory_remote_up{{remote=\"{id}\"}} 1")
            ),
            "{id}"
        );
    }
    let verified = state_of(&proxy, "imaps-verified").await.unwrap();
    let reason = reason_of(&verified);
    assert!(reason.contains("TLS error"), "{reason}");
    assert!(
        served(&metrics, "directory_remote_up{remote=\"imaps-verified\"} 0"),
        "{}",
        metrics.encode().unwrap()
    );
    // Probes leave no connection open behind them.
    assert_eq!(proxy.open_connections("remote/lmtp"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_and_a_554_greeting_are_unreachable_with_the_reason() {
    let closed = closed_port().await;
    let refusing = refusing_server().await;
    let config = load(
        &[
            remote("closed", "smtp", closed, "tls.implicit = false"),
            remote("refusing", "lmtp", refusing, "tls.implicit = false"),
        ]
        .concat(),
    );
    let (proxy, metrics) = proxy(&config).await;
    proxy.probe_all().await;
    let closed_state = state_of(&proxy, "closed").await.unwrap();
    let reason = reason_of(&closed_state);
    assert!(
        reason.starts_with(&format!("127.0.0.1:{closed}: network error")),
        "{reason}"
    );
    let refusing_state = state_of(&proxy, "refusing").await.unwrap();
    let reason = reason_of(&refusing_state);
    assert!(reason.contains("greeting refused"), "{reason}");
    assert!(reason.contains("not accepting connections"), "{reason}");
    for id in ["closed", "refusing"] {
        assert!(
            served(
                &metrics,
                &format!("directory_remote_up{{remote=\"{id}\"}} 0")
            ),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_prober_starts_at_once_and_follows_the_configuration() {
    let refusing = refusing_server().await;
    let closed = closed_port().await;
    let first = load(&remote("a", "smtp", refusing, "tls.implicit = false"));
    let (proxy, _) = proxy(&first).await;
    let prober = tokio::spawn(proxy.clone().probe_remotes());
    let deadline = Instant::now() + GUARD;
    while state_of(&proxy, "a").await.is_none() {
        assert!(Instant::now() < deadline, "no probe ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `a` is removed and `b` added: `a`'s finding goes, `b` is probed without waiting
    // for the interval (an hour here).
    let second = load(&remote(
        "b",
        "smtp",
        closed,
        "tls.implicit = false\nprobe.interval = \"1h\"",
    ));
    proxy.apply(&second).await;
    assert!(state_of(&proxy, "a").await.is_none());
    while state_of(&proxy, "b").await.is_none() {
        assert!(Instant::now() < deadline, "the new remote was not probed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids: Vec<String> = proxy
        .remote_states()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.remote)
        .collect();
    assert_eq!(ids, ["b"]);
    prober.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_report_reachability_too() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let config = load(&remote(
        "mailstore",
        "lmtp",
        dovecot.ports.lmtp,
        "lookup = true\ntls.implicit = false\ntls.allow-invalid-certs = true",
    ));
    let (proxy, _) = proxy(&config).await;
    assert!(state_of(&proxy, "mailstore").await.is_none());
    let answer = proxy.in_list("remote/mailstore", ALICE.0).await.unwrap();
    assert!(answer.is_yes(), "{answer:?}");
    let state = state_of(&proxy, "mailstore").await.unwrap();
    assert_eq!(state.reachability, Reachability::Reachable);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_address_forgets_the_old_finding() {
    let closed = closed_port().await;
    let refusing = refusing_server().await;
    let (proxy, _) = proxy(&load(&remote("a", "smtp", closed, "tls.implicit = false"))).await;
    proxy.probe_all().await;
    assert!(state_of(&proxy, "a").await.is_some());
    proxy
        .apply(&load(&remote(
            "a",
            "smtp",
            refusing,
            "tls.implicit = false",
        )))
        .await;
    assert!(state_of(&proxy, "a").await.is_none());
    proxy.probe_all().await;
    let state = state_of(&proxy, "a").await.unwrap();
    assert!(reason_of(&state).contains("greeting refused"), "{state:?}");
}
