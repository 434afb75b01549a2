//! Queue quotas (`queue.quota.<id>`): checked and charged in the enqueue transaction, released
//! in the transaction that removes the message.
//!
//! Each quota keeps, per group, a message count and a byte count under its own keys. Enqueue
//! *reads* the counts it checks, so two enqueues charging the same group conflict and one of
//! them retries: a quota is never exceeded, on one pod or many. That is also the cost — all
//! enqueues of one group (of the whole queue, for a quota without `key`) serialize on its
//! counters — so a quota with a `key` scales better than one without. What was charged is
//! recorded with the message, so that its removal releases exactly that, whatever the
//! configuration says by then. Notices (DSNs) are not charged: a full queue must still be able
//! to tell senders what happened.

use std::collections::{BTreeMap, BTreeSet};

use ferrymail_config::model::queue_limits::{Quota, QuotaKey};
use ferrymail_rpc::queue::Envelope;
use ferrymail_store::{StoreError, Transaction, decode_counter, tuple};

use crate::model::condition;
use crate::model::keys::Keys;
use crate::model::queue_id::MessageId;

/// A quota would be exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue.quota.{quota} is full for {group:?}")]
pub(crate) struct QuotaExceeded {
    /// The quota's id.
    pub quota: String,
    /// The group that is full ("" for a quota without key).
    pub group: String,
}

/// One group a new message is charged to, with the quota's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Charge {
    quota: String,
    group: String,
    messages: Option<u64>,
    bytes: Option<u64>,
}

/// The groups of every quota that `envelope` is charged to.
pub(crate) fn charges(quotas: &BTreeMap<String, Quota>, envelope: &Envelope) -> Vec<Charge> {
    let mut charges = Vec::new();
    for (id, quota) in quotas {
        for group in groups(quota, envelope) {
            charges.push(Charge {
                quota: id.clone(),
                group,
                messages: quota.messages,
                bytes: quota.size,
            });
        }
    }
    charges
}

/// The group names of `envelope` under the quota's `key`: one, or one per recipient when the
/// key names recipients (each recipient's group counted once); only recipients meeting its
/// `match` count, and without a recipient key the message needs one such recipient.
fn groups(quota: &Quota, envelope: &Envelope) -> BTreeSet<String> {
    let key = &quota.key;
    let per_recipient = key
        .iter()
        .any(|k| matches!(k, QuotaKey::Rcpt | QuotaKey::RcptDomain));
    let name = |rcpt: &str| -> String {
        key.iter()
            .map(|k| match k {
                QuotaKey::Sender => envelope.sender.to_lowercase(),
                QuotaKey::SenderDomain => domain(&envelope.sender),
                QuotaKey::Rcpt => rcpt.to_lowercase(),
                QuotaKey::RcptDomain => domain(rcpt),
            })
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let recipients = envelope.recipients.iter().map(|r| r.address.as_str());
    if per_recipient {
        recipients
            .filter(|rcpt| {
                condition::holds_for_any(&quota.conditions, envelope, [*rcpt].into_iter())
            })
            .map(name)
            .collect()
    } else if condition::holds_for_any(&quota.conditions, envelope, recipients) {
        BTreeSet::from([name("")])
    } else {
        BTreeSet::new()
    }
}

fn domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('.').to_lowercase())
        .unwrap_or_default()
}

/// Checks every charge against its quota and charges message `id` of `size` bytes, in `tx`.
pub(crate) async fn charge(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    size: u64,
    charges: &[Charge],
) -> Result<(), StoreError> {
    if charges.is_empty() {
        return Ok(());
    }
    let delta = i64::try_from(size).unwrap_or(i64::MAX);
    for charge in charges {
        let (messages_key, bytes_key) = keys.quota_usage(&charge.quota, &charge.group);
        let messages = count(tx, &messages_key).await?;
        let bytes = count(tx, &bytes_key).await?;
        let full = charge.messages.is_some_and(|max| messages >= max)
            || charge
                .bytes
                .is_some_and(|max| bytes.saturating_add(size) > max);
        if full {
            return Err(StoreError::abort(QuotaExceeded {
                quota: charge.quota.clone(),
                group: charge.group.clone(),
            }));
        }
        tx.atomic_add(&messages_key, 1)?;
        tx.atomic_add(&bytes_key, delta)?;
    }
    let groups: Vec<(&str, &str)> = charges
        .iter()
        .map(|c| (c.quota.as_str(), c.group.as_str()))
        .collect();
    tx.set(&keys.quota_charges(id), &tuple::pack(&(size, groups)))
}

/// Releases what message `id` was charged, in the transaction removing it.
pub(crate) async fn release(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
) -> Result<(), StoreError> {
    let charges_key = keys.quota_charges(id);
    let Some(value) = tx.get(&charges_key).await? else {
        return Ok(());
    };
    let (size, groups) = tuple::unpack::<(u64, Vec<(String, String)>)>(&value)
        .map_err(|e| StoreError::Corrupt(format!("quota charges of {id}: {e}")))?;
    let delta = i64::try_from(size).unwrap_or(i64::MAX);
    for (quota, group) in groups {
        let (messages_key, bytes_key) = keys.quota_usage(&quota, &group);
        tx.atomic_add(&messages_key, -1)?;
        tx.atomic_add(&bytes_key, -delta)?;
    }
    tx.clear(&charges_key)
}

/// A counter's value; absent is 0, a negative one (never written so) counts as 0.
async fn count(tx: &Transaction, key: &[u8]) -> Result<u64, StoreError> {
    let value = tx.get(key).await?;
    Ok(value.map_or(0, |v| u64::try_from(decode_counter(&v)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use ferrymail_rpc::queue::Recipient;

    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            sender: "Alice@Example.ORG".into(),
            recipients: vec![
                Recipient::new("bob@a.example"),
                Recipient::new("carol@a.example"),
                Recipient::new("Bob@A.example"),
            ],
            ..Envelope::default()
        }
    }

    fn keyed(key: &[QuotaKey]) -> Quota {
        Quota {
            conditions: Vec::new(),
            messages: Some(1),
            size: None,
            key: key.to_vec(),
        }
    }

    #[test]
    fn groups_follow_the_key() {
        let e = envelope();
        assert_eq!(groups(&keyed(&[]), &e), BTreeSet::from(["".to_owned()]));
        assert_eq!(
            groups(&keyed(&[QuotaKey::SenderDomain]), &e),
            BTreeSet::from(["example.org".to_owned()])
        );
        assert_eq!(
            groups(&keyed(&[QuotaKey::RcptDomain]), &e),
            BTreeSet::from(["a.example".to_owned()]),
            "one charge per group, however many recipients share it"
        );
        assert_eq!(
            groups(&keyed(&[QuotaKey::Sender, QuotaKey::Rcpt]), &e),
            BTreeSet::from([
                "alice@example.org\u{0}bob@a.example".to_owned(),
                "alice@example.org\u{0}carol@a.example".to_owned()
            ])
        );
        let bounce = Envelope {
            sender: String::new(),
            ..envelope()
        };
        assert_eq!(
            groups(&keyed(&[QuotaKey::SenderDomain]), &bounce),
            BTreeSet::from(["".to_owned()])
        );
    }
}
