//! Delivery leases: which scheduler delivers a message, until when, under which fencing token.
//!
//! `("lease", id)` holds `(1, owner, token, expiry_ms)`. A scheduler claims a message in a
//! transaction that finds no lease, or one expired for longer than the clocks of two nodes may
//! differ (`queue.lease.max-clock-skew`), and writes a lease with the next token (the token
//! only ever grows: a released lease keeps its token, with expiry 0, and a message's first
//! lease is written once, by the enqueue that created it). The delivery result is committed in
//! a transaction that first checks the token is still the claimer's and the stored lease has
//! not run out, so a scheduler that paused past its lease cannot overwrite a new owner's work,
//! nor record a result the record no longer gives it the right to: its result is dropped, and
//! the message is delivered again by whoever claims it next. The holder stops handing the
//! message over before its lease can have run out (see the scheduler's lease renewal), so the
//! only duplicate left is a crash or pause between the remote's reply and the commit.

use ferrymail_store::{StoreError, Transaction, tuple};

use crate::model::keys::Keys;
use crate::model::queue_id::MessageId;

/// Layout version of a lease value.
const FORMAT: u64 = 1;

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it (a scheduler's id).
    pub owner: String,
    /// Fencing token: increments on every claim of the message.
    pub token: u64,
    /// When it ends (Unix milliseconds); 0 once released.
    pub expiry_ms: u64,
}

impl Lease {
    /// The stored form (also of the event outbox's sender lease).
    pub(crate) fn encode(&self) -> Vec<u8> {
        tuple::pack(&(FORMAT, self.owner.as_str(), self.token, self.expiry_ms))
    }

    /// A stored lease, or why it is not one.
    pub(crate) fn decode(value: &[u8]) -> Result<Self, StoreError> {
        let (format, owner, token, expiry_ms) = tuple::unpack::<(u64, String, u64, u64)>(value)
            .map_err(|e| StoreError::Corrupt(format!("lease: {e}")))?;
        if format != FORMAT {
            return Err(StoreError::Corrupt(format!("lease format {format}")));
        }
        Ok(Self {
            owner,
            token,
            expiry_ms,
        })
    }
}

/// The lease of message `id`, if one was ever taken.
pub(crate) async fn read(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
) -> Result<Option<Lease>, StoreError> {
    tx.get(&keys.lease(id))
        .await?
        .map(|value| Lease::decode(&value))
        .transpose()
}

/// When a claim of message `id` is made: by `owner`, at `now_ms` by its clock, until
/// `expiry_ms`, taking over an expired lease only once `skew_ms` more have passed.
#[derive(Clone, Debug)]
pub(crate) struct ClaimTerms {
    /// The claimer.
    pub(crate) owner: String,
    /// Its clock now (Unix milliseconds).
    pub(crate) now_ms: u64,
    /// The end of the lease it takes.
    pub(crate) expiry_ms: u64,
    /// How far ahead the clock of the previous holder may be behind this one's: its lease is
    /// only taken over once it ended this long ago.
    pub(crate) skew_ms: u64,
}

/// Takes the lease of message `id` on `terms`, unless someone holds it, or held it until less
/// than the skew ago; returns the new lease, with the next token, and whether it was taken
/// over from a holder whose lease ran out (a scheduler that died or paused mid-delivery).
pub(crate) async fn claim(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    terms: &ClaimTerms,
) -> Result<Option<(Lease, bool)>, StoreError> {
    let previous = read(tx, keys, id).await?;
    // The holder's clock may be behind: by its own count it may still be sending.
    if previous
        .as_ref()
        .is_some_and(|l| l.expiry_ms.saturating_add(terms.skew_ms) > terms.now_ms)
    {
        return Ok(None);
    }
    // A released lease has expiry 0; any other expired one was abandoned.
    let takeover = previous.as_ref().is_some_and(|l| l.expiry_ms != 0);
    let lease = Lease {
        owner: terms.owner.clone(),
        token: previous.map_or(1, |l| l.token.saturating_add(1)),
        expiry_ms: terms.expiry_ms,
    };
    tx.set(&keys.lease(id), &lease.encode())?;
    Ok(Some((lease, takeover)))
}

/// Takes the first lease of message `id`, being written in `tx`, for `owner` until
/// `expiry_ms`: nobody can hold a message that did not exist, so nothing is read.
pub(crate) fn claim_new(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    owner: &str,
    expiry_ms: u64,
) -> Result<Lease, StoreError> {
    let lease = Lease {
        owner: owner.to_owned(),
        token: 1,
        expiry_ms,
    };
    tx.set(&keys.lease(id), &lease.encode())?;
    Ok(lease)
}

/// Whether `token` still holds message `id`'s lease at `until_ms`, by the stored record: the
/// token is the lease's and the lease has not ended by then. A lease that ran out no longer
/// counts even if nobody took it over yet: another scheduler may be about to.
pub(crate) async fn holds(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    token: u64,
    until_ms: u64,
) -> Result<bool, StoreError> {
    Ok(read(tx, keys, id)
        .await?
        .is_some_and(|l| l.token == token && l.expiry_ms > until_ms))
}

/// Extends the lease of message `id` to `expiry_ms` if `token` still holds it; a released
/// lease (its attempt committed) stays released.
pub(crate) async fn renew(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    token: u64,
    expiry_ms: u64,
) -> Result<bool, StoreError> {
    match read(tx, keys, id).await? {
        Some(mut lease) if lease.token == token && lease.expiry_ms != 0 => {
            lease.expiry_ms = expiry_ms;
            tx.set(&keys.lease(id), &lease.encode())?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Ends the lease held under `token` (the caller checked it), keeping the token so the next
/// claim gets a larger one.
pub(crate) fn release(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    lease: &Lease,
) -> Result<(), StoreError> {
    let released = Lease {
        expiry_ms: 0,
        ..lease.clone()
    };
    tx.set(&keys.lease(id), &released.encode())
}

/// Removes the lease of a message that left the queue.
pub(crate) fn remove(tx: &Transaction, keys: &Keys, id: &MessageId) -> Result<(), StoreError> {
    tx.clear(&keys.lease(id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn leases_round_trip_and_refuse_garbage() {
        let lease = Lease {
            owner: "a".into(),
            token: 7,
            expiry_ms: 9,
        };
        assert_eq!(Lease::decode(&lease.encode()).unwrap(), lease);
        assert!(Lease::decode(b"junk").is_err());
    }
}
