//! The writes a transaction makes, as every backend takes them; how they combine; and how a
//! transaction's reads merge them over what is committed, so that reads see the transaction's
//! own writes identically on each backend that buffers them.

use crate::range::{KeyRange, KeyValue};

/// One buffered write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mutation {
    Set(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    ClearRange(KeyRange),
    Add(Vec<u8>, i64),
    CompareAndClear(Vec<u8>, Vec<u8>),
}

impl Mutation {
    /// Keys this mutation may change.
    pub(crate) fn write_range(&self) -> KeyRange {
        match self {
            Mutation::Set(key, _)
            | Mutation::Clear(key)
            | Mutation::Add(key, _)
            | Mutation::CompareAndClear(key, _) => KeyRange::single(key),
            Mutation::ClearRange(range) => range.clone(),
        }
    }

    /// The point key it applies to, if it applies to one key.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        match self {
            Mutation::Set(key, _)
            | Mutation::Clear(key)
            | Mutation::Add(key, _)
            | Mutation::CompareAndClear(key, _) => Some(key),
            Mutation::ClearRange(_) => None,
        }
    }

    /// Bytes it counts against the transaction limit.
    pub(crate) fn size(&self) -> usize {
        match self {
            Mutation::Set(key, value) | Mutation::CompareAndClear(key, value) => {
                key.len() + value.len()
            }
            Mutation::Clear(key) => key.len(),
            Mutation::Add(key, _) => key.len() + 8,
            Mutation::ClearRange(range) => range.begin.len() + range.end.len(),
        }
    }

    /// Applies this mutation to the value of `key`, if it concerns `key`.
    pub(crate) fn apply(&self, key: &[u8], current: &mut Option<Vec<u8>>) {
        match self {
            Mutation::Set(k, value) if k == key => *current = Some(value.clone()),
            Mutation::Clear(k) if k == key => *current = None,
            Mutation::ClearRange(range) if range.contains(key) => *current = None,
            Mutation::Add(k, delta) if k == key => *current = Some(add(current.as_deref(), *delta)),
            Mutation::CompareAndClear(k, expected)
                if k == key && current.as_deref() == Some(expected.as_slice()) =>
            {
                *current = None
            }
            _ => {}
        }
    }
}

/// FoundationDB's ADD on 8-byte little-endian operands: an absent or shorter value counts
/// as zero-extended, the sum wraps, and the result has the operand's length.
pub(crate) fn add(current: Option<&[u8]>, delta: i64) -> Vec<u8> {
    let base = current.map_or(0, decode_counter);
    base.wrapping_add(delta).to_le_bytes().to_vec()
}

/// The value of `key` after `mutations`, starting from the committed `base`.
pub(crate) fn resolve(
    key: &[u8],
    base: Option<Vec<u8>>,
    mutations: &[Mutation],
) -> Option<Vec<u8>> {
    let mut current = base;
    for mutation in mutations {
        mutation.apply(key, &mut current);
    }
    current
}

/// Merges two sequences sorted in read order; on equal keys the overlay wins.
pub(crate) fn merge(
    snapshot: Vec<KeyValue>,
    overlay: Vec<KeyValue>,
    reverse: bool,
) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(snapshot.len() + overlay.len());
    let mut a = snapshot.into_iter().peekable();
    let mut b = overlay.into_iter().peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                if reverse {
                    x.key > y.key
                } else {
                    x.key < y.key
                }
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        if let Some(next) = if take_a { a.next() } else { b.next() } {
            out.push(next);
        }
    }
}

/// Decodes a counter written by atomic adds: FoundationDB's little-endian two's complement,
/// a shorter value zero-extended.
pub fn decode_counter(value: &[u8]) -> i64 {
    let mut bytes = [0u8; 8];
    let n = value.len().min(8);
    bytes[..n].copy_from_slice(&value[..n]);
    i64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_mutations_win_in_order() {
        let k = b"k".to_vec();
        let ms = vec![
            Mutation::Set(k.clone(), b"a".to_vec()),
            Mutation::ClearRange(KeyRange::new(b"a".to_vec(), b"z".to_vec())),
            Mutation::Add(k.clone(), 5),
            Mutation::Add(k.clone(), -2),
        ];
        assert_eq!(
            resolve(&k, Some(b"old".to_vec()), &ms),
            Some(3i64.to_le_bytes().to_vec())
        );
        let cac = [Mutation::CompareAndClear(k.clone(), b"x".to_vec())];
        assert_eq!(resolve(&k, Some(b"x".to_vec()), &cac), None);
        assert_eq!(resolve(&k, Some(b"y".to_vec()), &cac), Some(b"y".to_vec()));
    }
}
