//! The backends the suite runs against.

use ferrymail_store::{Store, StoreOptions};

/// A store under test, with whatever keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

/// Every backend available here, each empty, with `options` (the prefix is made unique).
pub fn backends(test: &str, options: StoreOptions) -> Vec<Backend> {
    let mut all = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), options.clone()).unwrap();
    all.push(Backend {
        name: "embedded",
        store,
        _dir: Some(dir),
    });
    all.extend(foundationdb(test, options));
    all
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
            for backend in $crate::backends::backends(stringify!($name), $options) {
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
