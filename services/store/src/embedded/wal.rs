//! The write-ahead log: each group commit is one checksummed record appended to a file and
//! made durable with one `fdatasync` (a group of relaxed commits only waits for the next
//! one), so redb itself can commit without syncing and write its pages only at checkpoints.
//!
//! Why a log of our own: redb's durable commit writes every changed B-tree page in place
//! and syncs them, scattered writes that cost several times one sequential append. Pages
//! rewritten by many commits between two checkpoints (queue indexes, short-lived bodies) are
//! then written once, or never.
//!
//! File layout: an 8-byte magic, then records. A record is
//! `crc32 (u32) | payload length (u32) | sequence (u64) | payload`, little-endian, the CRC
//! covering everything after itself. Sequences are consecutive and never reused; the redb
//! file stores the last one it holds, so replay knows where to start. After a checkpoint
//! the log is written again from its start: a stale record left further on has a smaller
//! sequence and ends the replay, as does a torn (half-written) record.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::mutation::Mutation;
use crate::range::KeyRange;

/// The file's first bytes: its format, so a foreign or future file is refused.
const MAGIC: &[u8; 8] = b"FMWAL\0\0\x01";
/// Capacity of the record buffer kept between appends; a larger one is freed after use.
const KEPT_BUFFER: usize = 1 << 20;
/// Bytes before a record's payload.
const HEADER: usize = 16;
/// Bytes the checksum skips: itself.
const CRC: usize = 4;

/// Why the log cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    /// The disk failed.
    #[error("write-ahead log {operation}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a log of this format.
    #[error("write-ahead log: the file does not start with this version's magic bytes")]
    Foreign,
    /// A record passed its checksum but does not decode, or sequences skip: not a torn
    /// write, so acknowledged commits could be missing.
    #[error("write-ahead log is corrupt: {0}")]
    Corrupt(String),
}

fn io(operation: &'static str) -> impl FnOnce(std::io::Error) -> WalError {
    move |source| WalError::Io { operation, source }
}

/// A log being appended to.
pub(crate) struct WriteAheadLog {
    file: File,
    /// Where the next record goes.
    end: u64,
    /// The next record's sequence.
    next: u64,
    /// The record being built, kept to reuse its allocation.
    record: Vec<u8>,
}

/// Commits found in the log that the redb file does not hold yet, oldest first.
pub(crate) struct Unapplied {
    /// Each record's mutations.
    pub(crate) batches: Vec<Vec<Mutation>>,
    /// The sequence of the last record (the one redb holds when there are none).
    pub(crate) last: u64,
}

impl WriteAheadLog {
    /// Opens (creating if needed) the log at `path` and reads what follows sequence
    /// `applied`, the last one the redb file holds. Appends start over at the beginning of
    /// the file: call [`WriteAheadLog::append`] only once the returned batches are durable
    /// in redb.
    pub(crate) fn open(path: &Path, applied: u64) -> Result<(Self, Unapplied), WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let length = file.metadata().map_err(io("stat"))?.len();
        let unapplied = if length < MAGIC.len() as u64 {
            create(&file, path)?;
            Unapplied {
                batches: Vec::new(),
                last: applied,
            }
        } else {
            read_unapplied(&file, length, applied)?
        };
        let log = Self {
            file,
            end: MAGIC.len() as u64,
            next: unapplied.last + 1,
            record: Vec::new(),
        };
        Ok((log, unapplied))
    }

    /// The sequence the next appended record will carry.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Bytes appended since the log last started over.
    pub(crate) fn written(&self) -> u64 {
        self.end - MAGIC.len() as u64
    }

    /// Appends one record holding `mutations` and, with `sync`, waits until it is on disk
    /// with every record before it. On error nothing advances: the next append overwrites
    /// whatever part of it was written.
    pub(crate) fn append<'a>(
        &mut self,
        mutations: impl IntoIterator<Item = &'a Mutation>,
        sync: bool,
    ) -> Result<u64, WalError> {
        let sequence = self.next;
        encode_record(&mut self.record, sequence, mutations)?;
        let written = self.write_record(sync);
        let length = self.record.len() as u64;
        if self.record.capacity() > KEPT_BUFFER {
            self.record = Vec::new();
        }
        written?;
        self.end += length;
        self.next += 1;
        Ok(sequence)
    }

    fn write_record(&self, sync: bool) -> Result<(), WalError> {
        self.file
            .write_all_at(&self.record, self.end)
            .map_err(io("write"))?;
        if sync {
            self.file.sync_data().map_err(io("sync"))?;
        }
        Ok(())
    }

    /// Starts writing at the beginning again, once every record is durable in redb.
    pub(crate) fn start_over(&mut self) {
        self.end = MAGIC.len() as u64;
    }
}

