//! [`BlobId`]: a unique 128-bit name (creation time, then random bits), written as 32
//! hexadecimal digits.

use std::fmt;
use std::str::FromStr;

/// The name of a blob: its creation time and 80 random bits, so writers on any pod never collide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 16]);

impl BlobId {
    /// A fresh id: the time in milliseconds (48 bits, big-endian), then 80 random bits.
    ///
    /// Time first, so the keys of the blobs written together sort together: a store commit
    /// then rewrites a few shared B-tree pages instead of one page per blob, and so does the
    /// deletion that follows delivery. The random part keeps ids written on different pods in
    /// the same millisecond apart.
    pub(crate) fn fresh() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        let mut bytes: [u8; 16] = rand::random();
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[10..]);
        Self(bytes)
    }

    /// The id whose 16 bytes are `bytes` (as stored by [`BlobId::as_bytes`]).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's 16 bytes, to store it in a record.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// A string that is not 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blob id {0:?}: expected 32 hexadecimal digits")]
pub struct ParseBlobIdError(String);

impl FromStr for BlobId {
    type Err = ParseBlobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseBlobIdError(s.to_owned());
        let digits = s.as_bytes();
        if digits.len() != 32 {
            return Err(invalid());
        }
        let nibble = |digit: u8| {
            char::from(digit)
                .to_digit(16)
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(invalid)
        };
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = BlobId::from_bytes([
            0x00, 0x01, 0x0a, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0,
            0xb0, 0xc0,
        ]);
        assert_eq!(id.to_string(), "00010aff102030405060708090a0b0c0");
        assert_eq!("00010aff102030405060708090a0b0c0".parse(), Ok(id));
        assert_eq!("00010AFF102030405060708090A0B0C0".parse(), Ok(id));
        let random = BlobId::fresh();
        assert_eq!(random.to_string().parse(), Ok(random));
    }

    #[test]
    fn fresh_ids_are_unique_and_sort_by_creation_time() {
        let first = BlobId::fresh();
        let same_moment = BlobId::fresh();
        assert_ne!(first, same_moment);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = BlobId::fresh();
        assert!(
            later > first && later > same_moment,
            "{later} after {first}"
        );
        let millis = |id: &BlobId| id.as_bytes()[..6].to_vec();
        assert!(millis(&first) <= millis(&same_moment));
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "00",
            "00010aff102030405060708090a0b0c",
            "00010aff102030405060708090a0b0c0d",
            "+0010aff102030405060708090a0b0c0",
            "g0010aff102030405060708090a0b0c0",
            "é010aff102030405060708090a0b0c0",
        ] {
            assert!(bad.parse::<BlobId>().is_err(), "{bad:?}");
        }
    }
}
