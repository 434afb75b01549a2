//! Writing a blob: the body cut into chunks, written in bounded transactions, the metadata
//! last.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::{StoreError, Transaction};

use super::keys::{Cause, Keys, Meta, Unreferenced, Writing};
use super::{BlobError, BlobId, BlobStore, CHUNK_SIZE, CHUNKS_PER_TRANSACTION, unix_millis};

/// What a write produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A new blob, unreferenced until someone references it.
    New,
    /// The next version of an existing blob, keeping its references.
    Replace,
}

impl BlobStore {
    /// Writes `body` as a new blob and returns its id. The blob is pending (unreadable, and
    /// collected after the grace period) until [`BlobStore::reference`] names it.
    ///
    /// Streams: at most one transaction's worth of chunks (1 MiB) is held at a time, and no
    /// transaction is open while waiting for the body. If the body fails, what was written is
    /// deleted; if the writer dies, collection deletes it after the grace period.
    pub async fn write<S, E>(&self, body: S) -> Result<BlobId, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let id = BlobId::fresh();
        self.write_version(id, Target::New, body).await?;
        Ok(id)
    }

    /// Writes `data` as a new blob (see [`BlobStore::write`]).
    pub async fn write_all(&self, data: &[u8]) -> Result<BlobId, BlobError> {
        self.write(pieces(data)).await
    }

    /// Replaces the content of blob `id` with `body`, keeping its references.
    ///
    /// The new version is written under a new generation and replaces the old one in the last
    /// transaction, which also deletes every chunk of the old version: readers see the old
    /// version or the new one, never a mix, and nothing of a longer old version remains.
    /// Fails with [`BlobError::NotFound`] if the blob does not exist when the write begins or
    /// ends.
    pub async fn overwrite<S, E>(&self, id: &BlobId, body: S) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.write_version(*id, Target::Replace, body).await
    }

    /// Replaces the content of blob `id` with `data` (see [`BlobStore::overwrite`]).
    pub async fn overwrite_all(&self, id: &BlobId, data: &[u8]) -> Result<(), BlobError> {
        self.overwrite(id, pieces(data)).await
    }

    /// Writes one generation of blob `id`; on failure, deletes what it wrote.
    async fn write_version<S, E>(
        &self,
        id: BlobId,
        target: Target,
        body: S,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut writer = Writer {
            blobs: self,
            id,
            target,
            generation: rand::random(),
            chunks_written: 0,
            size: 0,
            attempted: false,
        };
        let outcome = writer.run(body).await;
        if let Err(error) = &outcome
            && writer.attempted
            && let Err(cleanup) = self.abandon(id, writer.generation).await
        {
            // Collection deletes the chunks after the grace period instead.
            tracing::warn!(blob = %id, %error, %cleanup, "could not delete a failed write");
        }
        outcome
    }

    /// Deletes the chunks of an unfinished write of generation `generation`.
    async fn abandon(&self, id: BlobId, generation: u64) -> Result<(), BlobError> {
        let keys = self.keys.clone();
        self.store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move {
                    // The final transaction may have committed even though its caller saw an
                    // error (an unknown commit result): then these chunks are the blob's.
                    if let Some(meta) = tx.get(&keys.meta(&id)).await?
                        && Meta::decode(&id, &meta).is_ok_and(|m| m.generation == generation)
                    {
                        return Ok(());
                    }
                    tx.clear_range(&keys.chunks(&id, generation))?;
                    tx.clear(&keys.writing(&id, generation))
                })
            })
            .await?;
        Ok(())
    }
}

/// `data` as a body stream, one chunk-sized copy at a time so only a transaction's worth of
/// copies exists at once.
fn pieces(data: &[u8]) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + '_ {
    futures::stream::iter(
        data.chunks(CHUNK_SIZE)
            .map(|piece| Ok(Bytes::copy_from_slice(piece))),
    )
}

/// One write in progress.
struct Writer<'a> {
    blobs: &'a BlobStore,
    id: BlobId,
    target: Target,
    generation: u64,
    /// Chunks committed so far.
    chunks_written: u64,
    /// Bytes of the body seen so far.
    size: u64,
    /// Whether a transaction was started, so something may need deleting on failure.
    attempted: bool,
}

impl Writer<'_> {
    async fn run<S, E>(&mut self, body: S) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut body = std::pin::pin!(body);
        let mut chunker = Chunker::default();
        loop {
            // One chunk more than a transaction takes, so a body that ends right after a full
            // batch is finished in that batch's transaction rather than in an empty one.
            while chunker.full.len() <= CHUNKS_PER_TRANSACTION {
                match body.next().await {
                    Some(Ok(piece)) => {
                        self.size += piece.len() as u64;
                        chunker.push(piece);
                    }
                    Some(Err(error)) => return Err(BlobError::Body(error.into())),
                    None => {
                        let mut rest = chunker.finish();
                        while rest.len() > CHUNKS_PER_TRANSACTION {
                            let batch = rest.drain(..CHUNKS_PER_TRANSACTION).collect();
                            self.commit(batch, false).await?;
                        }
                        return self.commit(rest, true).await;
                    }
                }
            }
            let batch = chunker.full.drain(..CHUNKS_PER_TRANSACTION).collect();
            self.commit(batch, false).await?;
        }
    }

    /// Writes `chunks` (the next ones of the body) in one transaction; the last one also
    /// records the metadata.
    async fn commit(&mut self, chunks: Vec<Bytes>, last: bool) -> Result<(), BlobError> {
        let step = Arc::new(Step {
            keys: self.blobs.keys.clone(),
            id: self.id,
            generation: self.generation,
            target: self.target,
            first: !self.attempted,
            first_index: self.chunks_written,
            chunks,
            now_ms: unix_millis(SystemTime::now()),
            meta: last.then(|| Meta::new(self.generation, self.size, CHUNK_SIZE as u64)),
        });
        self.attempted = true;
        let count = step.chunks.len() as u64;
        self.blobs
            .store
            .transact(move |tx| {
                let step = step.clone();
                Box::pin(async move { step.apply(tx).await.map_err(StoreError::from) })
            })
            .await?;
        self.chunks_written += count;
        Ok(())
    }
}

