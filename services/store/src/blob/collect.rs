//! Collection: deleting released blobs, and unreferenced blobs and unfinished writes older
//! than the grace period.
//!
//! Markers are found by paged scans (one short transaction per page) and deleted in batches
//! of bounded transactions that read each marker again, so a blob referenced, or a write that
//! made progress, since the scan is left alone: those changes and the deletion conflict.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;

use crate::{RangeOptions, StoreError};

use super::keys::{Cause, Meta, Unreferenced, Writing};
use super::{BlobError, BlobId, BlobStore, unix_millis};

/// Markers read per scan transaction.
const SCAN_PAGE: usize = 256;
/// Blobs or writes deleted per transaction: a few small reads and clears each (deleting a
/// chunk range is one clear whatever its size), so a batch stays far below every limit.
const DELETE_BATCH: usize = 64;

/// What one collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted: released, or written and left unreferenced past the grace period.
    pub blobs_removed: u64,
    /// Unfinished writes deleted: their writer stopped making progress past the grace period.
    pub writes_removed: u64,
    /// Unreferenced blobs and unfinished writes kept, being younger than the grace period.
    pub pending_kept: u64,
}

/// Which markers are old enough to act on.
#[derive(Debug, Clone, Copy)]
struct Policy {
    now_ms: u64,
    grace_ms: u64,
}

impl Policy {
    fn expired(&self, since_ms: u64) -> bool {
        self.now_ms.saturating_sub(since_ms) > self.grace_ms
    }

    /// Released blobs go at once: unlike a fresh write, nobody is about to reference them.
    fn collectable(&self, marker: &Unreferenced) -> bool {
        marker.cause == Cause::Released || self.expired(marker.since_ms)
    }
}

impl BlobStore {
    /// Deletes released blobs, and blobs and unfinished writes unreferenced for longer than
    /// `grace` as of `now`.
    ///
    /// `grace` must exceed the longest time a writer may take between two of its
    /// transactions and between its last transaction and the one that references the blob,
    /// plus the clock skew between pods: a younger write is someone's work in progress.
    /// Safe to run on several pods at once.
    pub async fn collect_garbage(
        &self,
        grace: Duration,
        now: SystemTime,
    ) -> Result<GcReport, BlobError> {
        let policy = Policy {
            now_ms: unix_millis(now),
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        };
        let mut report = GcReport::default();
        self.collect_writes(policy, &mut report).await?;
        self.collect_blobs(policy, &mut report).await?;
        tracing::debug!(?report, "blob collection done");
        Ok(report)
    }

