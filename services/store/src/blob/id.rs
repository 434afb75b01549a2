//! [`BlobId`]: a random 128-bit name, written as 32 hexadecimal digits.

use std::fmt;
use std::str::FromStr;

/// The name of a blob: 128 random bits, so writers on any pod never collide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 16]);

impl BlobId {
    /// A fresh random id.
    pub(crate) fn random() -> Self {
        Self(rand::random())
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
        let random = BlobId::random();
        assert_eq!(random.to_string().parse(), Ok(random));
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
