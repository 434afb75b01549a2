//! Blobs: values of any size (message bodies of 30 MB and more) stored as chunks.
//!
//! Built only on the public [`Store`] and [`Transaction`] API, so blobs behave the same on
//! every backend. A blob is written in as many transactions as FoundationDB's limits need and
//! becomes readable only when the transaction that records a reference to it commits.
//!
//! # Life of a blob
//!
//! 1. [`BlobStore::write`] streams the body into chunks of [`CHUNK_SIZE`] bytes,
//!    [`CHUNKS_PER_TRANSACTION`] chunks per transaction. The first transaction records a
//!    *writing* marker for the new generation (with the time, refreshed by each transaction),
//!    so chunks never exist without a record that lets collection find them.
//! 2. The last transaction records the metadata (generation, chunk count, size) and swaps the
//!    writing marker for an *unreferenced* marker: the blob is complete but still *pending*.
//! 3. [`BlobStore::reference`], called inside the caller's own transaction (the queue's
//!    enqueue, say), records a reference and clears the unreferenced marker: the blob becomes
//!    readable exactly when that transaction commits.
//! 4. [`BlobStore::release`] removes a reference; removing the last one deletes the blob in
//!    the same transaction (its chunks are one range clear, whatever the size).
//! 5. [`BlobStore::collect_garbage`] deletes pending blobs and abandoned writes older than a
//!    grace period, and blobs an older version left marked *released*.
//!
//! A blob of at most [`MAX_SMALL_BLOB`] bytes can skip steps 1–3: [`BlobStore::write_referenced`]
//! writes it and its reference in the owner's own transaction.
//!
//! # Key layout
//!
//! Under `root / ("blob",)`, tuple-encoded (`id` is the 16-byte blob id, `generation` a random
//! `u64` per write, `index` the chunk's position from 0):
//!
//! | key                                        | value                                    |
//! |--------------------------------------------|------------------------------------------|
//! | `("meta", id)`                             | `(1, generation, chunks, size, chunk_size)` |
//! | `("chunk", id, generation, index)`         | the chunk's bytes                        |
//! | `("writing", id, generation)`              | `(unix_ms,)`: a write in progress        |
//! | `("unreferenced", id)`                     | `(unix_ms, cause)`: no reference names it |
//! | `("ref", id, owner)`                       | empty: `owner` references the blob       |
//!
//! Markers live in their own subspaces so that collection scans only them, never the chunks.

mod collect;
mod error;
mod id;
mod keys;
mod read;
mod small;
mod write;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::limits::{MAX_TRANSACTION, MAX_VALUE};
use crate::{KeyRange, RangeOptions, Store, Transaction};

pub use collect::GcReport;
pub use error::BlobError;
pub use id::{BlobId, ParseBlobIdError};
pub use small::{MAX_SMALL_BLOB, SmallBlob};

use keys::Keys;

/// Largest chunk: 63 KiB.
///
/// FoundationDB accepts values up to 100,000 bytes but advises smaller ones (a large value is
/// read, replicated and cached whole); tiny chunks would multiply keys and per-key overhead.
/// Not a power of two: the embedded store's redb keeps a value larger than a page alone in a
/// page of the next power-of-two size, its key and the page header included, so a chunk of
/// exactly 64 KiB took a 128 KiB page. 63 KiB fills a 64 KiB page, with 1 KiB for the key.
/// Blobs record their chunk size, so those written with another one read as before.
pub const CHUNK_SIZE: usize = 63 * 1024;

/// Chunks written per transaction: 1 MiB of values.
///
/// FoundationDB advises transactions under about 1 MB (larger ones hurt the whole cluster's
/// latency) and caps them at 10 MB; 1 MiB also commits in milliseconds, far from the 5 s limit,
/// and bounds what a write holds in memory.
pub const CHUNKS_PER_TRANSACTION: usize = 16;

