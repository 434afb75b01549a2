//! Concurrent transactions give a serializable result.

use std::sync::Arc;

use ferrymail_store::{StoreError, StoreOptions, decode_counter};
use tokio::sync::Barrier;

use crate::backends::{conformance, key};

fn no_retries() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.retry.max_attempts = 1;
    options
}

conformance!(
    a_write_to_a_key_another_transaction_read_is_a_conflict,
    no_retries(),
    |store| {
        let k = key(&store, ("conflict",));
        // Two transactions read the same key, then both write it: the second commit must fail.
        let barrier = Arc::new(Barrier::new(2));
        let run = |value: &'static [u8]| {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                store
                    .transact(move |tx| {
                        let (k, barrier) = (k.clone(), barrier.clone());
                        Box::pin(async move {
                            let _ = tx.get(&k).await?;
                            barrier.wait().await;
                            tx.set(&k, value)?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        let (a, b) = (run(b"a"), run(b"b"));
        let results = [a.await.unwrap(), b.await.unwrap()];
        let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::RetriesExhausted { last, .. }) if matches!(**last, StoreError::Conflict)))
        .count();
        assert_eq!(conflicts, 1, "{results:?}");
    }
);

conformance!(
    blind_writes_and_disjoint_reads_do_not_conflict,
    no_retries(),
    |store| {
        let barrier = Arc::new(Barrier::new(2));
        let run = |n: i64| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let mine = key(&store, ("disjoint", n));
            tokio::spawn(async move {
                store
                    .transact(move |tx| {
                        let (mine, barrier) = (mine.clone(), barrier.clone());
                        Box::pin(async move {
                            let _ = tx.get(&mine).await?;
                            barrier.wait().await;
                            tx.set(&mine, b"x")?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        let (a, b) = (run(1), run(2));
        assert!(a.await.unwrap().is_ok());
        assert!(b.await.unwrap().is_ok());
    }
);

conformance!(concurrent_read_modify_write_loses_no_update, |store| {
    // 16 tasks × 20 increments by read-modify-write: only serializable isolation with retries
    // gives exactly 320.
    let k = key(&store, ("rmw",));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, k) = (store.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                store
                    .transact(|tx| {
                        let k = k.clone();
                        Box::pin(async move {
                            let n = tx.get(&k).await?.map_or(0, |v| decode_counter(&v));
                            tx.set(&k, &(n + 1).to_le_bytes())?;
                            Ok(())
                        })
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let k2 = k.clone();
    let total = store
        .transact(move |tx| {
            let k = k2.clone();
            Box::pin(async move { Ok(tx.get(&k).await?.map_or(0, |v| decode_counter(&v))) })
        })
        .await
        .unwrap();
    assert_eq!(total, 320);
});

conformance!(
    a_range_read_conflicts_with_an_insert_into_the_range,
    no_retries(),
    |store| {
        // Phantom protection: a transaction that read a range fails if a key appears in it.
        let (begin, end) = store.root().subspace(&("phantom",)).range();
        let range = ferrymail_store::KeyRange::new(begin, end);
        let marker = key(&store, ("marker",));
        let inserted = key(&store, ("phantom", 5));
        let barrier = Arc::new(Barrier::new(2));
        let reader = {
            let (store, barrier, range, marker) = (
                store.clone(),
                barrier.clone(),
                range.clone(),
                marker.clone(),
            );
            tokio::spawn(async move {
                store
                    .transact(move |tx| {
                        let (barrier, range, marker) =
                            (barrier.clone(), range.clone(), marker.clone());
                        Box::pin(async move {
                            let page = tx.get_range(&range, Default::default()).await?;
                            barrier.wait().await;
                            barrier.wait().await;
                            tx.set(&marker, &(page.pairs.len() as i64).to_le_bytes())?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        barrier.wait().await;
        store
            .transact(|tx| {
                let inserted = inserted.clone();
                Box::pin(async move { tx.set(&inserted, b"new") })
            })
            .await
            .unwrap();
        barrier.wait().await;
        let result = reader.await.unwrap();
        assert!(
            matches!(&result, Err(StoreError::RetriesExhausted { last, .. }) if matches!(**last, StoreError::Conflict)),
            "{result:?}"
        );
    }
);

conformance!(
    a_cleared_range_conflicts_with_a_read_of_a_key_inside_it,
    no_retries(),
    |store| {
        // The clear begins before the key read, so only its end reaches the read.
        let read = key(&store, ("cleared", 5));
        let (begin, end) = store.root().subspace(&("cleared",)).range();
        let cleared = ferrymail_store::KeyRange::new(begin, end);
        let marker = key(&store, ("marker",));
        let barrier = Arc::new(Barrier::new(2));
        let reader = {
            let (store, barrier, read, marker) =
                (store.clone(), barrier.clone(), read.clone(), marker.clone());
            tokio::spawn(async move {
                store
                    .transact(move |tx| {
                        let (barrier, read, marker) =
                            (barrier.clone(), read.clone(), marker.clone());
                        Box::pin(async move {
                            let seen = tx.get(&read).await?;
                            barrier.wait().await;
                            barrier.wait().await;
                            tx.set(&marker, &[u8::from(seen.is_some())])?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        barrier.wait().await;
        store
            .transact(|tx| {
                let cleared = cleared.clone();
                Box::pin(async move { tx.clear_range(&cleared) })
            })
            .await
            .unwrap();
        barrier.wait().await;
        let result = reader.await.unwrap();
        assert!(
            matches!(&result, Err(StoreError::RetriesExhausted { last, .. }) if matches!(**last, StoreError::Conflict)),
            "{result:?}"
        );
    }
);
