//! The observer hears what each transaction came to: commits with writes (timed), retries
//! and failures, each by the kind of error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrymail_store::{Store, StoreError, StoreObserver, StoreOptions};

use crate::backends::{backends, clean, key};

/// Everything reported, in order.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<String>>);

impl Recorded {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    /// What was reported about transactions: log syncs are the embedded store's own.
    fn outcomes(&self) -> Vec<String> {
        let mut all = self.take();
        all.retain(|event| event != "log synced");
        all
    }
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
}

impl StoreObserver for Recorded {
    fn committed(&self, took: Duration) {
        assert!(took < Duration::from_secs(60), "{took:?}");
        self.push("committed".to_owned());
    }
    fn retried(&self, error: &StoreError) {
        self.push(format!("retried {}", error.kind()));
    }
    fn failed(&self, error: &StoreError) {
        self.push(format!("failed {}", error.kind()));
    }
    fn log_synced(&self) {
        self.push("log synced".to_owned());
    }
}

/// Sets `k` to `value` in a transaction whose durability is relaxed.
async fn write_relaxed(store: &Store, k: &[u8], value: &'static [u8]) {
    store
        .transact(|tx| {
            let k = k.to_vec();
            Box::pin(async move {
                tx.relax_durability();
                tx.set(&k, value)
            })
        })
        .await
        .unwrap();
}

async fn read(store: &Store, k: &[u8]) -> Option<Vec<u8>> {
    store
        .transact(|tx| {
            let k = k.to_vec();
            Box::pin(async move { tx.get(&k).await })
        })
        .await
        .unwrap()
}

/// Store options with `observer` and the defaults otherwise.
fn observed_by(observer: Arc<dyn StoreObserver>) -> StoreOptions {
    StoreOptions {
        observer: Some(observer),
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn a_relaxed_commit_is_synced_by_the_next_durable_one() {
    let recorded = Arc::new(Recorded::default());
    let options = observed_by(recorded.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), options.clone()).unwrap();
    let (relaxed, durable) = (key(&store, ("relaxed",)), key(&store, ("durable",)));
    write_relaxed(&store, &relaxed, b"1").await;
    assert!(
        recorded.take().is_empty(),
        "answered without a sync, not timed"
    );
    assert_eq!(read(&store, &relaxed).await.as_deref(), Some(&b"1"[..]));
    write(&store, &durable, b"2").await.unwrap();
    assert_eq!(recorded.take(), ["log synced", "committed"]);

    // What a crash now would leave: both, replayed from the log.
    std::mem::forget(store);
    let crashed = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), crashed.path().join(file.file_name())).unwrap();
    }
    let reopened = Store::open_embedded(crashed.path(), options).unwrap();
    assert_eq!(read(&reopened, &relaxed).await.as_deref(), Some(&b"1"[..]));
    assert_eq!(read(&reopened, &durable).await.as_deref(), Some(&b"2"[..]));
}

async fn write(store: &Store, k: &[u8], value: &'static [u8]) -> Result<(), StoreError> {
    store
        .transact(|tx| {
            let k = k.to_vec();
            Box::pin(async move { tx.set(&k, value) })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_hears_commits_retries_and_failures() {
    let recorded = Arc::new(Recorded::default());
    for backend in backends("observer", observed_by(recorded.clone())).await {
        let store = backend.store.clone();
        let k = key(&store, ("observed",));

        write(&store, &k, b"1").await.unwrap();
        assert_eq!(read(&store, &k).await.as_deref(), Some(&b"1"[..]));
        assert_eq!(
            recorded.outcomes(),
            ["committed"],
            "{}: a read-only transaction commits nothing",
            backend.name
        );

        // The first run reads the key, then another transaction changes it before the
        // first commits: a conflict, and the second run commits.
        let runs = AtomicUsize::new(0);
        store
            .transact(|tx| {
                let (k, store, first) = (
                    k.clone(),
                    store.clone(),
                    runs.fetch_add(1, Ordering::SeqCst) == 0,
                );
                Box::pin(async move {
                    let _ = tx.get(&k).await?;
                    if first {
                        write(&store, &k, b"2").await?;
                    }
                    tx.set(&k, b"3")
                })
            })
            .await
            .unwrap();
        assert_eq!(
            recorded.outcomes(),
            ["committed", "retried conflict", "committed"],
            "{}",
            backend.name
        );

        let too_long = vec![b'k'; 10_001];
        let error = write(&store, &too_long, b"x").await.unwrap_err();
        assert!(matches!(error, StoreError::KeyTooLarge(_)), "{error}");
        let aborted: Result<(), _> = store
            .transact(|_| Box::pin(async { Err(StoreError::abort("not wanted")) }))
            .await;
        assert!(matches!(aborted, Err(StoreError::Aborted(_))));
        assert_eq!(
            recorded.outcomes(),
            ["failed key_too_large"],
            "{}: an abort is the closure's answer, not a failure",
            backend.name
        );

        clean(&store).await;
        recorded.take();
    }
}

/// Counts what the embedded store reports of its log.
#[derive(Debug, Default)]
struct LogReports {
    grouped_transactions: AtomicUsize,
    groups: AtomicUsize,
    checkpoints: AtomicUsize,
}

impl StoreObserver for LogReports {
    fn committed(&self, _: Duration) {}
    fn retried(&self, _: &StoreError) {}
    fn failed(&self, _: &StoreError) {}
    fn group_committed(&self, transactions: usize) {
        self.grouped_transactions
            .fetch_add(transactions, Ordering::SeqCst);
        self.groups.fetch_add(1, Ordering::SeqCst);
    }
    fn checkpointed(&self, took: Duration) {
        assert!(took < Duration::from_secs(60), "{took:?}");
        self.checkpoints.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_reports_each_transaction_in_one_group_and_its_checkpoints() {
    let reports = Arc::new(LogReports::default());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), observed_by(reports.clone())).unwrap();
    let writes = (0..40u32).map(|n| {
        let store = store.clone();
        let k = key(&store, ("grouped", n));
        async move { write(&store, &k, b"v").await }
    });
    for written in futures::future::join_all(writes).await {
        written.unwrap();
    }
    let (grouped, groups) = (
        reports.grouped_transactions.load(Ordering::SeqCst),
        reports.groups.load(Ordering::SeqCst),
    );
    assert_eq!(grouped, 40, "every commit is in exactly one group");
    assert!((1..=40).contains(&groups), "{groups} groups");

    // A checkpoint follows within the store's interval (1 s); the wait is only a guard.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reports.checkpoints.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