/// Chunks read per transaction: 1 MiB, for the same reasons as writes.
const CHUNKS_PER_READ: u64 = 16;

const _: () = assert!(CHUNK_SIZE <= MAX_VALUE);
const _: () = assert!(CHUNK_SIZE * CHUNKS_PER_TRANSACTION <= MAX_TRANSACTION / 8);

/// Blobs of one store: write, reference, read, release, collect. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Store,
    keys: Arc<Keys>,
}

impl BlobStore {
    /// Blobs kept under `store.root() / ("blob",)`.
    pub fn new(store: Store) -> Self {
        let keys = Arc::new(Keys::new(store.root()));
        Self { store, keys }
    }

    /// Records, in the caller's transaction `tx`, that `owner` references blob `id`: the blob
    /// becomes readable, and safe from collection, when `tx` commits.
    ///
    /// Fails with [`BlobError::NotFound`] if the blob is not complete (still being written)
    /// or was collected. Inside a [`Store::transact`] closure, `?` turns the error into a
    /// [`crate::StoreError`] that aborts the transaction, and back with `BlobError::from`.
    pub async fn reference(
        &self,
        tx: &Transaction,
        id: &BlobId,
        owner: &[u8],
    ) -> Result<(), BlobError> {
        // Reading the metadata also puts it in the read set: a collection that deletes the blob
        // concurrently conflicts with `tx`, so a reference never names a deleted blob.
        if tx.get(&self.keys.meta(id)).await?.is_none() {
            return Err(BlobError::NotFound(*id));
        }
        tx.set(&self.keys.reference(id, owner), &[])?;
        tx.clear(&self.keys.unreferenced(id))?;
        Ok(())
    }

    /// Removes, in the caller's transaction `tx`, the reference of `owner` to blob `id`.
    ///
    /// When it was the last reference, the blob is deleted with it: gone once `tx` commits.
    /// (Left for a later collection, the bodies of delivered mail piled up in the store
    /// between two collections.) Releasing a reference that does not exist does nothing. To
    /// hand a blob from one owner to another, reference the new owner first, then release
    /// the old one, in the same transaction.
    pub async fn release(
        &self,
        tx: &Transaction,
        id: &BlobId,
        owner: &[u8],
    ) -> Result<(), BlobError> {
        let key = self.keys.reference(id, owner);
        if tx.get(&key).await?.is_none() {
            return Ok(());
        }
        tx.clear(&key)?;
        // Reads see the transaction's own clear; two owners releasing at once conflict on this
        // range read, so exactly one of them sees itself as the last.
        let rest = tx
            .get_range(
                &self.keys.references(id),
                RangeOptions {
                    limit: 1,
                    reverse: false,
                },
            )
            .await?;
        if rest.pairs.is_empty() {
            delete(tx, &self.keys, id).await?;
        }
        Ok(())
    }

    /// Every key holding a chunk of blob `id`, of every generation (for tools and tests).
    pub fn chunk_range(&self, id: &BlobId) -> KeyRange {
        self.keys.all_chunks(id)
    }

    /// Every key of every blob, markers and references included (for tools and tests).
    pub fn key_range(&self) -> KeyRange {
        self.keys.everything()
    }
}

/// Deletes blob `id` in `tx`: its chunks (one range clear), metadata and unreferenced marker.
async fn delete(tx: &Transaction, keys: &Keys, id: &BlobId) -> Result<(), BlobError> {
    if let Some(value) = tx.get(&keys.meta(id)).await? {
        match keys::Meta::decode(id, &value) {
            Ok(meta) => tx.clear_range(&keys.chunks(id, meta.generation))?,
            // Unknown generation: every chunk of the blob goes.
            Err(_) => tx.clear_range(&keys.all_chunks(id))?,
        }
    }
    tx.clear(&keys.meta(id))?;
    tx.clear(&keys.unreferenced(id))?;
    Ok(())
}

/// Milliseconds since the Unix epoch (0 for an earlier time): how marker times are stored.
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
