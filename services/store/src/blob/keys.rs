//! Where blobs live in the key space (the layout is described in the parent module), and how
//! their records are encoded: tuples, like the keys, so each record decodes or fails whole.

use crate::tuple::{self, PackResult};
use crate::{KeyRange, Subspace};

use super::{BlobError, BlobId};

/// Version of the metadata record's layout.
const META_FORMAT: u64 = 1;

/// The subspaces of the blob key space.
#[derive(Debug)]
pub(super) struct Keys {
    all: Subspace,
    meta: Subspace,
    chunks: Subspace,
    writing: Subspace,
    unreferenced: Subspace,
    references: Subspace,
}

impl Keys {
    pub(super) fn new(root: &Subspace) -> Self {
        let all = root.subspace(&("blob",));
        Self {
            meta: all.subspace(&("meta",)),
            chunks: all.subspace(&("chunk",)),
            writing: all.subspace(&("writing",)),
            unreferenced: all.subspace(&("unreferenced",)),
            references: all.subspace(&("ref",)),
            all,
        }
    }

    pub(super) fn everything(&self) -> KeyRange {
        range(&self.all)
    }

    pub(super) fn meta(&self, id: &BlobId) -> Vec<u8> {
        self.meta.pack(&(id_bytes(id),))
    }

    pub(super) fn chunk(&self, id: &BlobId, generation: u64, index: u64) -> Vec<u8> {
        self.chunks.pack(&(id_bytes(id), generation, index))
    }

    /// Chunks of one generation of a blob.
    pub(super) fn chunks(&self, id: &BlobId, generation: u64) -> KeyRange {
        range(&self.chunks.subspace(&(id_bytes(id), generation)))
    }

    /// Chunks of every generation of a blob.
    pub(super) fn all_chunks(&self, id: &BlobId) -> KeyRange {
        range(&self.chunks.subspace(&(id_bytes(id),)))
    }

    pub(super) fn writing(&self, id: &BlobId, generation: u64) -> Vec<u8> {
        self.writing.pack(&(id_bytes(id), generation))
    }

    pub(super) fn all_writing(&self) -> KeyRange {
        range(&self.writing)
    }

    /// The blob and generation a writing marker's key names.
    pub(super) fn parse_writing(&self, key: &[u8]) -> PackResult<(BlobId, u64)> {
        let (id, generation) = self.writing.unpack::<(Vec<u8>, u64)>(key)?;
        Ok((parse_id(id)?, generation))
    }

    pub(super) fn unreferenced(&self, id: &BlobId) -> Vec<u8> {
        self.unreferenced.pack(&(id_bytes(id),))
    }

    pub(super) fn all_unreferenced(&self) -> KeyRange {
        range(&self.unreferenced)
    }

    /// The blob an unreferenced marker's key names.
    pub(super) fn parse_unreferenced(&self, key: &[u8]) -> PackResult<BlobId> {
        let (id,) = self.unreferenced.unpack::<(Vec<u8>,)>(key)?;
        parse_id(id)
    }

    pub(super) fn reference(&self, id: &BlobId, owner: &[u8]) -> Vec<u8> {
        self.references.pack(&(id_bytes(id), owner))
    }

    /// Every reference to a blob.
    pub(super) fn references(&self, id: &BlobId) -> KeyRange {
        range(&self.references.subspace(&(id_bytes(id),)))
    }
}

fn id_bytes(id: &BlobId) -> &[u8] {
    id.as_bytes()
}

fn parse_id(bytes: Vec<u8>) -> PackResult<BlobId> {
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| tuple::PackError::Message("a blob id is 16 bytes".into()))?;
    Ok(BlobId::from_bytes(bytes))
}

fn range(space: &Subspace) -> KeyRange {
    let (begin, end) = space.range();
    KeyRange::new(begin, end)
}

/// What a complete blob is: recorded by the last transaction of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// Which write the chunks belong to: random, so concurrent writes never share chunk keys.
    pub(super) generation: u64,
    /// Number of chunks.
    pub(super) chunks: u64,
    /// Total size in bytes.
    pub(super) size: u64,
    /// Size of every chunk but the last, stored so that it may change without a migration.
    pub(super) chunk_size: u64,
}

