//! Key ranges and what range reads return.

use crate::error::{Result, StoreError};

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// Keys from `begin` (included) to `end` (excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// First key included.
    pub begin: Vec<u8>,
    /// First key excluded.
    pub end: Vec<u8>,
}

impl KeyRange {
    /// A range from `begin` to `end`.
    pub fn new(begin: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            begin: begin.into(),
            end: end.into(),
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        // The smallest key after all keys with this prefix: drop trailing 0xff, add one.
        while end.last() == Some(&0xff) {
            end.pop();
        }
        match end.last_mut() {
            Some(last) => *last += 1,
            None => end = vec![0xff],
        }
        Self {
            begin: prefix.to_vec(),
            end,
        }
    }

    /// The range holding exactly one key.
    pub fn single(key: &[u8]) -> Self {
        Self {
            begin: key.to_vec(),
            end: key_after(key),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && key < self.end.as_slice()
    }

    /// Whether two ranges share a key.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        self.begin < other.end && other.begin < self.end
    }

    /// Whether the range holds no key.
    pub fn is_empty(&self) -> bool {
        self.begin >= self.end
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.begin > self.end {
            return Err(StoreError::InvalidRange("begin is after end".into()));
        }
        Ok(())
    }
}

/// The smallest key greater than `key`.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// How a range is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeOptions {
    /// Most pairs returned (0: no limit).
    pub limit: usize,
    /// From the end of the range backwards.
    pub reverse: bool,
}

/// One page of a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangePage {
    /// Pairs in key order (descending when reading in reverse).
    pub pairs: Vec<KeyValue>,
    /// Whether the limit cut the read short.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(
            KeyRange::prefix(b"ab"),
            KeyRange::new(b"ab".to_vec(), b"ac".to_vec())
        );
        assert_eq!(
            KeyRange::prefix(b"a\xff\xff"),
            KeyRange::new(b"a\xff\xff".to_vec(), b"b".to_vec())
        );
        assert_eq!(KeyRange::prefix(b""), KeyRange::new(Vec::new(), vec![0xff]));
        assert!(KeyRange::prefix(b"ab").contains(b"ab\xff\xff"));
        assert!(!KeyRange::prefix(b"ab").contains(b"ac"));
    }

    #[test]
    fn intersection() {
        let r = |a: &[u8], b: &[u8]| KeyRange::new(a.to_vec(), b.to_vec());
        assert!(r(b"a", b"c").intersects(&r(b"b", b"d")));
        assert!(!r(b"a", b"b").intersects(&r(b"b", b"c")));
        assert!(KeyRange::single(b"k").intersects(&r(b"a", b"z")));
    }
}
