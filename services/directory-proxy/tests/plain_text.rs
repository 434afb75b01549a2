//! Passwords go to a lookup server only over TLS: against a real Dovecot without TLS
//! (`ssl = no`, so no STARTTLS is offered), AUTH lookups fail temporarily without the
//! password being sent, unless `tls.allow-plain-text` says otherwise; recipient lookups,
//! which carry no password, work in clear text.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_config::Config;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{ALICE, Dovecot, DovecotOptions, wait_until};
use ferrymail_rpc::directory::{AuthRequest, DirectoryService, Mechanism, Verdict};
use ferrymail_telemetry::Metrics;
use secrecy::SecretSlice;

/// The SMTP client the requests come from (a documentation address).
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

/// Submission (smtp), IMAP and LMTP directories on a Dovecot without TLS; `allow` sets
/// `tls.allow-plain-text` on the two that authenticate.
fn config(dovecot: &Dovecot, allow: bool) -> Config {
    let p = dovecot.ports;
    let text = format!(
        r#"
[server]
hostname = "proxy.test"

[directory.submission]
type = "smtp"
address = "127.0.0.1"
port = {submission}
timeout = "20s"
tls.allow-plain-text = {allow}

[directory.imap]
type = "imap"
address = "127.0.0.1"
port = {imap}
timeout = "20s"
tls.allow-plain-text = {allow}

[directory.lmtp]
type = "lmtp"
address = "127.0.0.1"
port = {lmtp}
timeout = "20s"
"#,
        submission = p.submission,
        imap = p.imap,
        lmtp = p.lmtp,
    );
    ferrymail_config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

async fn proxy(config: &Config) -> DirectoryProxy {
    let metrics = Metrics::new("test");
    DirectoryProxy::new(config, None, DirectoryMetrics::register(&metrics))
        .await
        .unwrap()
}

async fn login(proxy: &DirectoryProxy, directory: &str) -> Verdict {
    let request = AuthRequest {
        directory: directory.into(),
        mechanism: Mechanism::Plain,
        username: ALICE.0.into(),
        secret: SecretSlice::from(ALICE.1.as_bytes().to_vec()),
        authzid: None,
        client: CLIENT,
    };
    proxy.authenticate(request).await.unwrap().verdict
}

/// Lines of Dovecot's log that show an authentication attempt reaching it.
fn auth_attempts(dovecot: &Dovecot) -> Vec<String> {
    dovecot
        .log()
        .lines()
        .filter(|l| l.contains("Login: user=") || l.contains("auth failed") || l.contains(ALICE.0))
        .map(str::to_owned)
        .collect()
}

/// Waits until `times` lines of Dovecot's log contain every one of `needles`.
fn wait_for_lines(dovecot: &Dovecot, needles: &[&str], times: usize) {
    wait_until(
        &format!("{times} Dovecot log lines with {needles:?}"),
        || {
            let log = dovecot.log();
            let found = log
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)));
            found.count() >= times
        },
        || dovecot.log(),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_is_sent_without_tls_unless_allowed() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        tls: false,
        ..DovecotOptions::default()
    });
    let strict = proxy(&config(&dovecot, false)).await;
    assert_eq!(
        login(&strict, "submission").await,
        Verdict::TemporaryFailure
    );
    assert_eq!(login(&strict, "imap").await, Verdict::TemporaryFailure);
    // The connections were made, and dropped before any AUTH or LOGIN (the harness's own
    // readiness check left one such line per service already).
    for service in ["submission-login", "imap-login"] {
        wait_for_lines(&dovecot, &[service, "(no auth attempts"], 2);
    }
    assert_eq!(auth_attempts(&dovecot), Vec::<String>::new());

    // A recipient lookup carries no password: clear text is fine.
    let rcpt = strict.verify_recipient("lmtp", ALICE.0).await.unwrap();
    assert_eq!(rcpt.verdict, Verdict::Yes, "{rcpt:?}");

    // Allowed explicitly, the same logins go through in clear text.
    let allowed = proxy(&config(&dovecot, true)).await;
    assert_eq!(login(&allowed, "submission").await, Verdict::Yes);
    assert_eq!(login(&allowed, "imap").await, Verdict::Yes);
    for service in ["submission-login", "imap-login"] {
        wait_for_lines(&dovecot, &[service, "Login: user=<alice@example.org>"], 1);
    }
}
