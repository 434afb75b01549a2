//! The Message-ID index: which queued messages carry a given `Message-ID` header, so that
//! `queue show` finds a message by it without reading the queue.
//!
//! Written in the enqueue's transaction and cleared in the removal's, so it never names a
//! message that is gone. Message-IDs are indexed normalized ([`normalize`]): without angle
//! brackets and surrounding space, in ASCII lower case, and cut to [`MAX_LEN`] bytes, so a
//! lookup matches however the administrator writes it. Several messages may share one.

use ferrymail_store::{StoreError, Transaction};

use crate::model::keys::Keys;
use crate::model::queue_id::MessageId;

/// Longest Message-ID indexed, in bytes (RFC 5322 lines are at most 998).
pub(crate) const MAX_LEN: usize = 998;

/// Most messages one lookup returns.
pub(crate) const MAX_MATCHES: usize = 100;

/// The indexed form of a Message-ID; `None` when nothing is left of it.
pub(crate) fn normalize(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let inner = trimmed
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(trimmed)
        .trim();
    if inner.is_empty() || inner.chars().any(char::is_control) {
        return None;
    }
    let mut end = inner.len().min(MAX_LEN);
    while !inner.is_char_boundary(end) {
        end -= 1;
    }
    Some(inner[..end].to_ascii_lowercase())
}

/// Indexes message `id` under `message_id` (normalized) in `tx`.
pub(crate) fn add(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    message_id: &str,
) -> Result<(), StoreError> {
    tx.set(&keys.message_id_entry(message_id, id), &[])?;
    tx.set(&keys.message_id_of(id), message_id.as_bytes())
}

/// Takes message `id` out of the index in `tx`, if it is in it.
pub(crate) async fn remove(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
) -> Result<(), StoreError> {
    let of = keys.message_id_of(id);
    let Some(value) = tx.get(&of).await? else {
        return Ok(());
    };
    let message_id = String::from_utf8(value.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("message {id}: Message-ID index not UTF-8")))?;
    tx.clear(&keys.message_id_entry(&message_id, id))?;
    tx.clear(&of)
}

/// The messages indexed under `message_id` (normalized), oldest first, at most
/// [`MAX_MATCHES`].
pub(crate) async fn find(
    tx: &Transaction,
    keys: &Keys,
    message_id: &str,
) -> Result<Vec<MessageId>, StoreError> {
    let pairs = tx
        .get_range(
            &keys.message_id_entries(message_id),
            ferrymail_store::RangeOptions {
                limit: MAX_MATCHES,
                reverse: false,
            },
        )
        .await?
        .pairs;
    Ok(pairs
        .iter()
        .filter_map(|pair| keys.parse_message_id_entry(&pair.key))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_indexed_without_brackets_and_case() {
        assert_eq!(
            normalize("  <Abc.123@Example.ORG> ").as_deref(),
            Some("abc.123@example.org")
        );
        assert_eq!(normalize("abc@x").as_deref(), Some("abc@x"));
        assert_eq!(normalize("<>"), None);
        assert_eq!(normalize("a\nb"), None);
        assert_eq!(normalize(&"é".repeat(600)).map(|s| s.len()), Some(998));
    }
}
