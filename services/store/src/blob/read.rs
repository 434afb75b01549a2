//! Reading a blob, a bounded number of chunks per transaction, checked against its metadata.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::{KeyRange, RangeOptions, StoreError, Transaction};

use super::keys::{Keys, Meta};
use super::{BlobError, BlobId, BlobStore, CHUNKS_PER_READ};

/// Where a read stands between two transactions.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Nothing read yet.
    Start,
    /// The version being read, and the next chunk to read.
    At { meta: Meta, next: u64 },
}

impl BlobStore {
    /// The whole content of blob `id`.
    ///
    /// Fails with [`BlobError::NotFound`] unless the blob is complete and referenced, with
    /// [`BlobError::ChangedDuringRead`] if it was overwritten or deleted between two of the
    /// read's transactions, and with [`BlobError::Corrupt`] if a chunk is missing: never
    /// partial or mixed data.
    pub async fn read(&self, id: &BlobId) -> Result<Vec<u8>, BlobError> {
        let mut chunks = std::pin::pin!(self.read_stream(id));
        let mut content = Vec::new();
        while let Some(chunk) = chunks.try_next().await? {
            content.extend_from_slice(&chunk);
        }
        Ok(content)
    }

    /// The content of blob `id`, chunk by chunk, read 1 MiB per transaction so that each
    /// transaction stays short whatever the blob's size.
    ///
    /// Every transaction checks the metadata: if the blob was overwritten or deleted since the
    /// first one, the stream ends with [`BlobError::ChangedDuringRead`] instead of going on
    /// with chunks of another version. Errors are as for [`BlobStore::read`].
    pub fn read_stream(
        &self,
        id: &BlobId,
    ) -> impl Stream<Item = Result<Bytes, BlobError>> + Send + '_ {
        let id = *id;
        futures::stream::try_unfold(Cursor::Start, move |cursor| async move {
            let (expected, next) = match cursor {
                Cursor::Start => (None, 0),
                Cursor::At { meta, next } if next >= meta.chunks => return Ok(None),
                Cursor::At { meta, next } => (Some(meta), next),
            };
            let keys = self.keys.clone();
            let (meta, chunks) = self
                .store
                .transact(move |tx| {
                    let keys = keys.clone();
                    Box::pin(async move {
                        read_chunks(tx, &keys, id, expected, next)
                            .await
                            .map_err(StoreError::from)
                    })
                })
                .await?;
            let next = next + chunks.len() as u64;
            let chunks = futures::stream::iter(chunks.into_iter().map(Ok));
            Ok::<_, BlobError>(Some((chunks, Cursor::At { meta, next })))
        })
        .try_flatten()
        .boxed()
    }
}

/// In one transaction: the blob's metadata, checked against `expected` (the version read so
/// far, `None` at the start), and up to [`CHUNKS_PER_READ`] chunks from chunk `from`.
async fn read_chunks(
    tx: &Transaction,
    keys: &Arc<Keys>,
    id: BlobId,
    expected: Option<Meta>,
    from: u64,
) -> Result<(Meta, Vec<Bytes>), BlobError> {
    let meta = match (tx.get(&keys.meta(&id)).await?, expected) {
        (None, None) => return Err(BlobError::NotFound(id)),
        (None, Some(_)) => return Err(BlobError::ChangedDuringRead(id)),
        (Some(value), _) => Meta::decode(&id, &value)?,
    };
    match expected {
        // Generations are random per write: the same metadata means the same version.
        Some(expected) if expected != meta => return Err(BlobError::ChangedDuringRead(id)),
        Some(_) => {}
        None => {
            // Unreferenced blobs are invisible: pending ones are not committed yet, released
            // ones are about to be collected.
            let references = tx
                .get_range(
                    &keys.references(&id),
                    RangeOptions {
                        limit: 1,
                        reverse: false,
                    },
                )
                .await?;
            if references.pairs.is_empty() {
                return Err(BlobError::NotFound(id));
            }
        }
    }
    let to = from.saturating_add(CHUNKS_PER_READ).min(meta.chunks);
    if to <= from {
        return Ok((meta, Vec::new()));
    }
    let range = KeyRange::new(
        keys.chunk(&id, meta.generation, from),
        keys.chunk(&id, meta.generation, to),
    );
    // Read to the end of the range, whatever the backend's page size.
    let page = usize::try_from(CHUNKS_PER_READ).unwrap_or(usize::MAX);
    let mut pairs = tx.get_all(&range, page).await?.into_iter();
    let mut chunks = Vec::new();
    for index in from..to {
        let corrupt = |reason: String| BlobError::Corrupt { id, reason };
        // The metadata and the chunks come from one snapshot: a chunk the metadata counts must
        // be there, so a gap is corruption, never a version change.
        let Some(pair) = pairs
            .next()
            .filter(|pair| pair.key == keys.chunk(&id, meta.generation, index))
        else {
            return Err(corrupt(format!(
                "chunk {index} of {} is missing",
                meta.chunks
            )));
        };
        let len = pair.value.len() as u64;
        if len != meta.chunk_len(index) {
            return Err(corrupt(format!(
                "chunk {index} has {len} bytes instead of {}",
                meta.chunk_len(index)
            )));
        }
        chunks.push(Bytes::from(pair.value));
    }
    Ok((meta, chunks))
}