impl Meta {
    /// The metadata of `size` bytes cut into `chunk_size` chunks.
    pub(super) fn new(generation: u64, size: u64, chunk_size: u64) -> Self {
        Self {
            generation,
            chunks: size.div_ceil(chunk_size.max(1)),
            size,
            chunk_size,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        tuple::pack(&(
            META_FORMAT,
            self.generation,
            self.chunks,
            self.size,
            self.chunk_size,
        ))
    }

    pub(super) fn decode(id: &BlobId, value: &[u8]) -> Result<Self, BlobError> {
        let corrupt = |reason: String| BlobError::Corrupt { id: *id, reason };
        let (format, generation, chunks, size, chunk_size) =
            tuple::unpack::<(u64, u64, u64, u64, u64)>(value)
                .map_err(|e| corrupt(format!("metadata does not decode: {e}")))?;
        if format != META_FORMAT {
            return Err(corrupt(format!("unknown metadata format {format}")));
        }
        let meta = Self {
            generation,
            chunks,
            size,
            chunk_size,
        };
        if chunk_size == 0 || meta != Self::new(generation, size, chunk_size) {
            return Err(corrupt(format!("inconsistent metadata {meta:?}")));
        }
        Ok(meta)
    }

    /// The length chunk `index` must have.
    pub(super) fn chunk_len(&self, index: u64) -> u64 {
        self.size
            .saturating_sub(index.saturating_mul(self.chunk_size))
            .min(self.chunk_size)
    }
}

/// A write in progress: the chunks of its generation are not part of any blob yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Writing {
    /// When the write last made progress (Unix milliseconds).
    pub(super) since_ms: u64,
}

impl Writing {
    pub(super) fn encode(&self) -> Vec<u8> {
        tuple::pack(&(self.since_ms,))
    }

    pub(super) fn decode(value: &[u8]) -> PackResult<Self> {
        let (since_ms,) = tuple::unpack::<(u64,)>(value)?;
        Ok(Self { since_ms })
    }
}

/// Why a complete blob has no reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// Written and not referenced yet: kept for the grace period, since the writer is about
    /// to commit the record that names it.
    Written,
    /// Its last reference was released: nobody is going to reference it any more. Only
    /// stores written by an older version hold these (releases now delete the blob).
    Released,
}

/// A complete blob that no reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unreferenced {
    /// Since when (Unix milliseconds).
    pub(super) since_ms: u64,
    /// Why.
    pub(super) cause: Cause,
}

impl Unreferenced {
    pub(super) fn encode(&self) -> Vec<u8> {
        let cause: u64 = match self.cause {
            Cause::Written => 0,
            Cause::Released => 1,
        };
        tuple::pack(&(self.since_ms, cause))
    }

    pub(super) fn decode(value: &[u8]) -> PackResult<Self> {
        let (since_ms, cause) = tuple::unpack::<(u64, u64)>(value)?;
        let cause = match cause {
            0 => Cause::Written,
            1 => Cause::Released,
            other => {
                return Err(tuple::PackError::Message(
                    format!("unknown cause {other}").into(),
                ));
            }
        };
        Ok(Self { since_ms, cause })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let id = BlobId::from_bytes([1; 16]);
        let meta = Meta::new(42, 65_536 * 2 + 1, 65_536);
        assert_eq!(meta.chunks, 3);
        assert_eq!(
            [0, 1, 2, 3].map(|i| meta.chunk_len(i)),
            [65_536, 65_536, 1, 0]
        );
        assert_eq!(Meta::decode(&id, &meta.encode()).ok(), Some(meta));
        let lying = tuple::pack(&(META_FORMAT, 42u64, 2u64, 65_536u64 * 2 + 1, 65_536u64));
        assert!(Meta::decode(&id, &lying).is_err());
        assert!(Meta::decode(&id, b"garbage").is_err());
        let empty = Meta::new(1, 0, 65_536);
        assert_eq!(empty.chunks, 0);
        assert_eq!(Meta::decode(&id, &empty.encode()).ok(), Some(empty));

        let marker = Unreferenced {
            since_ms: 1_700_000_000_000,
            cause: Cause::Released,
        };
        assert_eq!(Unreferenced::decode(&marker.encode()).ok(), Some(marker));
        let writing = Writing { since_ms: 5 };
        assert_eq!(Writing::decode(&writing.encode()).ok(), Some(writing));
    }

    #[test]
    fn marker_keys_name_their_blob() {
        let keys = Keys::new(&Subspace::from(&"test"));
        let id = BlobId::from_bytes([0, 0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(
            keys.parse_writing(&keys.writing(&id, u64::MAX)).ok(),
            Some((id, u64::MAX))
        );
        assert_eq!(
            keys.parse_unreferenced(&keys.unreferenced(&id)).ok(),
            Some(id)
        );
        assert!(keys.all_chunks(&id).contains(&keys.chunk(&id, 9, 0)));
        assert!(keys.chunks(&id, 9).contains(&keys.chunk(&id, 9, 1 << 40)));
        assert!(!keys.chunks(&id, 9).contains(&keys.chunk(&id, 10, 0)));
        assert!(keys.everything().contains(&keys.reference(&id, b"owner")));
    }
}
