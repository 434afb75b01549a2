//! The shared lookup cache under `cluster.cache-key`, a key kept outside the store: a copy
//! of the store reveals nothing usable, a changed key empties the cache, no key means no
//! shared cache, and what earlier versions kept in the store (their key) is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_config::Config;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{ALICE, Dovecot, DovecotOptions};
use ferrymail_rpc::directory::{AuthRequest, DirectoryService, Mechanism, Verdict};
use ferrymail_store::{KeyRange, KeyValue, Store, StoreOptions};
use ferrymail_telemetry::Metrics;
use futures::TryStreamExt;
use secrecy::SecretSlice;

/// The SMTP client the requests come from (a documentation address).
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

const KEY_ONE: &str = "the first cache key, thirty-two bytes or more";
const KEY_TWO: &str = "the second cache key, thirty-two bytes or more";

/// LMTP and submission directories on `dovecot`, with `cache_key` when given.
fn config(dovecot: &Dovecot, cache_key: Option<&str>) -> Config {
    let cluster = cache_key.map_or(String::new(), |key| {
        format!("[cluster]\ncache-key = \"{key}\"\n")
    });
    let text = format!(
        r#"
[server]
hostname = "proxy.test"
{cluster}
[directory.lmtp]
type = "lmtp"
address = "127.0.0.1"
port = {lmtp}
timeout = "20s"
tls.allow-invalid-certs = true

[directory.submission]
type = "smtp"
address = "127.0.0.1"
port = {submission}
timeout = "20s"
tls.allow-invalid-certs = true
"#,
        lmtp = dovecot.ports.lmtp,
        submission = dovecot.ports.submission,
    );
    ferrymail_config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn store(dir: &tempfile::TempDir) -> Store {
    let options = StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    };
    Store::open_embedded(dir.path(), options).unwrap()
}

async fn proxy(config: &Config, store: &Store) -> (DirectoryProxy, Metrics) {
    let metrics = Metrics::new("test");
    let proxy = DirectoryProxy::new(
        config,
        Some(store.clone()),
        DirectoryMetrics::register(&metrics),
    )
    .await
    .unwrap();
    (proxy, metrics)
}

fn dovecot() -> Dovecot {
    Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    })
}

async fn rcpt(proxy: &DirectoryProxy, address: &str) -> Verdict {
    proxy
        .verify_recipient("lmtp", address)
        .await
        .unwrap()
        .verdict
}

fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    let text = metrics.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const SHARED_HITS: &str =
    "directory_cache_requests_total{target=\"directory/lmtp\",level=\"shared\",result=\"hit\"}";

/// Every pair in the store.
async fn everything(store: &Store) -> Vec<KeyValue> {
    let (begin, end) = store.root().range();
    store
        .scan(KeyRange::new(begin, end), 1000)
        .try_collect()
        .await
        .unwrap()
}

