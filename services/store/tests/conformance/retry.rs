//! Closures are run again on conflict; the double-run mode exposes closures that are not
//! idempotent under retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrymail_store::{StoreError, StoreOptions, decode_counter};

use crate::backends::{conformance, key};

fn twice() -> StoreOptions {
    StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    }
}

conformance!(
    double_run_mode_runs_each_closure_twice_and_commits_once,
    twice(),
    |store| {
        let runs = Arc::new(AtomicUsize::new(0));
        let k = key(&store, ("twice",));
        store
            .transact(|tx| {
                let (k, runs) = (k.clone(), runs.clone());
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tx.atomic_add(&k, 1)
                })
            })
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let value = store
            .transact(|tx| {
                let k = k.clone();
                Box::pin(async move { tx.get(&k).await })
            })
            .await
            .unwrap();
        assert_eq!(
            value.map(|v| decode_counter(&v)),
            Some(1),
            "the discarded run committed nothing"
        );
    }
);

conformance!(
    double_run_mode_exposes_a_closure_with_side_effects,
    twice(),
    |store| {
        // A closure that counts work outside the transaction sees it counted twice: the test
        // mode makes that visible where real retries would do it only under contention.
        let sent = Arc::new(AtomicUsize::new(0));
        let k = key(&store, ("effect",));
        store
            .transact(|tx| {
                let (k, sent) = (k.clone(), sent.clone());
                Box::pin(async move {
                    sent.fetch_add(1, Ordering::SeqCst);
                    tx.set(&k, b"x")
                })
            })
            .await
            .unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }
);

conformance!(
    an_aborted_closure_commits_nothing_and_is_not_retried,
    |store| {
        let runs = Arc::new(AtomicUsize::new(0));
        let k = key(&store, ("abort",));
        let result: Result<(), _> = store
            .transact(|tx| {
                let (k, runs) = (k.clone(), runs.clone());
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tx.set(&k, b"x")?;
                    Err(StoreError::abort("over quota"))
                })
            })
            .await;
        assert!(matches!(result, Err(StoreError::Aborted(_))));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let value = store
            .transact(|tx| {
                let k = k.clone();
                Box::pin(async move { tx.get(&k).await })
            })
            .await
            .unwrap();
        assert_eq!(value, None);
    }
);
