//! The outbox of delivery events: per webhook, the events not yet taken by it, keyed by
//! their ULID (so oldest first), each written in the transaction that records what it tells
//! of; a count of them kept by atomic add; and the lease of the one scheduler sending them.
//!
//! An event leaves the outbox in a transaction after its webhook answered `2xx`: a crash
//! before that sends it again (at least once), never loses it. The sender lease is a
//! [`Lease`] as a message's: a scheduler takes it when nobody holds it, or its holder let it
//! run out for longer than the clock skew, with the next token; so two schedulers send the
//! same events only when one paused past its lease mid-request.

use std::fmt;

use ferrymail_store::{KeyValue, RangeOptions, StoreError, Transaction, decode_counter};
use ulid::Ulid;

use crate::model::keys::Keys;
use crate::model::lease::Lease;

/// The id of one event: a ULID, unique across schedulers, sorting by time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EventId(Ulid);

impl EventId {
    /// A fresh id for an event at `now_ms`.
    pub(crate) fn generate(now_ms: u64) -> Self {
        let random = rand::random::<u128>() & ((1u128 << 80) - 1);
        Self(Ulid::from_parts(now_ms.min((1 << 48) - 1), random))
    }

    /// The id whose 16 stored bytes are `bytes`.
    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Ulid::from_bytes(bytes))
    }

    /// The 16 big-endian bytes stored in keys.
    pub(crate) fn to_bytes(self) -> [u8; 16] {
        self.0.to_bytes()
    }

    /// When the event happened (Unix milliseconds).
    pub(crate) fn unix_millis(self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; ulid::ULID_LEN];
        f.write_str(self.0.array_to_str(&mut buffer))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// Puts event `id` (`body`, its JSON) in `webhook`'s outbox and counts it.
pub(crate) fn append(
    tx: &Transaction,
    keys: &Keys,
    webhook: &str,
    id: EventId,
    body: &[u8],
) -> Result<(), StoreError> {
    tx.set(&keys.outbox_entry(webhook, &id.to_bytes()), body)?;
    tx.atomic_add(&keys.outbox_depth(webhook), 1)
}

/// Up to `limit` of the oldest events waiting for `webhook`.
pub(crate) async fn oldest(
    tx: &Transaction,
    keys: &Keys,
    webhook: &str,
    limit: usize,
) -> Result<Vec<(EventId, Vec<u8>)>, StoreError> {
    let options = RangeOptions {
        limit,
        reverse: false,
    };
    let page = tx.get_range(&keys.outbox(webhook), options).await?;
    Ok(page
        .pairs
        .into_iter()
        .filter_map(|KeyValue { key, value }| {
            let id = keys.parse_outbox_entry(&key)?;
            Some((EventId::from_bytes(id), value))
        })
        .collect())
}

/// Takes `ids` out of `webhook`'s outbox; returns how many were still there (another
/// sender may have taken some out already, and the count must not go down twice).
pub(crate) async fn remove(
    tx: &Transaction,
    keys: &Keys,
    webhook: &str,
    ids: &[EventId],
) -> Result<usize, StoreError> {
    let mut removed = 0usize;
    for id in ids {
        let key = keys.outbox_entry(webhook, &id.to_bytes());
        if tx.get(&key).await?.is_some() {
            tx.clear(&key)?;
            removed += 1;
        }
    }
    if removed > 0 {
        let delta = i64::try_from(removed).unwrap_or(i64::MAX);
        tx.atomic_add(&keys.outbox_depth(webhook), -delta)?;
    }
    Ok(removed)
}

/// How many events wait for `webhook` (0 if the count went below zero).
pub(crate) async fn depth(tx: &Transaction, keys: &Keys, webhook: &str) -> Result<u64, StoreError> {
    let value = tx.get(&keys.outbox_depth(webhook)).await?;
    Ok(value.map_or(0, |v| u64::try_from(decode_counter(&v)).unwrap_or(0)))
}

/// When the oldest event waiting for `webhook` happened (Unix milliseconds), if any.
pub(crate) async fn oldest_time(
    tx: &Transaction,
    keys: &Keys,
    webhook: &str,
) -> Result<Option<u64>, StoreError> {
    let first = oldest(tx, keys, webhook, 1).await?;
    Ok(first.first().map(|(id, _)| id.unix_millis()))
}

/// Who may take the sender lease: `owner`, at `now_ms` by its clock, until `expiry_ms`,
/// taking it over from another holder only once `skew_ms` past its end.
#[derive(Clone, Debug)]
pub(crate) struct SenderTerms {
    /// The scheduler asking.
    pub(crate) owner: String,
    /// Its clock now.
    pub(crate) now_ms: u64,
    /// The end of the lease it takes or extends.
    pub(crate) expiry_ms: u64,
    /// The margin for clocks that differ.
    pub(crate) skew_ms: u64,
}

/// Takes or extends the lease of sending `webhook`'s events on `terms`; `None` while another
/// scheduler holds it. An owner extending its own lease keeps its token.
pub(crate) async fn take_sender_lease(
    tx: &Transaction,
    keys: &Keys,
    webhook: &str,
    terms: &SenderTerms,
) -> Result<Option<Lease>, StoreError> {
    let key = keys.outbox_lease(webhook);
    let previous = tx.get(&key).await?.map(|v| Lease::decode(&v)).transpose()?;
    let lease = match previous {
        Some(held) if held.owner == terms.owner && held.expiry_ms > terms.now_ms => Lease {
            expiry_ms: terms.expiry_ms,
            ..held
        },
        Some(held) if held.expiry_ms.saturating_add(terms.skew_ms) > terms.now_ms => {
            return Ok(None);
        }
        previous => Lease {
            owner: terms.owner.clone(),
            token: previous.map_or(1, |l| l.token.saturating_add(1)),
            expiry_ms: terms.expiry_ms,
        },
    };
    tx.set(&key, &lease.encode())?;
    Ok(Some(lease))
}

/// Gives up the sender lease of `webhook` held under `token` (a scheduler stopping), so
/// that another takes it at once.
pub(crate) async fn release_sender_lease(
    tx: &Transaction,
    keys: &Keys,
    webhook: &str,
    token: u64,
) -> Result<(), StoreError> {
    let key = keys.outbox_lease(webhook);
    if let Some(held) = tx.get(&key).await?.map(|v| Lease::decode(&v)).transpose()?
        && held.token == token
    {
        let released = Lease {
            expiry_ms: 0,
            ..held
        };
        tx.set(&key, &released.encode())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ids_sort_by_time_and_print_as_ulids() {
        let early = EventId::generate(1_000);
        let late = EventId::generate(2_000);
        assert!(early.to_bytes() < late.to_bytes());
        assert_eq!(early.unix_millis(), 1_000);
        assert_eq!(EventId::from_bytes(late.to_bytes()), late);
        let text = late.to_string();
        assert_eq!(text.len(), 26);
        assert!(Ulid::from_string(&text).is_ok());
    }
}
