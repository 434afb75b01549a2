//! Small blobs: written and referenced in their owner's own transaction.
//!
//! A body that fits in one transaction needs none of the streamed write's machinery (writing
//! marker, pending state, a transaction of its own): its chunks, metadata and reference are set
//! together with the record that names it, so one commit instead of two makes it durable — the
//! queue's enqueue of a typical message is a single transaction.

use bytes::Bytes;

use crate::Transaction;

use super::keys::Meta;
use super::write::Chunker;
use super::{BlobError, BlobId, BlobStore, CHUNK_SIZE};

/// Largest [`SmallBlob`]: four chunks, a quarter of a streamed write's transaction, so the
/// owner's transaction stays well under FoundationDB's advised 1 MB with its own keys.
pub const MAX_SMALL_BLOB: usize = 4 * CHUNK_SIZE;

/// A blob's whole content, cut into chunks under a fresh id, ready to be written in a
/// transaction. Prepared outside the transaction, so that every run of a retried transaction
/// writes the same keys.
#[derive(Debug, Clone)]
pub struct SmallBlob {
    id: BlobId,
    generation: u64,
    chunks: Vec<Bytes>,
    size: u64,
}

impl SmallBlob {
    /// The blob of `pieces` (in order), or `None` if they exceed [`MAX_SMALL_BLOB`].
    pub fn new(pieces: impl IntoIterator<Item = Bytes>) -> Option<Self> {
        let mut chunker = Chunker::default();
        let mut size = 0u64;
        for piece in pieces {
            size += piece.len() as u64;
            if size > MAX_SMALL_BLOB as u64 {
                return None;
            }
            chunker.push(piece);
        }
        Some(Self {
            id: BlobId::fresh(),
            generation: rand::random(),
            chunks: chunker.finish(),
            size,
        })
    }

    /// The id the blob gets.
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its content, chunk after chunk.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }
}

impl BlobStore {
    /// Writes `blob` and records that `owner` references it, in the caller's transaction `tx`:
    /// the blob exists, readable, exactly when `tx` commits, and never unreferenced. Writing the
    /// same blob again in a retry of `tx` sets the same keys.
    pub fn write_referenced(
        &self,
        tx: &Transaction,
        blob: &SmallBlob,
        owner: &[u8],
    ) -> Result<(), BlobError> {
        let id = &blob.id;
        for (index, chunk) in (0u64..).zip(&blob.chunks) {
            tx.set(&self.keys.chunk(id, blob.generation, index), chunk)?;
        }
        let meta = Meta::new(blob.generation, blob.size, CHUNK_SIZE as u64);
        tx.set(&self.keys.meta(id), &meta.encode())?;
        tx.set(&self.keys.reference(id, owner), &[])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[test]
    fn small_blobs_are_cut_into_chunks_and_bounded() {
        let piece = Bytes::from(vec![7u8; CHUNK_SIZE + 10]);
        let blob = SmallBlob::new([piece.clone(), Bytes::from_static(b"tail")]);
        let blob = blob.expect("under the bound");
        assert_eq!(blob.size(), (CHUNK_SIZE + 14) as u64);
        assert_eq!(blob.chunks.len(), 2);
        assert_eq!(blob.chunks[0].len(), CHUNK_SIZE);
        let exact = SmallBlob::new([Bytes::from(vec![1u8; MAX_SMALL_BLOB])]);
        assert!(exact.is_some(), "the bound itself is small");
        let over = SmallBlob::new([
            Bytes::from(vec![1u8; MAX_SMALL_BLOB]),
            Bytes::from_static(b"x"),
        ]);
        assert!(over.is_none());
        assert!(SmallBlob::new([]).is_some_and(|b| b.size() == 0 && b.chunks.is_empty()));
    }
}