/// Writes the magic of a new log and makes the file and its name durable.
fn create(file: &File, path: &Path) -> Result<(), WalError> {
    file.set_len(0).map_err(io("truncate"))?;
    file.write_all_at(MAGIC, 0).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    if let Some(directory) = path.parent() {
        File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(io("sync its directory"))?;
    }
    Ok(())
}

/// Reads records from the start until one is torn, stale or missing, and returns those
/// after `applied`.
fn read_unapplied(file: &File, length: u64, applied: u64) -> Result<Unapplied, WalError> {
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0).map_err(io("read"))?;
    if &magic != MAGIC {
        return Err(WalError::Foreign);
    }
    let mut unapplied = Unapplied {
        batches: Vec::new(),
        last: applied,
    };
    let mut offset = MAGIC.len() as u64;
    let mut previous: Option<u64> = None;
    while let Some((sequence, payload)) = read_record(file, offset, length)? {
        if previous.is_some_and(|p| sequence != p + 1) {
            break; // A stale record from before the last start-over: the log ends here.
        }
        previous = Some(sequence);
        offset += (HEADER + payload.len()) as u64;
        if sequence <= applied {
            continue;
        }
        if sequence != unapplied.last + 1 {
            return Err(WalError::Corrupt(format!(
                "record {sequence} follows {}, but the database file holds records up to \
                 {applied} only: it is older than its log (replaced, or restored from a copy?)",
                unapplied.last
            )));
        }
        unapplied.batches.push(decode_payload(&payload, sequence)?);
        unapplied.last = sequence;
    }
    Ok(unapplied)
}

/// The record at `offset`, or `None` where the log ends (short, torn or garbage bytes).
fn read_record(file: &File, offset: u64, length: u64) -> Result<Option<(u64, Vec<u8>)>, WalError> {
    let mut header = [0u8; HEADER];
    if offset + HEADER as u64 > length {
        return Ok(None);
    }
    read_at(file, &mut header, offset)?;
    let (crc, rest) = header.split_at(CRC);
    let expected = u32::from_le_bytes(le(crc));
    let size = u64::from(u32::from_le_bytes(le(&rest[..4])));
    let sequence = u64::from_le_bytes(le(&rest[4..]));
    if offset + HEADER as u64 + size > length {
        return Ok(None);
    }
    let Ok(size) = usize::try_from(size) else {
        return Ok(None);
    };
    let mut payload = vec![0u8; size];
    read_at(file, &mut payload, offset + HEADER as u64)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(rest);
    hasher.update(&payload);
    if hasher.finalize() != expected {
        return Ok(None);
    }
    Ok(Some((sequence, payload)))
}

fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> Result<(), WalError> {
    file.read_exact_at(buffer, offset).map_err(io("read"))
}

/// The first N bytes of `bytes` as an array; callers pass exactly N.
fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(&bytes[..N]);
    array
}

/// Tags of the encoded mutations.
const SET: u8 = 1;
const CLEAR: u8 = 2;
const CLEAR_RANGE: u8 = 3;
const ADD: u8 = 4;
const COMPARE_AND_CLEAR: u8 = 5;

