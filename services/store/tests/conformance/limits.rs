//! FoundationDB's limits are refused with FoundationDB's errors.

use std::time::Duration;

use ferrymail_store::limits::{MAX_KEY, MAX_VALUE};
use ferrymail_store::{StoreError, StoreOptions};

use crate::backends::{conformance, key};

fn no_retries() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.retry.max_attempts = 1;
    options
}

conformance!(oversize_keys_and_values_are_refused, |store| {
    let big_key = vec![b'k'; MAX_KEY + 1];
    let ok_key = key(&store, ("v",));
    let result = store
        .transact(|tx| {
            let k = big_key.clone();
            Box::pin(async move { tx.set(&k, b"v") })
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::KeyTooLarge(n)) if n == MAX_KEY + 1),
        "{result:?}"
    );
    let result = store
        .transact(|tx| {
            let k = ok_key.clone();
            Box::pin(async move { tx.set(&k, &vec![0u8; MAX_VALUE + 1]) })
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::ValueTooLarge(n)) if n == MAX_VALUE + 1),
        "{result:?}"
    );
    // The largest allowed value is accepted.
    store
        .transact(|tx| {
            let k = ok_key.clone();
            Box::pin(async move { tx.set(&k, &vec![0u8; MAX_VALUE]) })
        })
        .await
        .unwrap();
});

conformance!(
    oversize_transactions_are_refused_and_write_nothing,
    |store| {
        // 110 values of 99,000 bytes: about 10.9 MB, over the 10,000,000-byte limit.
        let result = store
            .transact(|tx| {
                let store = store.clone();
                Box::pin(async move {
                    for n in 0..110i64 {
                        tx.set(&key(&store, ("big", n)), &vec![7u8; 99_000])?;
                    }
                    Ok(())
                })
            })
            .await;
        assert!(
            matches!(result, Err(StoreError::TransactionTooLarge(_))),
            "{result:?}"
        );
        let probe = key(&store, ("big", 0));
        let after = store
            .transact(|tx| {
                let k = probe.clone();
                Box::pin(async move { tx.get(&k).await })
            })
            .await
            .unwrap();
        assert_eq!(after, None);
    }
);

conformance!(
    transactions_older_than_five_seconds_fail_as_too_old,
    no_retries(),
    |store| {
        let k = key(&store, ("old",));
        let result = store
            .transact(|tx| {
                let k = k.clone();
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(5_500)).await;
                    tx.set(&k, b"late")?;
                    tx.get(&k).await.map(drop)
                })
            })
            .await;
        let too_old = |e: &StoreError| {
            matches!(e, StoreError::TransactionTooOld(_))
                || matches!(e, StoreError::Fdb { code: 1007, .. })
        };
        assert!(
            matches!(&result, Err(StoreError::RetriesExhausted { last, .. }) if too_old(last)),
            "{result:?}"
        );
    }
);
