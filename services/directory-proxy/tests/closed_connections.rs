//! Pooled lookup connections that the server ends: an idle timeout announced with `421`
//! (Postfix's smtpd), a restart (Dovecot's LMTP, submission and IMAP). The next lookups
//! reconnect transparently instead of failing; and how each refusal of a recipient reaches
//! the client, against Postfix's own replies.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;

use ferrymail_config::Config;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{ALICE, BOB, Dovecot, DovecotOptions, Postfix, wait_until};
use ferrymail_rpc::directory::{AuthRequest, DirectoryService, Mechanism, Verdict};
use ferrymail_telemetry::Metrics;
use secrecy::SecretSlice;

/// The SMTP client the requests come from (a documentation address).
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

/// Where Postfix would relay: nothing listens there, and these tests send no mail.
const NO_RELAY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

/// Postfix as a recipient directory for example.org: its relay recipient table knows
/// alice, bob, full and policy; an access map refuses full and policy as a mailbox server
/// and a site policy would.
const RECIPIENTS: &str = "\
relay_domains = example.org
relay_recipient_maps = inline:{ alice@example.org=ok, bob@example.org=ok, full@example.org=ok, policy@example.org=ok }
smtpd_recipient_restrictions = check_recipient_access inline:{ { full@example.org = 552 5.2.2 Mailbox full }, { policy@example.org = 550 5.7.1 Not for this client } }, permit_mynetworks, reject_unauth_destination
";

