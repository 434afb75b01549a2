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
    let options = StoreOptions {
        observer: Some(recorded.clone()),
        ..StoreOptions::default()
    };
    for backend in backends("observer", options) {
        let store = backend.store.clone();
        let k = key(&store, ("observed",));

        write(&store, &k, b"1").await.unwrap();
        let read = store
            .transact(|tx| {
                let k = k.clone();
                Box::pin(async move { tx.get(&k).await })
            })
            .await
            .unwrap();
        assert_eq!(read.as_deref(), Some(&b"1"[..]));
        assert_eq!(
            recorded.take(),
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
            recorded.take(),
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
            recorded.take(),
            ["failed key_too_large"],
            "{}: an abort is the closure's answer, not a failure",
            backend.name
        );

        clean(&store).await;
        recorded.take();
    }
}
