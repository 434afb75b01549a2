//! Failed authentications are counted per login name and per client address, across every
//! replica sharing a store: past `server.auto-ban.auth.rate`, the server (a real Dovecot) is
//! not asked, and other logins and addresses are not affected.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;

use ferrymail_config::Config;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{ALICE, BOB, Dovecot, DovecotOptions, TEMPFAIL_USER, wait_until};
use ferrymail_rpc::directory::{AuthRequest, DirectoryService, Mechanism, Verdict};
use ferrymail_store::{KeyRange, Store, StoreOptions};
use ferrymail_telemetry::Metrics;
use futures::TryStreamExt;
use secrecy::SecretSlice;

/// Three failures per login name and per address within an hour.
fn config(dovecot: &Dovecot) -> Config {
    let text = format!(
        r#"
[server]
hostname = "proxy.test"
[server.auto-ban.auth]
rate = "3/1h"
[cluster]
cache-key = "a cache key of at least thirty-two bytes"
[directory.submission]
type = "smtp"
address = "127.0.0.1"
port = {}
timeout = "20s"
tls.allow-invalid-certs = true
"#,
        dovecot.ports.submission
    );
    ferrymail_config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

async fn replica(config: &Config, store: Option<Store>) -> (DirectoryProxy, Metrics) {
    let metrics = Metrics::new("test");
    let proxy = DirectoryProxy::new(config, store, DirectoryMetrics::register(&metrics))
        .await
        .unwrap();
    (proxy, metrics)
}

async fn login(proxy: &DirectoryProxy, user: &str, password: &str, client: &str) -> Verdict {
    let request = AuthRequest {
        directory: "submission".into(),
        mechanism: Mechanism::Plain,
        username: user.into(),
        secret: SecretSlice::from(password.as_bytes().to_vec()),
        authzid: None,
        client: client.parse::<IpAddr>().unwrap(),
    };
    proxy.authenticate(request).await.unwrap().verdict
}

fn blocked(metrics: &Metrics, by: &str) -> f64 {
    let line =
        format!("directory_auth_blocked_total{{target=\"directory/submission\",by=\"{by}\"}}");
    let text = metrics.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(&line))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// How many successful logins of `user` Dovecot logged.
fn logins(dovecot: &Dovecot, user: &str) -> usize {
    dovecot
        .log()
        .matches(&format!("Login: user=<{user}>"))
        .count()
}

fn quiet_dovecot() -> Dovecot {
    Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_count_across_replicas_per_login_and_per_address() {
    let dovecot = quiet_dovecot();
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    };
    let store = Store::open_embedded(dir.path(), options).unwrap();
    let config = config(&dovecot);
    let (one, one_metrics) = replica(&config, Some(store.clone())).await;
    let (two, two_metrics) = replica(&config, Some(store.clone())).await;

    // Three wrong passwords for alice from 192.0.2.1, through either replica.
    for proxy in [&one, &two, &one] {
        assert_eq!(
            login(proxy, ALICE.0, "wrong", "192.0.2.1").await,
            Verdict::No
        );
    }
    // Past the limit: blocked by either replica, even with the right password, without
    // asking Dovecot.
    assert_eq!(
        login(&two, ALICE.0, ALICE.1, "192.0.2.1").await,
        Verdict::Blocked
    );
    assert_eq!(
        login(&one, ALICE.0, ALICE.1, "192.0.2.1").await,
        Verdict::Blocked
    );
    // The login is blocked from another address too; the address for another login.
    assert_eq!(
        login(&one, "Alice@Example.org", ALICE.1, "198.51.100.7").await,
        Verdict::Blocked
    );
    assert_eq!(
        login(&two, BOB.0, BOB.1, "192.0.2.1").await,
        Verdict::Blocked
    );
    assert_eq!(
        blocked(&one_metrics, "login") + blocked(&two_metrics, "login"),
        3.0
    );
    assert_eq!(blocked(&two_metrics, "address"), 1.0);

    // Another login from another address is unaffected, and its success resets nothing.
    assert_eq!(
        login(&one, BOB.0, BOB.1, "198.51.100.7").await,
        Verdict::Yes
    );
    assert_eq!(
        login(&two, BOB.0, BOB.1, "192.0.2.1").await,
        Verdict::Blocked
    );
    // Dovecot logs in order: once bob's one login shows, the blocked attempts (all with
    // the right password) would have shown before it.
    wait_until(
        "bob's login in Dovecot's log",
        || logins(&dovecot, BOB.0) >= 1,
        || dovecot.log(),
    );
    assert_eq!(logins(&dovecot, BOB.0), 1, "{}", dovecot.log());
    assert_eq!(logins(&dovecot, ALICE.0), 0, "{}", dovecot.log());

    // The counters hold hashes only: no login name or address in the store.
    let (begin, end) = store.root().range();
    let pairs: Vec<_> = store
        .scan(KeyRange::new(begin, end), 1000)
        .try_collect()
        .await
        .unwrap();
    assert!(!pairs.is_empty());
    for pair in pairs {
        for text in ["alice", "bob", "192.0.2.1", "198.51.100.7"] {
            let found = |bytes: &[u8]| bytes.windows(text.len()).any(|w| w == text.as_bytes());
            assert!(!found(&pair.key) && !found(&pair.value), "{text}: {pair:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_store_failures_are_counted_in_the_process() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = replica(&config(&dovecot), None).await;
    for n in 0..3 {
        assert_eq!(
            login(
                &proxy,
                &format!("user{n}@example.org"),
                "x",
                "2001:db8:1:2::1"
            )
            .await,
            Verdict::No
        );
    }
    // Another address of the same /64 counts as the same client.
    assert_eq!(
        login(&proxy, ALICE.0, ALICE.1, "2001:db8:1:2::99").await,
        Verdict::Blocked
    );
    assert_eq!(
        login(&proxy, ALICE.0, ALICE.1, "2001:db8:1:3::1").await,
        Verdict::Yes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_do_not_count_and_false_turns_the_limit_off() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = replica(&config(&dovecot), None).await;
    for _ in 0..4 {
        assert_eq!(
            login(&proxy, TEMPFAIL_USER, "x", "192.0.2.1").await,
            Verdict::TemporaryFailure
        );
    }
    assert_eq!(
        login(&proxy, ALICE.0, ALICE.1, "192.0.2.1").await,
        Verdict::Yes
    );

    let unlimited = ferrymail_config::load_str(
        "test.toml",
        &format!(
            "[server]\nhostname = \"proxy.test\"\n[server.auto-ban.auth]\nrate = false\n[directory.submission]\ntype = \"smtp\"\naddress = \"127.0.0.1\"\nport = {}\ntls.allow-invalid-certs = true\n",
            dovecot.ports.submission
        ),
    )
    .unwrap();
    proxy.apply(&unlimited).await;
    for _ in 0..4 {
        assert_eq!(
            login(&proxy, BOB.0, "wrong", "192.0.2.2").await,
            Verdict::No
        );
    }
    assert_eq!(login(&proxy, BOB.0, BOB.1, "192.0.2.2").await, Verdict::Yes);
}