/// Replaces `record` with the encoding of one record.
fn encode_record<'a>(
    record: &mut Vec<u8>,
    sequence: u64,
    mutations: impl IntoIterator<Item = &'a Mutation>,
) -> Result<(), WalError> {
    record.clear();
    record.resize(HEADER, 0);
    for mutation in mutations {
        encode_mutation(record, mutation)?;
    }
    let size = u32::try_from(record.len() - HEADER)
        .map_err(|_| WalError::Corrupt("a group commit over 4 GiB".into()))?;
    record[CRC..CRC + 4].copy_from_slice(&size.to_le_bytes());
    record[CRC + 4..HEADER].copy_from_slice(&sequence.to_le_bytes());
    let crc = crc32fast::hash(&record[CRC..]);
    record[..CRC].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn encode_mutation(out: &mut Vec<u8>, mutation: &Mutation) -> Result<(), WalError> {
    match mutation {
        Mutation::Set(key, value) => {
            out.push(SET);
            put_bytes(out, key)?;
            put_bytes(out, value)
        }
        Mutation::Clear(key) => {
            out.push(CLEAR);
            put_bytes(out, key)
        }
        Mutation::ClearRange(range) => {
            out.push(CLEAR_RANGE);
            put_bytes(out, &range.begin)?;
            put_bytes(out, &range.end)
        }
        Mutation::Add(key, delta) => {
            out.push(ADD);
            put_bytes(out, key)?;
            out.extend_from_slice(&delta.to_le_bytes());
            Ok(())
        }
        Mutation::CompareAndClear(key, expected) => {
            out.push(COMPARE_AND_CLEAR);
            put_bytes(out, key)?;
            put_bytes(out, expected)
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), WalError> {
    // Keys and values are far below 4 GiB (the store's limits are 10 kB and 100 kB).
    let length = u32::try_from(bytes.len())
        .map_err(|_| WalError::Corrupt(format!("a field of {} bytes", bytes.len())))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Decodes a record's payload, which passed its checksum: any flaw is corruption.
fn decode_payload(payload: &[u8], sequence: u64) -> Result<Vec<Mutation>, WalError> {
    let mut reader = Reader { rest: payload };
    let mut mutations = Vec::new();
    while !reader.rest.is_empty() {
        let mutation = reader
            .mutation()
            .ok_or_else(|| WalError::Corrupt(format!("record {sequence} does not decode")))?;
        mutations.push(mutation);
    }
    Ok(mutations)
}

/// A cursor over an encoded payload; `None` where it is cut short or unknown.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let length = u32::from_le_bytes(le(self.take(4)?));
        Some(self.take(usize::try_from(length).ok()?)?.to_vec())
    }

    fn mutation(&mut self) -> Option<Mutation> {
        let tag = *self.take(1)?.first()?;
        Some(match tag {
            SET => Mutation::Set(self.bytes()?, self.bytes()?),
            CLEAR => Mutation::Clear(self.bytes()?),
            CLEAR_RANGE => Mutation::ClearRange(KeyRange::new(self.bytes()?, self.bytes()?)),
            ADD => Mutation::Add(self.bytes()?, i64::from_le_bytes(le(self.take(8)?))),
            COMPARE_AND_CLEAR => Mutation::CompareAndClear(self.bytes()?, self.bytes()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn every_kind(n: u8) -> Vec<Mutation> {
        vec![
            Mutation::Set(vec![n, 1], vec![n; 300]),
            Mutation::Clear(vec![n, 2]),
            Mutation::ClearRange(KeyRange::new(vec![n, 3], vec![n, 4])),
            Mutation::Add(vec![n, 5], -7),
            Mutation::CompareAndClear(vec![n, 6], Vec::new()),
        ]
    }

    /// A log in a new directory with `records` appended; returns the directory.
    fn log_with(records: u8) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, unapplied) = WriteAheadLog::open(&dir.path().join("log"), 0).unwrap();
        assert!(unapplied.batches.is_empty());
        for n in 1..=records {
            assert_eq!(log.append(&every_kind(n), true).unwrap(), u64::from(n));
        }
        dir
    }

    fn reopen(
        dir: &tempfile::TempDir,
        applied: u64,
    ) -> Result<(WriteAheadLog, Unapplied), WalError> {
        WriteAheadLog::open(&dir.path().join("log"), applied)
    }

    /// Offset of record `n` (1-based) in a log written by [`log_with`].
    fn offset_of(n: u8) -> u64 {
        let mut record = Vec::new();
        (1..n).fold(MAGIC.len() as u64, |offset, k| {
            encode_record(&mut record, u64::from(k), &every_kind(k)).unwrap();
            offset + record.len() as u64
        })
    }

    fn patch(dir: &tempfile::TempDir, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("log"))
            .unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn every_record_after_the_applied_one_is_read_back_in_order() {
        let dir = log_with(3);
        let (log, unapplied) = reopen(&dir, 1).unwrap();
        assert_eq!(unapplied.batches, vec![every_kind(2), every_kind(3)]);
        assert_eq!(unapplied.last, 3);
        assert_eq!(log.next_sequence(), 4);
        let (_, nothing) = reopen(&dir, 3).unwrap();
        assert!(nothing.batches.is_empty());
        assert_eq!(nothing.last, 3);
    }

    #[test]
    fn a_torn_last_record_ends_the_log() {
        let dir = log_with(3);
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("log"))
            .unwrap();
        // Cut in the middle of record 3's payload, then in its header.
        for cut in [offset_of(3) + HEADER as u64 + 10, offset_of(3) + 5] {
            file.set_len(cut).unwrap();
            let (_, unapplied) = reopen(&dir, 0).unwrap();
            assert_eq!(unapplied.batches, vec![every_kind(1), every_kind(2)]);
        }
    }

    #[test]
    fn a_flipped_byte_ends_the_log_at_that_record() {
        let dir = log_with(3);
        patch(&dir, offset_of(2) + HEADER as u64 + 3, b"\xff");
        let (_, unapplied) = reopen(&dir, 0).unwrap();
        assert_eq!(unapplied.batches, vec![every_kind(1)]);
    }

    #[test]
    fn a_length_beyond_the_file_ends_the_log_without_allocating_it() {
        let dir = log_with(2);
        // Record 2 claims 4 GiB; its checksum cannot be checked, so it is a torn write.
        patch(&dir, offset_of(2) + CRC as u64, &u32::MAX.to_le_bytes());
        let (_, unapplied) = reopen(&dir, 0).unwrap();
        assert_eq!(unapplied.batches, vec![every_kind(1)]);
    }

    #[test]
    fn after_starting_over_older_records_further_on_are_not_replayed() {
        let dir = log_with(4);
        let (mut log, _) = reopen(&dir, 4).unwrap();
        log.start_over();
        // One short record now sits before what is left of records 1 to 4.
        assert_eq!(log.append(&[Mutation::Clear(vec![9])], true).unwrap(), 5);
        let (_, unapplied) = reopen(&dir, 4).unwrap();
        assert_eq!(unapplied.batches, vec![vec![Mutation::Clear(vec![9])]]);
        assert_eq!(unapplied.last, 5);
    }

    #[test]
    fn a_failed_append_leaves_the_next_one_in_its_place() {
        let dir = log_with(1);
        let (mut log, _) = reopen(&dir, 1).unwrap();
        let written = log.written();
        let mutation = Mutation::Set(Vec::new(), Vec::new());
        // Appending only fails on I/O; a log whose file went read-only stands in for that.
        let read_only = File::open(dir.path().join("log")).unwrap();
        let mut broken = WriteAheadLog {
            file: read_only,
            end: log.end,
            next: log.next,
            record: Vec::new(),
        };
        assert!(matches!(
            broken.append([&mutation], true),
            Err(WalError::Io { .. })
        ));
        assert_eq!((broken.written(), broken.next_sequence()), (written, 2));
        assert_eq!(log.append([&mutation], true).unwrap(), 2);
    }

    #[test]
    fn a_gap_after_the_applied_record_is_corruption() {
        let dir = log_with(3);
        // The store holds up to record 3 and the log's first record is 10: 4 to 9 are lost.
        let (mut log, _) = reopen(&dir, 3).unwrap();
        log.start_over();
        log.next = 10;
        log.append(&every_kind(10), true).unwrap();
        let error = reopen(&dir, 3).err().unwrap();
        assert!(matches!(error, WalError::Corrupt(_)), "{error}");
        assert!(error.to_string().contains("record 10"), "{error}");
    }

    #[test]
    fn a_record_with_a_valid_checksum_that_does_not_decode_is_corruption() {
        for payload in [
            vec![99u8],
            vec![SET, 5, 0, 0, 0, 1],
            vec![ADD, 0, 0, 0, 0, 1, 2],
        ] {
            let dir = log_with(0);
            let mut record = payload.clone();
            let mut header = [0u8; HEADER];
            header[CRC..CRC + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            header[CRC + 4..].copy_from_slice(&1u64.to_le_bytes());
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[CRC..]);
            hasher.update(&payload);
            header[..CRC].copy_from_slice(&hasher.finalize().to_le_bytes());
            record.splice(0..0, header);
            patch(&dir, MAGIC.len() as u64, &record);
            let error = reopen(&dir, 0).err().unwrap();
            assert!(
                matches!(error, WalError::Corrupt(_)),
                "{payload:?}: {error}"
            );
        }
    }

    #[test]
    fn a_file_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), b"SQLite format 3\0").unwrap();
        assert!(matches!(reopen(&dir, 0), Err(WalError::Foreign)));
    }

    #[test]
    fn a_file_cut_inside_its_magic_is_a_new_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), &MAGIC[..3]).unwrap();
        let (mut log, unapplied) = reopen(&dir, 7).unwrap();
        assert!(unapplied.batches.is_empty());
        assert_eq!(log.append(&every_kind(8), true).unwrap(), 8);
        assert_eq!(reopen(&dir, 7).unwrap().1.batches, vec![every_kind(8)]);
    }
}