    async fn collect_writes(&self, policy: Policy, report: &mut GcReport) -> Result<(), BlobError> {
        let mut markers = std::pin::pin!(self.store.scan(self.keys.all_writing(), SCAN_PAGE));
        let mut batch = Vec::new();
        while let Some(pair) = markers.try_next().await? {
            let parsed = self
                .keys
                .parse_writing(&pair.key)
                .and_then(|(id, generation)| Ok((id, generation, Writing::decode(&pair.value)?)));
            match parsed {
                Ok((id, generation, marker)) if policy.expired(marker.since_ms) => {
                    batch.push((id, generation));
                }
                Ok(_) => report.pending_kept += 1,
                Err(error) => {
                    tracing::warn!(key = ?pair.key, %error, "skipping an unreadable blob marker");
                }
            }
            if batch.len() >= DELETE_BATCH {
                self.remove_writes(std::mem::take(&mut batch), policy, report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.remove_writes(batch, policy, report).await?;
        }
        Ok(())
    }

    /// Deletes the chunks of the unfinished writes `batch`, in one transaction.
    async fn remove_writes(
        &self,
        batch: Vec<(BlobId, u64)>,
        policy: Policy,
        report: &mut GcReport,
    ) -> Result<(), BlobError> {
        let (batch, keys) = (Arc::new(batch), self.keys.clone());
        let (removed, kept) = self
            .store
            .transact(move |tx| {
                let (batch, keys) = (batch.clone(), keys.clone());
                Box::pin(async move {
                    let (mut removed, mut kept) = (0u64, 0u64);
                    for (id, generation) in batch.iter() {
                        let marker = keys.writing(id, *generation);
                        let Some(value) = tx.get(&marker).await? else {
                            continue; // The write finished, or someone else collected it.
                        };
                        if Writing::decode(&value).is_ok_and(|m| !policy.expired(m.since_ms)) {
                            kept += 1; // The writer made progress since the scan.
                            continue;
                        }
                        let current = tx
                            .get(&keys.meta(id))
                            .await?
                            .and_then(|value| Meta::decode(id, &value).ok());
                        // A marker left next to the metadata naming its generation would be a
                        // bug; the chunks are then the blob's and must stay.
                        if current.is_none_or(|meta| meta.generation != *generation) {
                            tx.clear_range(&keys.chunks(id, *generation))?;
                            removed += 1;
                        }
                        tx.clear(&marker)?;
                    }
                    Ok::<_, StoreError>((removed, kept))
                })
            })
            .await?;
        report.writes_removed += removed;
        report.pending_kept += kept;
        Ok(())
    }

    async fn collect_blobs(&self, policy: Policy, report: &mut GcReport) -> Result<(), BlobError> {
        let mut markers = std::pin::pin!(self.store.scan(self.keys.all_unreferenced(), SCAN_PAGE));
        let mut batch = Vec::new();
        while let Some(pair) = markers.try_next().await? {
            let parsed = self
                .keys
                .parse_unreferenced(&pair.key)
                .and_then(|id| Ok((id, Unreferenced::decode(&pair.value)?)));
            match parsed {
                Ok((id, marker)) if policy.collectable(&marker) => batch.push(id),
                Ok(_) => report.pending_kept += 1,
                Err(error) => {
                    tracing::warn!(key = ?pair.key, %error, "skipping an unreadable blob marker");
                }
            }
            if batch.len() >= DELETE_BATCH {
                self.remove_blobs(std::mem::take(&mut batch), policy, report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.remove_blobs(batch, policy, report).await?;
        }
        Ok(())
    }

    /// Deletes the unreferenced blobs `batch`, in one transaction.
    async fn remove_blobs(
        &self,
        batch: Vec<BlobId>,
        policy: Policy,
        report: &mut GcReport,
    ) -> Result<(), BlobError> {
        let (batch, keys) = (Arc::new(batch), self.keys.clone());
        let (removed, kept) = self
            .store
            .transact(move |tx| {
                let (batch, keys) = (batch.clone(), keys.clone());
                Box::pin(async move {
                    let (mut removed, mut kept) = (0u64, 0u64);
                    for id in batch.iter() {
                        let marker = keys.unreferenced(id);
                        let Some(value) = tx.get(&marker).await? else {
                            continue; // Referenced since the scan, or collected by someone else.
                        };
                        match Unreferenced::decode(&value) {
                            Ok(found) if policy.collectable(&found) => {}
                            Ok(_) => {
                                kept += 1;
                                continue;
                            }
                            Err(_) => continue,
                        }
                        let references = tx
                            .get_range(
                                &keys.references(id),
                                RangeOptions {
                                    limit: 1,
                                    reverse: false,
                                },
                            )
                            .await?;
                        if !references.pairs.is_empty() {
                            // A marker next to a reference would be a bug: the reference wins.
                            tx.clear(&marker)?;
                            continue;
                        }
                        super::delete(tx, &keys, id).await?;
                        removed += 1;
                    }
                    Ok::<_, StoreError>((removed, kept))
                })
            })
            .await?;
        report.blobs_removed += removed;
        report.pending_kept += kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{Store, StoreOptions};

    /// Stores written before releases deleted their blobs hold *released* markers:
    /// collection still deletes those blobs at once, whatever the grace period.
    #[tokio::test]
    async fn blobs_an_older_version_marked_released_are_collected_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
        let blobs = BlobStore::new(store.clone());
        let id = blobs.write_all(b"a delivered body").await.unwrap();
        let keys = blobs.keys.clone();
        store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move {
                    let marker = Unreferenced {
                        since_ms: unix_millis(SystemTime::now()),
                        cause: Cause::Released,
                    };
                    tx.set(&keys.unreferenced(&id), &marker.encode())
                })
            })
            .await
            .unwrap();

        let report = blobs
            .collect_garbage(Duration::from_secs(3600), SystemTime::now())
            .await
            .unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert!(matches!(blobs.read(&id).await, Err(BlobError::NotFound(_))));
        let left: Vec<_> = store
            .scan(blobs.key_range(), 100)
            .try_collect()
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}
