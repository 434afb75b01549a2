//! Keys come back in order; range edges, limits and reverse reads behave as FoundationDB's.

use ferrymail_store::{KeyRange, RangeOptions, Store};

use crate::backends::{conformance, key};

async fn put(store: &Store, pairs: &[(Vec<u8>, &'static [u8])]) {
    let pairs = pairs.to_vec();
    store
        .transact(move |tx| {
            let pairs = pairs.clone();
            Box::pin(async move {
                for (k, v) in &pairs {
                    tx.set(k, v)?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();
}

async fn read(store: &Store, range: &KeyRange, options: RangeOptions) -> (Vec<Vec<u8>>, bool) {
    let range = range.clone();
    let page = store
        .transact(move |tx| {
            let range = range.clone();
            Box::pin(async move { tx.get_range(&range, options).await })
        })
        .await
        .unwrap();
    (
        page.pairs.into_iter().map(|kv| kv.value).collect(),
        page.more,
    )
}

fn fwd(limit: usize) -> RangeOptions {
    RangeOptions {
        limit,
        reverse: false,
    }
}

fn rev(limit: usize) -> RangeOptions {
    RangeOptions {
        limit,
        reverse: true,
    }
}

conformance!(ranges_are_ordered_with_limits_and_reverse, |store| {
    let k = |n: i64| key(&store, ("r", n));
    put(
        &store,
        &[
            (k(3), b"3"),
            (k(1), b"1"),
            (k(2), b"2"),
            (k(10), b"10"),
            (k(-1), b"-1"),
        ],
    )
    .await;
    let all = KeyRange::new(k(i64::MIN), k(i64::MAX));
    let v = |vals: &[&str]| {
        vals.iter()
            .map(|s| s.as_bytes().to_vec())
            .collect::<Vec<_>>()
    };
    // Tuple encoding orders integers numerically, negatives first.
    assert_eq!(
        read(&store, &all, fwd(0)).await,
        (v(&["-1", "1", "2", "3", "10"]), false)
    );
    assert_eq!(
        read(&store, &all, rev(0)).await,
        (v(&["10", "3", "2", "1", "-1"]), false)
    );
    assert_eq!(read(&store, &all, fwd(2)).await, (v(&["-1", "1"]), true));
    assert_eq!(read(&store, &all, rev(2)).await, (v(&["10", "3"]), true));
    assert_eq!(
        read(&store, &all, fwd(5)).await,
        (v(&["-1", "1", "2", "3", "10"]), false)
    );
    // begin is included, end excluded.
    assert_eq!(
        read(&store, &KeyRange::new(k(1), k(3)), fwd(0)).await,
        (v(&["1", "2"]), false)
    );
    assert_eq!(
        read(&store, &KeyRange::new(k(1), k(3)), rev(0)).await,
        (v(&["2", "1"]), false)
    );
    // Empty ranges.
    assert_eq!(
        read(&store, &KeyRange::new(k(4), k(9)), fwd(0)).await,
        (vec![], false)
    );
    assert_eq!(
        read(&store, &KeyRange::new(k(3), k(3)), fwd(0)).await,
        (vec![], false)
    );
});

conformance!(prefix_ranges_do_not_leak_into_neighbours, |store| {
    put(
        &store,
        &[
            (key(&store, ("a", "x")), b"ax"),
            (key(&store, ("ab", "x")), b"abx"),
            (key(&store, ("b",)), b"b"),
        ],
    )
    .await;
    let (begin, end) = store.root().subspace(&("a",)).range();
    let (values, _) = read(&store, &KeyRange::new(begin, end), fwd(0)).await;
    assert_eq!(values, vec![b"ax".to_vec()]);
});

conformance!(reads_see_the_transactions_own_writes, |store| {
    let k = |n: i64| key(&store, ("own", n));
    put(
        &store,
        &[(k(1), b"1"), (k(2), b"2"), (k(3), b"3"), (k(4), b"4")],
    )
    .await;
    let (k1, k2, k3, k5) = (k(1), k(2), k(3), k(5));
    let range = KeyRange::new(k(0), k(9));
    let (page, single, gone) = store
        .transact(move |tx| {
            let (k1, k2, k3, k5, range) = (
                k1.clone(),
                k2.clone(),
                k3.clone(),
                k5.clone(),
                range.clone(),
            );
            Box::pin(async move {
                tx.set(&k1, b"one")?;
                tx.clear(&k2)?;
                tx.clear_range(&KeyRange::new(k3.clone(), k5.clone()))?;
                tx.set(&k5, b"5")?;
                let page = tx.get_range(&range, RangeOptions::default()).await?;
                Ok((page, tx.get(&k1).await?, tx.get(&k3).await?))
            })
        })
        .await
        .unwrap();
    let values: Vec<_> = page.pairs.into_iter().map(|kv| kv.value).collect();
    assert_eq!(values, vec![b"one".to_vec(), b"5".to_vec()]);
    assert_eq!(single.as_deref(), Some(&b"one"[..]));
    assert_eq!(gone, None);
});

conformance!(limits_apply_after_the_transactions_own_writes, |store| {
    let k = |n: i64| key(&store, ("lim", n));
    put(&store, &[(k(1), b"1"), (k(3), b"3"), (k(5), b"5")]).await;
    let (k2, k3) = (k(2), k(3));
    let range = KeyRange::new(k(0), k(9));
    let (fwd_page, rev_page) = store
        .transact(move |tx| {
            let (k2, k3, range) = (k2.clone(), k3.clone(), range.clone());
            Box::pin(async move {
                tx.set(&k2, b"2")?;
                tx.clear(&k3)?;
                let a = tx
                    .get_range(
                        &range,
                        RangeOptions {
                            limit: 2,
                            reverse: false,
                        },
                    )
                    .await?;
                let b = tx
                    .get_range(
                        &range,
                        RangeOptions {
                            limit: 2,
                            reverse: true,
                        },
                    )
                    .await?;
                Ok((a, b))
            })
        })
        .await
        .unwrap();
    let vals = |p: ferrymail_store::RangePage| {
        (
            p.pairs.into_iter().map(|kv| kv.value).collect::<Vec<_>>(),
            p.more,
        )
    };
    assert_eq!(vals(fwd_page), (vec![b"1".to_vec(), b"2".to_vec()], true));
    assert_eq!(vals(rev_page), (vec![b"5".to_vec(), b"2".to_vec()], true));
});

conformance!(scans_cross_transactions_page_by_page, |store| {
    use futures::TryStreamExt;
    let pairs: Vec<_> = (0..250i64)
        .map(|n| (key(&store, ("scan", n)), &b"v"[..]))
        .collect();
    put(&store, &pairs).await;
    let (begin, end) = store.root().subspace(&("scan",)).range();
    let all: Vec<_> = store
        .scan(KeyRange::new(begin, end), 7)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
});

conformance!(keys_order_bytewise_as_unsigned_bytes, |store| {
    // Raw bytes after the prefix: high bytes after low ones (unsigned, no collation), a key
    // before its extensions, NUL a byte like any other.
    let raw = |suffix: &[u8]| {
        let mut k = key(&store, ("bytes",));
        k.extend_from_slice(suffix);
        k
    };
    put(
        &store,
        &[
            (raw(b"\xff"), b"ff"),
            (raw(b"\x80"), b"80"),
            (raw(b"a\x00"), b"a00"),
            (raw(b"\x7f"), b"7f"),
            (raw(b"a"), b"a"),
            (raw(b"\x00"), b"00"),
            (raw(b"A"), b"A"),
        ],
    )
    .await;
    let (begin, end) = (raw(b""), raw(b"\xff\xff"));
    let range = KeyRange::new(begin, end);
    let order: Vec<&[u8]> = vec![b"00", b"A", b"a", b"a00", b"7f", b"80", b"ff"];
    let (got, more) = read(&store, &range, fwd(0)).await;
    assert_eq!(
        (got.iter().map(Vec::as_slice).collect::<Vec<_>>(), more),
        (order.clone(), false)
    );
    let (got, _) = read(&store, &range, rev(0)).await;
    let reversed: Vec<&[u8]> = order.into_iter().rev().collect();
    assert_eq!(got.iter().map(Vec::as_slice).collect::<Vec<_>>(), reversed);
});