/// One transaction of a write. Everything it needs is owned, so that it can run again.
struct Step {
    keys: Arc<Keys>,
    id: BlobId,
    generation: u64,
    target: Target,
    /// The write's first transaction: there is no writing marker yet.
    first: bool,
    first_index: u64,
    chunks: Vec<Bytes>,
    now_ms: u64,
    /// The metadata to record, in the last transaction.
    meta: Option<Meta>,
}

impl Step {
    async fn apply(&self, tx: &Transaction) -> Result<(), BlobError> {
        let (keys, id) = (&self.keys, &self.id);
        let writing = keys.writing(id, self.generation);
        if self.first {
            if self.target == Target::Replace && tx.get(&keys.meta(id)).await?.is_none() {
                return Err(BlobError::NotFound(*id));
            }
        } else if tx.get(&writing).await?.is_none() {
            // Reading the marker also makes collection of this write conflict with us.
            if self.meta.is_some() && self.current(tx).await? == Some(self.generation) {
                // An earlier run of this very transaction committed (unknown commit result).
                return Ok(());
            }
            return Err(BlobError::Collected(*id));
        }
        for (index, chunk) in (self.first_index..).zip(&self.chunks) {
            tx.set(&keys.chunk(id, self.generation, index), chunk)?;
        }
        let Some(meta) = self.meta else {
            // Recorded with the first chunks, so no chunk ever exists without a marker that lets
            // collection find it; refreshed so that a long write is not mistaken for a dead one.
            let marker = Writing {
                since_ms: self.now_ms,
            };
            tx.set(&writing, &marker.encode())?;
            return Ok(());
        };
        match (self.target, self.current(tx).await?) {
            (Target::Replace, None) => return Err(BlobError::NotFound(*id)),
            (Target::Replace, Some(old)) if old != self.generation => {
                tx.clear_range(&keys.chunks(id, old))?;
            }
            _ => {}
        }
        tx.set(&keys.meta(id), &meta.encode())?;
        tx.clear(&writing)?;
        if self.target == Target::New {
            let marker = Unreferenced {
                since_ms: self.now_ms,
                cause: Cause::Written,
            };
            tx.set(&keys.unreferenced(id), &marker.encode())?;
        }
        Ok(())
    }

    /// The generation the blob's metadata names now, if the blob exists.
    async fn current(&self, tx: &Transaction) -> Result<Option<u64>, BlobError> {
        match tx.get(&self.keys.meta(&self.id)).await? {
            Some(value) => Ok(Some(Meta::decode(&self.id, &value)?.generation)),
            None => Ok(None),
        }
    }
}

/// Cuts a stream of pieces of any size into chunks of exactly [`CHUNK_SIZE`] bytes (the last
/// one shorter), copying only the pieces smaller than a chunk.
#[derive(Default)]
pub(super) struct Chunker {
    /// Complete chunks.
    full: Vec<Bytes>,
    /// The chunk being filled.
    partial: BytesMut,
}

impl Chunker {
    pub(super) fn push(&mut self, mut piece: Bytes) {
        while !piece.is_empty() {
            if self.partial.is_empty() && piece.len() >= CHUNK_SIZE {
                self.full.push(piece.split_to(CHUNK_SIZE));
                continue;
            }
            let take = (CHUNK_SIZE - self.partial.len()).min(piece.len());
            self.partial.extend_from_slice(&piece.split_to(take));
            if self.partial.len() == CHUNK_SIZE {
                self.full.push(self.partial.split().freeze());
            }
        }
    }

    /// Every chunk, the partial one last.
    pub(super) fn finish(mut self) -> Vec<Bytes> {
        if !self.partial.is_empty() {
            self.full.push(self.partial.freeze());
        }
        self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_size_make_exact_chunks() {
        let data: Vec<u8> = (0..CHUNK_SIZE * 3 + 5).map(|i| (i % 251) as u8).collect();
        for sizes in [
            vec![1usize],
            vec![CHUNK_SIZE],
            vec![CHUNK_SIZE - 1, 2],
            vec![CHUNK_SIZE * 2 + 7],
            vec![0, 3, 70_000, 9],
        ] {
            let mut chunker = Chunker::default();
            let mut at = 0;
            let mut turn = 0;
            while at < data.len() {
                let n = sizes[turn % sizes.len()].min(data.len() - at);
                chunker.push(Bytes::copy_from_slice(&data[at..at + n]));
                at += n;
                turn += 1;
            }
            let chunks = chunker.finish();
            let lengths: Vec<usize> = chunks.iter().map(Bytes::len).collect();
            assert_eq!(
                lengths,
                [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 5],
                "{sizes:?}"
            );
            assert_eq!(chunks.concat(), data, "{sizes:?}");
        }
    }
}
