//! [`MessageId`]: the queue id of a message, generated without coordination and parsed from
//! the wire.
//!
//! A queue id is a ULID: 48 bits of Unix milliseconds, then 80 random bits, written as 26
//! Crockford base32 characters (`01J9ZK3M5Q8W2XGJ4R6T0B7C1D`). The time comes first, so ids sort
//! by arrival as text and as the 16 big-endian bytes stored in keys; 80 random bits make a
//! collision between pods that generate ids in the same millisecond negligible (a billion ids
//! in one millisecond collide with a probability below 1 in 2 million).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrymail_rpc::queue::QueueId;
use ulid::Ulid;

/// Number of shards of the due index, which a message's id chooses. Schedulers divide the
/// shards among themselves, so it bounds how many can share the work; changing it needs a
/// migration of the index.
pub const SHARDS: u16 = 64;

/// Bits of randomness in an id.
const RANDOM_BITS: u32 = 80;
/// Largest time an id can hold (the 48-bit millisecond field, year 10889).
const MAX_MILLIS: u64 = (1 << 48) - 1;
/// Length of the text form.
const TEXT_LEN: usize = ulid::ULID_LEN;

/// The queue id of a message, parsed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Ulid);

/// Text that is not a queue id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue id {text:?}: expected 26 Crockford base32 characters")]
pub struct InvalidQueueId {
    /// The text, cut to a printable length.
    text: String,
}

impl MessageId {
    /// A fresh id for a message arriving at `now`.
    pub fn generate(now: SystemTime) -> Self {
        let random = rand::random::<u128>() & ((1u128 << RANDOM_BITS) - 1);
        Self(Ulid::from_parts(unix_millis(now).min(MAX_MILLIS), random))
    }

    /// Parses the text form, upper or lower case.
    pub fn parse(text: &str) -> Result<Self, InvalidQueueId> {
        let invalid = || InvalidQueueId {
            text: text.chars().take(64).collect(),
        };
        // 26 base32 digits hold 130 bits: a first digit above 7 would overflow 128 bits and
        // silently alias another id, which the decoder does not check.
        if text.len() != TEXT_LEN || !text.starts_with(|c: char| ('0'..='7').contains(&c)) {
            return Err(invalid());
        }
        Ulid::from_string(text).map(Self).map_err(|_| invalid())
    }

    /// The id a wire [`QueueId`] names.
    pub fn from_wire(id: &QueueId) -> Result<Self, InvalidQueueId> {
        Self::parse(id.as_str())
    }

    /// The id as the wire names it.
    pub fn to_wire(&self) -> QueueId {
        QueueId::new(self.to_string())
    }

    /// The id whose 16 bytes are `bytes` (as stored by [`MessageId::to_bytes`]).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Ulid::from_bytes(bytes))
    }

    /// The id's 16 big-endian bytes: the form stored in keys, sorting by time.
    pub fn to_bytes(&self) -> [u8; 16] {
        self.0.to_bytes()
    }

    /// When the id was generated (Unix milliseconds).
    pub fn unix_millis(&self) -> u64 {
        self.0.timestamp_ms()
    }

    /// The shard of the due index holding this message.
    ///
    /// The 80 random bits are already uniformly distributed, so they serve as the hash; unlike
    /// `std`'s hashers they are stable across processes and compiler versions, which a key
    /// layout needs.
    pub fn shard(&self) -> u16 {
        let shard = self.0.random() % u128::from(SHARDS);
        u16::try_from(shard).unwrap_or(0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; TEXT_LEN];
        f.write_str(self.0.array_to_str(&mut buffer))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Milliseconds since the Unix epoch (0 before it): how the queue stores times.
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn text_and_bytes_round_trip() {
        let id = MessageId::generate(SystemTime::now());
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(MessageId::parse(&text).unwrap(), id);
        assert_eq!(MessageId::parse(&text.to_lowercase()).unwrap(), id);
        assert_eq!(MessageId::from_bytes(id.to_bytes()), id);
        assert_eq!(MessageId::from_wire(&id.to_wire()).unwrap(), id);
    }

    #[test]
    fn ids_sort_by_time_as_text_and_as_bytes() {
        let early = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let a = MessageId::generate(early);
        let b = MessageId::generate(early + Duration::from_millis(1));
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(a.unix_millis(), 1_700_000_000_000);
    }

    #[test]
    fn ids_of_one_millisecond_are_distinct() {
        let now = SystemTime::now();
        let ids: HashSet<_> = (0..10_000).map(|_| MessageId::generate(now)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn garbage_is_refused() {
        for text in [
            "",
            "01J9ZK3M5Q8W2XGJ4R6T0B7C1",      // 25 characters
            "01J9ZK3M5Q8W2XGJ4R6T0B7C1DD",    // 27
            "01J9ZK3M5Q8W2XGJ4R6T0B7C1U",     // U is not Crockford base32
            "01J9ZK3M5Q8W2XGJ4R6T0B7C1-",     // punctuation
            "81J9ZK3M5Q8W2XGJ4R6T0B7C1D",     // overflows 128 bits
            "01J9ZK3M5Q8W2XGJ4R6T0B7C\u{e9}", // not ASCII, 26 bytes
        ] {
            assert!(MessageId::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn shards_are_in_range_and_spread() {
        let now = SystemTime::now();
        let shards: HashSet<_> = (0..5_000)
            .map(|_| MessageId::generate(now).shard())
            .collect();
        assert!(shards.iter().all(|&s| s < SHARDS));
        assert_eq!(shards.len(), usize::from(SHARDS));
    }
}
