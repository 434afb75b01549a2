//! Blobs: values of any size as chunks, readable only while referenced, collected when not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrymail_store::blob::{BlobError, BlobId, BlobStore, CHUNK_SIZE, GcReport};
use ferrymail_store::{KeyRange, Store, StoreError, StoreOptions};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::backends::{conformance, key};

const GRACE: Duration = Duration::from_secs(3600);

/// A time past the grace period of everything written so far.
fn after_grace() -> SystemTime {
    SystemTime::now() + GRACE + Duration::from_secs(60)
}

/// `len` deterministic pseudo-random bytes, different for each `seed`.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `data` as a body stream, in pieces of uneven sizes (smaller and larger than a chunk).
fn uneven(data: &[u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + '_ {
    const SIZES: [usize; 7] = [1, 4_093, 65_536, 100_003, 777_777, 13, 65_535];
    let mut pieces = Vec::new();
    let (mut at, mut turn) = (0, 0);
    while at < data.len() {
        let end = (at + SIZES[turn % SIZES.len()]).min(data.len());
        pieces.push(at..end);
        (at, turn) = (end, turn + 1);
    }
    futures::stream::iter(pieces).map(move |r| Ok(Bytes::copy_from_slice(&data[r])))
}

/// Commits a transaction that records `owner`'s reference to `id`.
async fn reference(store: &Store, id: BlobId, owner: &'static [u8]) -> Result<(), BlobError> {
    let blobs = BlobStore::new(store.clone());
    store
        .transact(move |tx| {
            let blobs = blobs.clone();
            Box::pin(async move {
                blobs.reference(tx, &id, owner).await?;
                Ok(())
            })
        })
        .await
        .map_err(BlobError::from)
}

/// Commits a transaction that removes `owner`'s reference to `id`.
async fn release(store: &Store, id: BlobId, owner: &'static [u8]) {
    let blobs = BlobStore::new(store.clone());
    store
        .transact(move |tx| {
            let blobs = blobs.clone();
            Box::pin(async move {
                blobs.release(tx, &id, owner).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
}

/// How many keys `range` holds.
async fn count(store: &Store, range: KeyRange) -> usize {
    store
        .scan(range, 1_000)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

conformance!(
    a_30_mb_blob_round_trips_streamed_in_uneven_pieces,
    |store| {
        let blobs = BlobStore::new(store.clone());
        let data = content(30 * 1024 * 1024 + 12_345, 1);
        let id = blobs.write(uneven(&data)).await.unwrap();
        reference(&store, id, b"owner").await.unwrap();
        assert_eq!(
            count(&store, blobs.chunk_range(&id)).await,
            data.len().div_ceil(CHUNK_SIZE)
        );
        let read = blobs.read(&id).await.unwrap();
        assert!(read == data, "read {} bytes of {}", read.len(), data.len());
        let streamed: Vec<Bytes> = blobs.read_stream(&id).try_collect().await.unwrap();
        assert!(streamed.iter().all(|chunk| chunk.len() <= CHUNK_SIZE));
        assert!(streamed.concat() == data);
    }
);

conformance!(an_empty_blob_round_trips, |store| {
    let blobs = BlobStore::new(store.clone());
    let id = blobs.write_all(b"").await.unwrap();
    reference(&store, id, b"owner").await.unwrap();
    assert_eq!(blobs.read(&id).await.unwrap(), b"");
    let streamed: Vec<Bytes> = blobs.read_stream(&id).try_collect().await.unwrap();
    assert!(streamed.is_empty());
    assert_eq!(count(&store, blobs.chunk_range(&id)).await, 0);
    // An empty body stream is the same thing.
    let none = futures::stream::empty::<Result<Bytes, std::io::Error>>();
    let id = blobs.write(none).await.unwrap();
    reference(&store, id, b"owner").await.unwrap();
    assert_eq!(blobs.read(&id).await.unwrap(), b"");
});

conformance!(a_blob_is_readable_only_while_referenced, |store| {
    let blobs = BlobStore::new(store.clone());
    let data = content(200_000, 2);
    let id = blobs.write_all(&data).await.unwrap();

    // Written but not referenced: invisible, to both kinds of read.
    assert!(matches!(blobs.read(&id).await, Err(BlobError::NotFound(got)) if got == id));
    let first = blobs.read_stream(&id).next().await;
    assert!(
        matches!(first, Some(Err(BlobError::NotFound(_)))),
        "{first:?}"
    );

    // A reference in a transaction that does not commit changes nothing.
    let record = key(&store, ("record",));
    let result = store
        .transact(|tx| {
            let (blobs, record) = (blobs.clone(), record.clone());
            Box::pin(async move {
                tx.set(&record, id.as_bytes())?;
                blobs.reference(tx, &id, b"a").await?;
                Err::<(), _>(StoreError::abort("the caller changed its mind"))
            })
        })
        .await;
    assert!(matches!(result, Err(StoreError::Aborted(_))), "{result:?}");
    assert!(matches!(blobs.read(&id).await, Err(BlobError::NotFound(_))));

    // Readable once a reference commits, as long as one remains.
    reference(&store, id, b"a").await.unwrap();
    assert!(blobs.read(&id).await.unwrap() == data);
    reference(&store, id, b"b").await.unwrap();
    release(&store, id, b"a").await;
    assert!(blobs.read(&id).await.unwrap() == data);
    release(&store, id, b"b").await;
    assert!(matches!(blobs.read(&id).await, Err(BlobError::NotFound(_))));
    // Releasing what is not held does nothing.
    release(&store, id, b"b").await;

    // An unknown blob can be neither read nor referenced, and the failed reference aborts the
    // transaction that tried it, with the blob error recoverable from the store error.
    let unknown: BlobId = "00000000000000000000000000000001".parse().unwrap();
    assert!(matches!(blobs.read(&unknown).await, Err(BlobError::NotFound(got)) if got == unknown));
    let result = store
        .transact(|tx| {
            let (blobs, record) = (blobs.clone(), record.clone());
            Box::pin(async move {
                tx.set(&record, unknown.as_bytes())?;
                blobs.reference(tx, &unknown, b"a").await?;
                Ok(())
            })
        })
        .await
        .map_err(BlobError::from);
    assert!(
        matches!(result, Err(BlobError::NotFound(got)) if got == unknown),
        "{result:?}"
    );
    let written = store
        .transact(|tx| {
            let record = record.clone();
            Box::pin(async move { tx.get(&record).await })
        })
        .await
        .unwrap();
    assert_eq!(written, None);
});

conformance!(
    overwriting_with_a_shorter_value_leaves_no_old_chunk,
    |store| {
        let blobs = BlobStore::new(store.clone());
        let long = content(3 * 1024 * 1024 + 1, 3);
        let id = blobs.write_all(&long).await.unwrap();
        reference(&store, id, b"owner").await.unwrap();
        assert_eq!(count(&store, blobs.chunk_range(&id)).await, 49);

        let short = content(100_000, 4);
        blobs.overwrite_all(&id, &short).await.unwrap();
        assert_eq!(count(&store, blobs.chunk_range(&id)).await, 2);
        assert!(blobs.read(&id).await.unwrap() == short);

        blobs.overwrite(&id, uneven(&long)).await.unwrap();
        assert!(blobs.read(&id).await.unwrap() == long);
        blobs.overwrite_all(&id, b"").await.unwrap();
        assert_eq!(count(&store, blobs.chunk_range(&id)).await, 0);
        assert_eq!(blobs.read(&id).await.unwrap(), b"");
        // The reference survived every overwrite; only metadata and reference remain.
        assert_eq!(count(&store, blobs.key_range()).await, 2);

        // Overwriting a blob that does not exist writes nothing.
        let unknown = BlobId::from_bytes([9; 16]);
        let result = blobs.overwrite_all(&unknown, &long).await;
        assert!(
            matches!(result, Err(BlobError::NotFound(got)) if got == unknown),
            "{result:?}"
        );
        assert_eq!(count(&store, blobs.key_range()).await, 2);
    }
);

conformance!(
    collection_removes_unreferenced_blobs_and_releases_delete_at_once,
    |store| {
        let blobs = BlobStore::new(store.clone());
        let pending = blobs.write_all(&content(150_000, 5)).await.unwrap();
        let kept_data = content(70_000, 6);
        let kept = blobs.write_all(&kept_data).await.unwrap();
        reference(&store, kept, b"owner").await.unwrap();

        // Within the grace period the pending blob is someone's work in progress.
        let report = blobs
            .collect_garbage(GRACE, SystemTime::now())
            .await
            .unwrap();
        let young = GcReport {
            pending_kept: 1,
            ..GcReport::default()
        };
        assert_eq!(report, young);
        assert_eq!(count(&store, blobs.chunk_range(&pending)).await, 3);

        // Past it, the pending blob goes and the referenced one stays.
        let report = blobs.collect_garbage(GRACE, after_grace()).await.unwrap();
        let old = GcReport {
            blobs_removed: 1,
            ..GcReport::default()
        };
        assert_eq!(report, old);
        assert_eq!(count(&store, blobs.chunk_range(&pending)).await, 0);
        let late = reference(&store, pending, b"owner").await;
        assert!(matches!(late, Err(BlobError::NotFound(_))), "{late:?}");
        assert!(blobs.read(&kept).await.unwrap() == kept_data);

        // Releasing the last reference deletes the blob at once: nothing is left to collect.
        release(&store, kept, b"owner").await;
        assert_eq!(count(&store, blobs.key_range()).await, 0);
        let report = blobs
            .collect_garbage(GRACE, SystemTime::now())
            .await
            .unwrap();
        assert_eq!(report, GcReport::default());
    }
);

conformance!(collection_works_through_many_blobs_in_batches, |store| {
    let blobs = BlobStore::new(store.clone());
    let mut referenced = Vec::new();
    for n in 0..150u64 {
        let id = blobs.write_all(&n.to_be_bytes()).await.unwrap();
        if n % 10 == 0 {
            reference(&store, id, b"owner").await.unwrap();
            referenced.push((id, n));
        }
    }
    let report = blobs.collect_garbage(GRACE, after_grace()).await.unwrap();
    assert_eq!(report.blobs_removed, 135);
    for (id, n) in referenced {
        assert_eq!(blobs.read(&id).await.unwrap(), n.to_be_bytes());
    }
    // Meta and reference of each survivor.
    assert_eq!(count(&store, blobs.key_range()).await, 15 * 3);
});

conformance!(a_body_that_fails_mid_write_leaves_nothing_behind, |store| {
    let blobs = BlobStore::new(store.clone());
    let pieces = (0..10)
        .map(|n| Ok(Bytes::from(content(256 * 1024, n))))
        .chain([Err(std::io::Error::other("the client went away"))]);
    let result = blobs.write(futures::stream::iter(pieces)).await;
    let Err(BlobError::Body(cause)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(cause.to_string(), "the client went away");
    // More than a transaction's worth was committed before the failure; the writer deleted it.
    assert_eq!(count(&store, blobs.key_range()).await, 0);
    let report = blobs.collect_garbage(GRACE, after_grace()).await.unwrap();
    assert_eq!(report, GcReport::default());
});

conformance!(
    a_writer_that_dies_mid_write_leaves_a_pending_write_that_collection_removes,
    |store| {
        let blobs = BlobStore::new(store.clone());
        // 40 chunks, then the body stalls forever: the writer has committed some chunks and
        // waits for more when it is killed.
        let (stalled, on_stall) = tokio::sync::oneshot::channel();
        let body = futures::stream::iter(
            (0..40).map(|n| Ok::<_, std::io::Error>(Bytes::from(content(CHUNK_SIZE, n)))),
        )
        .chain(futures::stream::once(async move {
            let _ = stalled.send(());
            futures::future::pending::<Result<Bytes, std::io::Error>>().await
        }));
        let writer = {
            let blobs = blobs.clone();
            tokio::spawn(async move { blobs.write(body).await })
        };
        on_stall.await.unwrap();
        writer.abort();
        assert!(writer.await.unwrap_err().is_cancelled());
        let left = count(&store, blobs.key_range()).await;
        assert!(
            left > 1,
            "{left} keys: the committed chunks and their marker"
        );

        let report = blobs
            .collect_garbage(GRACE, SystemTime::now())
            .await
            .unwrap();
        let young = GcReport {
            pending_kept: 1,
            ..GcReport::default()
        };
        assert_eq!(report, young);
        assert_eq!(count(&store, blobs.key_range()).await, left);

        let report = blobs.collect_garbage(GRACE, after_grace()).await.unwrap();
        let old = GcReport {
            writes_removed: 1,
            ..GcReport::default()
        };
        assert_eq!(report, old);
        assert_eq!(count(&store, blobs.key_range()).await, 0);
    }
);

conformance!(a_missing_chunk_is_corrupt_not_a_short_read, |store| {
    let blobs = BlobStore::new(store.clone());
    let id = blobs
        .write_all(&content(5 * CHUNK_SIZE + 10, 7))
        .await
        .unwrap();
    reference(&store, id, b"owner").await.unwrap();
    let chunks: Vec<_> = store
        .scan(blobs.chunk_range(&id), 100)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(chunks.len(), 6);
    let last = chunks[5].key.clone();
    store
        .transact(|tx| {
            let last = last.clone();
            Box::pin(async move { tx.clear(&last) })
        })
        .await
        .unwrap();
    let result = blobs.read(&id).await;
    assert!(
        matches!(&result, Err(BlobError::Corrupt { id: got, .. }) if *got == id),
        "{:?}",
        result.map(|r| r.len())
    );
});

conformance!(
    reading_while_another_task_overwrites_never_mixes_versions,
    |store| {
        let blobs = BlobStore::new(store.clone());
        // Several read transactions each, so an overwrite can land between two of them.
        let a = Arc::new(content(3 * 1024 * 1024 + 17, 8));
        let b = Arc::new(content(2 * 1024 * 1024 + 5, 9));
        let id = blobs.write_all(&a).await.unwrap();
        reference(&store, id, b"owner").await.unwrap();

        let done = Arc::new(AtomicBool::new(false));
        let overwriter = {
            let (blobs, a, b, done) = (blobs.clone(), a.clone(), b.clone(), done.clone());
            tokio::spawn(async move {
                for round in 0..8 {
                    let next = if round % 2 == 0 { &b } else { &a };
                    blobs.overwrite_all(&id, next).await.unwrap();
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let (mut whole, mut changed) = (0, 0);
        let mut round = 0;
        loop {
            let finished = done.load(Ordering::SeqCst);
            // Alternate between the two ways of reading.
            let result = if round % 2 == 0 {
                blobs.read(&id).await
            } else {
                let mut stream = std::pin::pin!(blobs.read_stream(&id));
                let mut got: Vec<u8> = Vec::new();
                loop {
                    match stream.try_next().await {
                        Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                        Ok(None) => break Ok(got),
                        Err(error) => break Err(error),
                    }
                }
            };
            match result {
                Ok(read) => {
                    assert!(
                        read == *a || read == *b,
                        "a read of {} bytes mixes versions",
                        read.len()
                    );
                    whole += 1;
                }
                Err(BlobError::ChangedDuringRead(got)) if got == id => changed += 1,
                Err(error) => panic!("{error:?}"),
            }
            round += 1;
            if finished {
                break;
            }
        }
        overwriter.await.unwrap();
        eprintln!("{whole} whole reads, {changed} reads saw a change");
        // The last read began after the last overwrite.
        assert!(blobs.read(&id).await.unwrap() == *a);
        assert_eq!(count(&store, blobs.chunk_range(&id)).await, 49);
    }
);

fn twice() -> StoreOptions {
    StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    }
}

conformance!(
    blob_transactions_are_idempotent_under_retry,
    twice(),
    |store| {
        // Every closure runs twice (the first run discarded): writes, overwrites, references,
        // releases and collection must still leave exactly one consistent blob.
        let blobs = BlobStore::new(store.clone());
        let first = content(CHUNK_SIZE * 24 + 3, 10);
        let id = blobs.write(uneven(&first)).await.unwrap();
        reference(&store, id, b"owner").await.unwrap();
        assert!(blobs.read(&id).await.unwrap() == first);
        let second = content(CHUNK_SIZE + 1, 11);
        blobs.overwrite_all(&id, &second).await.unwrap();
        assert!(blobs.read(&id).await.unwrap() == second);
        assert_eq!(count(&store, blobs.chunk_range(&id)).await, 2);
        release(&store, id, b"owner").await;
        assert_eq!(count(&store, blobs.key_range()).await, 0);
        let report = blobs
            .collect_garbage(GRACE, SystemTime::now())
            .await
            .unwrap();
        assert_eq!(report, GcReport::default());
    }
);
