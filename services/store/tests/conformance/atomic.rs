//! Atomic add and compare-and-clear.

use ferrymail_store::decode_counter;

use crate::backends::{conformance, key};

conformance!(atomic_adds_under_contention_give_the_exact_total, |store| {
    let k = key(&store, ("counter",));
    let (tasks_n, adds) = (32, 50);
    let mut tasks = Vec::new();
    for task in 0..tasks_n {
        let (store, k) = (store.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..adds {
                store
                    .transact(|tx| {
                        let k = k.clone();
                        Box::pin(async move { tx.atomic_add(&k, task + 1) })
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
    // Σ (task+1) × adds for task in 0..32
    assert_eq!(total, (1..=tasks_n).sum::<i64>() * adds);
});

conformance!(
    atomic_add_accepts_negative_deltas_and_reads_back_in_the_same_transaction,
    |store| {
        let k = key(&store, ("neg",));
        let seen = store
            .transact(|tx| {
                let k = k.clone();
                Box::pin(async move {
                    tx.atomic_add(&k, 5)?;
                    tx.atomic_add(&k, -7)?;
                    Ok(tx.get(&k).await?.map(|v| decode_counter(&v)))
                })
            })
            .await
            .unwrap();
        assert_eq!(seen, Some(-2));
    }
);

conformance!(compare_and_clear_clears_only_the_expected_value, |store| {
    let (a, b) = (key(&store, ("cac", "a")), key(&store, ("cac", "b")));
    let (a2, b2) = (a.clone(), b.clone());
    store
        .transact(move |tx| {
            let (a, b) = (a2.clone(), b2.clone());
            Box::pin(async move {
                tx.set(&a, b"lease-1")?;
                tx.set(&b, b"lease-2")
            })
        })
        .await
        .unwrap();
    let (a2, b2) = (a.clone(), b.clone());
    store
        .transact(move |tx| {
            let (a, b) = (a2.clone(), b2.clone());
            Box::pin(async move {
                tx.compare_and_clear(&a, b"lease-1")?;
                tx.compare_and_clear(&b, b"lease-1")
            })
        })
        .await
        .unwrap();
    let got = store
        .transact(move |tx| {
            let (a, b) = (a.clone(), b.clone());
            Box::pin(async move { Ok((tx.get(&a).await?, tx.get(&b).await?)) })
        })
        .await
        .unwrap();
    assert_eq!(got, (None, Some(b"lease-2".to_vec())));
});