/// The shared cache's entries (of any key).
async fn entries(store: &Store) -> Vec<KeyValue> {
    let (begin, end) = store.root().subspace(&("lookup-cache",)).range();
    store
        .scan(KeyRange::new(begin, end), 1000)
        .try_collect()
        .await
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_the_store_reveals_nothing_usable() {
    let dovecot = dovecot();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let (replica, _) = proxy(&config(&dovecot, Some(KEY_ONE)), &store).await;
    assert_eq!(rcpt(&replica, ALICE.0).await, Verdict::Yes);
    // Dovecot's refusal names the address: the reply is cached with the answer.
    let nosuch = replica
        .verify_recipient("lmtp", "nosuch@example.org")
        .await
        .unwrap();
    assert_eq!(nosuch.verdict, Verdict::No);
    assert!(nosuch.reply.unwrap().text.contains("nosuch@example.org"));
    let login = AuthRequest {
        directory: "submission".into(),
        mechanism: Mechanism::Plain,
        username: ALICE.0.into(),
        secret: SecretSlice::from(ALICE.1.as_bytes().to_vec()),
        authzid: None,
        client: CLIENT,
    };
    assert_eq!(
        replica.authenticate(login).await.unwrap().verdict,
        Verdict::Yes
    );

    assert_eq!(entries(&store).await.len(), 3, "three answers are shared");
    let pairs = everything(&store).await;
    for pair in &pairs {
        for secret in [
            "alice",
            "nosuch",
            "example.org",
            ALICE.1,
            KEY_ONE,
            "User doesn't exist",
        ] {
            assert!(
                !contains(&pair.key, secret.as_bytes())
                    && !contains(&pair.value, secret.as_bytes()),
                "{secret:?} is in the store: {pair:?}"
            );
        }
    }
    // Without the key the copy is of no use: another key finds nothing in it.
    let stolen = config(&dovecot, Some(KEY_TWO));
    drop(dovecot);
    let copy = tempfile::tempdir().unwrap();
    let other = self::store(&copy);
    other
        .transact(|tx| {
            let pairs = pairs.clone();
            Box::pin(async move {
                for pair in &pairs {
                    tx.set(&pair.key, &pair.value)?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();
    let (thief, metrics) = proxy(&stolen, &other).await;
    assert_eq!(rcpt(&thief, ALICE.0).await, Verdict::TemporaryFailure);
    assert_eq!(metric(&metrics, SHARED_HITS), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_key_empties_the_cache() {
    let mut dovecot = dovecot();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let one = config(&dovecot, Some(KEY_ONE));
    let (first, _) = proxy(&one, &store).await;
    assert_eq!(rcpt(&first, ALICE.0).await, Verdict::Yes);
    assert_eq!(entries(&store).await.len(), 1);
    dovecot.stop();

    // A replica with the same key answers from the shared cache, the server being down.
    let (same, metrics) = proxy(&one, &store).await;
    assert_eq!(rcpt(&same, ALICE.0).await, Verdict::Yes);
    assert_eq!(metric(&metrics, SHARED_HITS), 1.0);

    // A reload with another key: the process forgets its own copy too, and asks again.
    let two = config(&dovecot, Some(KEY_TWO));
    same.apply(&two).await;
    assert_eq!(rcpt(&same, ALICE.0).await, Verdict::TemporaryFailure);
    assert_eq!(
        entries(&store).await.len(),
        0,
        "the old key's entries are cleared"
    );

    // A replica started with the new key finds nothing either.
    let (started, metrics) = proxy(&two, &store).await;
    assert_eq!(rcpt(&started, ALICE.0).await, Verdict::TemporaryFailure);
    assert_eq!(metric(&metrics, SHARED_HITS), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_nothing_is_shared_through_the_store() {
    let mut dovecot = dovecot();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let keyless = config(&dovecot, None);
    let (first, _) = proxy(&keyless, &store).await;
    assert_eq!(rcpt(&first, ALICE.0).await, Verdict::Yes);
    // Cached in the process…
    dovecot.stop();
    assert_eq!(rcpt(&first, ALICE.0).await, Verdict::Yes);
    // …and nowhere else.
    assert_eq!(entries(&store).await.len(), 0);
    let (second, _) = proxy(&keyless, &store).await;
    assert_eq!(rcpt(&second, ALICE.0).await, Verdict::TemporaryFailure);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_and_entries_earlier_versions_kept_in_the_store_are_removed() {
    let dovecot = dovecot();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let root = store.root().clone();
    let legacy_key = root.pack(&("directory-cache-key",));
    let legacy_entry = root.pack(&("directory-cache", "directory/lmtp", [7u8; 32].as_slice()));
    store
        .transact(|tx| {
            let (key, entry) = (legacy_key.clone(), legacy_entry.clone());
            Box::pin(async move {
                tx.set(&key, &[1; 32])?;
                tx.set(&entry, b"an entry keyed by the stored key")
            })
        })
        .await
        .unwrap();
    for key in [None, Some(KEY_ONE)] {
        let (_proxy, _) = proxy(&config(&dovecot, key), &store).await;
        assert_eq!(everything(&store).await, Vec::new(), "with key {key:?}");
    }
}