/// One directory `name` of `kind` on loopback `port`: one pooled connection at most, so
/// every lookup reuses it, and no cache, so every lookup asks the server.
fn config(name: &str, kind: &str, port: u16) -> Config {
    let text = format!(
        "[server]\nhostname = \"proxy.test\"\n\n[directory.{name}]\ntype = \"{kind}\"\n\
         address = \"127.0.0.1\"\nport = {port}\ntimeout = \"20s\"\npool.max-connections = 1\n\
         cache.entries = 0\ntls.allow-invalid-certs = true\n"
    );
    ferrymail_config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

async fn proxy(config: &Config) -> DirectoryProxy {
    let metrics = Metrics::new("test");
    DirectoryProxy::new(config, None, DirectoryMetrics::register(&metrics))
        .await
        .unwrap()
}

async fn rcpt(proxy: &DirectoryProxy, directory: &str, address: &str) -> Verdict {
    let answer = proxy.verify_recipient(directory, address).await.unwrap();
    answer.verdict
}

async fn login(proxy: &DirectoryProxy, directory: &str, user: &str, password: &str) -> Verdict {
    let request = AuthRequest {
        directory: directory.into(),
        mechanism: Mechanism::Plain,
        username: user.into(),
        secret: SecretSlice::from(password.as_bytes().to_vec()),
        authzid: None,
        client: CLIENT,
    };
    proxy.authenticate(request).await.unwrap().verdict
}

/// Waits until Postfix has logged `times` idle timeouts (each closed a session with 421).
fn wait_for_idle_timeouts(postfix: &Postfix, times: usize) {
    wait_until(
        &format!("{times} idle timeout(s) of Postfix's smtpd"),
        || postfix.log().matches("timeout after RCPT").count() >= times,
        || postfix.log(),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_closed_with_421_is_replaced_transparently() {
    let postfix =
        Postfix::start_with_settings(NO_RELAY, &format!("{RECIPIENTS}smtpd_timeout = 1s\n"));
    let config = config("postfix", "smtp", postfix.address().port());
    let proxy = proxy(&config).await;
    assert_eq!(rcpt(&proxy, "postfix", ALICE.0).await, Verdict::Yes);

    // smtpd answers `421 4.4.2 … Error: timeout exceeded` to the idle pooled session and
    // closes it; the lookups after that, back to back, get answers all the same.
    wait_for_idle_timeouts(&postfix, 1);
    assert_eq!(rcpt(&proxy, "postfix", BOB.0).await, Verdict::Yes);
    assert_eq!(
        rcpt(&proxy, "postfix", "nosuch@example.org").await,
        Verdict::No
    );
    wait_for_idle_timeouts(&postfix, 2);
    assert_eq!(
        rcpt(&proxy, "postfix", "nosuch@example.org").await,
        Verdict::No
    );
    assert_eq!(rcpt(&proxy, "postfix", ALICE.0).await, Verdict::Yes);
    assert_eq!(proxy.open_connections("directory/postfix"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_is_reconnected_to_by_every_protocol() {
    let mut dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let p = dovecot.ports;
    let lmtp = proxy(&config("lmtp", "lmtp", p.lmtp)).await;
    let submission = proxy(&config("submission", "smtp", p.submission)).await;
    let imap = proxy(&config("imap", "imap", p.imap)).await;
    // Each leaves its connection in the pool: an open transaction, a failed login.
    assert_eq!(rcpt(&lmtp, "lmtp", ALICE.0).await, Verdict::Yes);
    assert_eq!(
        login(&submission, "submission", ALICE.0, "wrong").await,
        Verdict::No
    );
    assert_eq!(login(&imap, "imap", ALICE.0, "wrong").await, Verdict::No);
    for (proxy, name) in [
        (&lmtp, "lmtp"),
        (&submission, "submission"),
        (&imap, "imap"),
    ] {
        assert_eq!(proxy.open_connections(&format!("directory/{name}")), 1);
    }

    dovecot.restart();

    assert_eq!(rcpt(&lmtp, "lmtp", BOB.0).await, Verdict::Yes);
    assert_eq!(rcpt(&lmtp, "lmtp", "nosuch@example.org").await, Verdict::No);
    assert_eq!(
        login(&submission, "submission", ALICE.0, ALICE.1).await,
        Verdict::Yes
    );
    assert_eq!(login(&imap, "imap", BOB.0, BOB.1).await, Verdict::Yes);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_unknown_user_is_a_cached_no() {
    let postfix = Postfix::start_with_settings(NO_RELAY, RECIPIENTS);
    let text = format!(
        "[server]\nhostname = \"proxy.test\"\n\n[directory.postfix]\ntype = \"smtp\"\n\
         address = \"127.0.0.1\"\nport = {}\ntimeout = \"20s\"\n",
        postfix.address().port()
    );
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let proxy = proxy(&config).await;
    let answer = |address: &'static str| {
        let proxy = &proxy;
        async move { proxy.verify_recipient("postfix", address).await.unwrap() }
    };

    // "550 5.1.1 <nosuch@example.org>: Recipient address rejected: User unknown in relay
    // recipient table".
    let unknown = answer("nosuch@example.org").await;
    assert_eq!(unknown.verdict, Verdict::No, "{unknown:?}");
    // A full mailbox is passed on as the server said it, not as an unknown user.
    let full = answer("full@example.org").await;
    assert_eq!(full.verdict, Verdict::Refused, "{full:?}");
    let reply = full.reply.unwrap();
    assert_eq!(reply.code, 552);
    assert!(reply.text.starts_with("5.2.2 "), "{reply:?}");
    // A policy refusal of the proxy's own session says nothing about the recipient.
    let policy = answer("policy@example.org").await;
    assert_eq!(policy.verdict, Verdict::TemporaryFailure, "{policy:?}");

    // Only the unknown user is answered from the cache now: the others are asked again,
    // which a server log shows (each refusal is logged once per question).
    for _ in 0..2 {
        assert_eq!(answer("nosuch@example.org").await.verdict, Verdict::No);
        assert_eq!(answer("full@example.org").await.verdict, Verdict::Refused);
        assert_eq!(
            answer("policy@example.org").await.verdict,
            Verdict::TemporaryFailure
        );
    }
    let refusals = |log: &str, address: &str| {
        log.lines()
            .filter(|l| l.contains("reject: RCPT") && l.contains(&format!("<{address}>")))
            .count()
    };
    wait_until(
        "Postfix to log every refusal",
        || {
            let log = postfix.log();
            refusals(&log, "full@example.org") == 3 && refusals(&log, "policy@example.org") == 3
        },
        || postfix.log(),
    );
    // Logged in order: the unknown user's later questions would be there by now.
    let log = postfix.log();
    assert_eq!(refusals(&log, "nosuch@example.org"), 1, "{log}");
}
