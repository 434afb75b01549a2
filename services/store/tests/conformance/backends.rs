//! The backends the suite runs against.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrymail_e2e::Postgres;
use ferrymail_store::{PostgresSettings, Store, StoreOptions};

/// A store under test, with whatever keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

/// Every backend available here, each empty, with `options` (the prefix is made unique).
pub async fn backends(test: &str, options: StoreOptions) -> Vec<Backend> {
    let mut all = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), options.clone()).unwrap();
    all.push(Backend {
        name: "embedded",
        store,
        _dir: Some(dir),
    });
    let store = Store::open_postgresql(&postgres_settings(&fresh_database()), options.clone())
        .await
        .unwrap();
    all.push(Backend {
        name: "postgresql",
        store,
        _dir: None,
    });
    all.extend(foundationdb(test, options));
    all
}

/// The cluster of this test binary, started by the first test that needs it.
pub fn postgres() -> &'static Postgres {
    static CLUSTER: OnceLock<Postgres> = OnceLock::new();
    CLUSTER.get_or_init(Postgres::start)
}

/// A new, empty database of [`postgres`].
pub fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("conformance_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    postgres().create_database(&name);
    name
}

/// Settings for `database` of `cluster`.
pub fn settings_of(cluster: &Postgres, database: &str) -> PostgresSettings {
    PostgresSettings {
        host: "127.0.0.1".into(),
        port: cluster.port(),
        database: database.into(),
        user: cluster.user().into(),
        password: Some(cluster.password().into()),
        timeout: Duration::from_secs(5),
        tls: None,
        max_connections: 16,
    }
}

/// Settings for `database` of [`postgres`].
pub fn postgres_settings(database: &str) -> PostgresSettings {
    settings_of(postgres(), database)
}

#[cfg(feature = "fdb")]
fn foundationdb(test: &str, mut options: StoreOptions) -> Option<Backend> {
    let cluster_file = std::env::var_os("FDB_CLUSTER_FILE")?;
    options.prefix = format!("ferrymail-test-{test}-{}", rand_suffix());
    let store =
        Store::open_foundationdb(Some(std::path::Path::new(&cluster_file)), options).unwrap();
    Some(Backend {
        name: "foundationdb",
        store,
        _dir: None,
    })
}

#[cfg(feature = "fdb")]
fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", std::process::id())
}

#[cfg(not(feature = "fdb"))]
fn foundationdb(_test: &str, _options: StoreOptions) -> Option<Backend> {
    None
}

/// Declares a test that runs `body(store)` on every backend.
macro_rules! conformance {
    ($(#[$meta:meta])* $name:ident, $options:expr, |$store:ident| $body:block) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            for backend in $crate::backends::backends(stringify!($name), $options).await {
                eprintln!("{}: {}", stringify!($name), backend.name);
                let $store = backend.store.clone();
                $body
                $crate::backends::clean(&backend.store).await;
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, |$store:ident| $body:block) => {
        conformance!($(#[$meta])* $name, ferrymail_store::StoreOptions::default(), |$store| $body);
    };
}
pub(crate) use conformance;

/// Removes everything the test wrote under its prefix (FoundationDB is shared).
pub async fn clean(store: &Store) {
    let range = prefix_range(store);
    store
        .transact(|tx| {
            let range = range.clone();
            Box::pin(async move { tx.clear_range(&range) })
        })
        .await
        .unwrap();
}

/// Every key of the installation.
pub fn prefix_range(store: &Store) -> ferrymail_store::KeyRange {
    let (begin, end) = store.root().range();
    ferrymail_store::KeyRange::new(begin, end)
}

/// A key under the installation prefix.
pub fn key(store: &Store, parts: impl ferrymail_store::TuplePack) -> Vec<u8> {
    store.root().pack(&parts)
}
