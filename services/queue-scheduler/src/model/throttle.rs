//! Outbound throttles (`queue.throttle.<id>`): how many deliveries of a group may run at once
//! and how many may start per period, counted in the store so that every scheduler sharing
//! the queue obeys one limit.
//!
//! Concurrency is a set of slots, one key per delivery under way, each with an expiry (the
//! delivery lease's), so a scheduler that dies holding one gives it back when it expires.
//! Rates are fixed windows: a count and the window's start. Acquiring reads what it checks,
//! so schedulers acquiring the same group at once conflict and one retries — a limit is
//! never exceeded. A delivery that cannot start now is deferred: its recipients become due
//! again when a slot may be free (a concurrency limit) or when the window ends (a rate),
//! without counting as an attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::model::queue_limits::{Throttle, ThrottleKey};
use ferrymail_rpc::queue::Envelope;
use ferrymail_store::{RangeOptions, Store, StoreError, Transaction, tuple};

use crate::model::condition;
use crate::model::keys::Keys;

/// How long a delivery held back by a concurrency limit waits before it asks again.
pub const CONCURRENCY_WAIT: Duration = Duration::from_secs(2);

/// One group a delivery counts in, with its throttle's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    throttle: String,
    name: String,
    limits: Throttle,
}

/// The groups a delivery of `envelope` to `recipients` through next hop `hop` counts in: those
/// of the throttles whose `match` it meets.
pub(crate) fn groups(
    throttles: &BTreeMap<String, Throttle>,
    envelope: &Envelope,
    recipients: &[&str],
    hop: &str,
) -> Vec<Group> {
    let mut groups = Vec::new();
    for (id, throttle) in throttles {
        let conditions = &throttle.conditions;
        let names: BTreeSet<String> = if throttle.key.contains(&ThrottleKey::RcptDomain) {
            recipients
                .iter()
                .filter(|rcpt| condition::holds_for_any(conditions, envelope, [**rcpt].into_iter()))
                .map(|rcpt| name(&throttle.key, envelope, rcpt, hop))
                .collect()
        } else if condition::holds_for_any(conditions, envelope, recipients.iter().copied()) {
            BTreeSet::from([name(&throttle.key, envelope, "", hop)])
        } else {
            BTreeSet::new()
        };
        groups.extend(names.into_iter().map(|name| Group {
            throttle: id.clone(),
            name,
            limits: throttle.clone(),
        }));
    }
    groups
}

fn name(key: &[ThrottleKey], envelope: &Envelope, rcpt: &str, hop: &str) -> String {
    key.iter()
        .map(|k| match k {
            ThrottleKey::Sender => envelope.sender.to_lowercase(),
            ThrottleKey::SenderDomain => domain(&envelope.sender),
            ThrottleKey::RcptDomain => domain(rcpt),
            ThrottleKey::Remote => hop.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\u{0}")
}

fn domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('.').to_lowercase())
        .unwrap_or_default()
}

/// What acquiring came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead; release the permit when the delivery ends.
    Granted(Permit),
    /// Not now: throttle `throttle` is at its limit until `until_ms`.
    Deferred {
        /// The throttle holding the delivery back.
        throttle: String,
        /// When to ask again.
        until_ms: u64,
    },
}

/// Concurrency slots held by one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Permit {
    slots: Vec<Vec<u8>>,
}

/// Acquires every group for the delivery named `holder` at `now_ms`, its slots lasting until
/// `expiry_ms`: all of them, or none.
pub(crate) async fn acquire(
    store: &Store,
    keys: &Arc<Keys>,
    groups: Vec<Group>,
    holder: String,
    now_ms: u64,
    expiry_ms: u64,
) -> Result<Admission, StoreError> {
    if groups.is_empty() {
        return Ok(Admission::Granted(Permit::default()));
    }
    let plan = Arc::new((groups, holder));
    let keys = keys.clone();
    store
        .transact(move |tx| {
            let (plan, keys) = (plan.clone(), keys.clone());
            Box::pin(async move {
                let (groups, holder) = &*plan;
                // Every group is checked before any is taken: a deferred delivery commits only
                // the clearing of expired slots.
                let mut windows = Vec::with_capacity(groups.len());
                for group in groups {
                    match check(tx, &keys, group, now_ms).await? {
                        Check::Full { until_ms } => {
                            return Ok(Admission::Deferred {
                                throttle: group.throttle.clone(),
                                until_ms,
                            });
                        }
                        Check::Room { window } => windows.push(window),
                    }
                }
                let slot = Slot { holder, expiry_ms };
                let mut slots = Vec::new();
                for (group, window) in groups.iter().zip(windows) {
                    take(tx, &keys, group, &slot, window, now_ms, &mut slots)?;
                }
                Ok(Admission::Granted(Permit { slots }))
            })
        })
        .await
}

/// Whether `group` has room at `now_ms`.
enum Check {
    /// At a limit until `until_ms`.
    Full { until_ms: u64 },
    /// Room; the rate window as read (start, count), when the group has a rate.
    Room { window: Option<(u64, u64)> },
}

/// The slot a delivery takes.
struct Slot<'a> {
    holder: &'a str,
    expiry_ms: u64,
}

/// Reads `group`'s slots and window at `now_ms`, clearing expired slots.
async fn check(
    tx: &Transaction,
    keys: &Keys,
    group: &Group,
    now_ms: u64,
) -> Result<Check, StoreError> {
    if let Some(max) = group.limits.concurrency {
        let page = tx
            .get_range(
                &keys.throttle_slots(&group.throttle, &group.name),
                RangeOptions::default(),
            )
            .await?;
        let mut live = 0u32;
        for pair in &page.pairs {
            if expiry(&pair.value) > now_ms {
                live += 1;
            } else {
                tx.clear(&pair.key)?;
            }
        }
        if live >= max {
            let wait = u64::try_from(CONCURRENCY_WAIT.as_millis()).unwrap_or(u64::MAX);
            return Ok(Check::Full {
                until_ms: now_ms.saturating_add(wait),
            });
        }
    }
    let Some(rate) = group.limits.rate else {
        return Ok(Check::Room { window: None });
    };
    let (start, count) = window(tx, keys, group).await?;
    let end = start.saturating_add(millis(rate.period));
    if now_ms < end && count >= rate.count {
        return Ok(Check::Full { until_ms: end });
    }
    Ok(Check::Room {
        window: Some((start, count)),
    })
}

/// Takes a slot of `group` and a count in its rate window.
fn take(
    tx: &Transaction,
    keys: &Keys,
    group: &Group,
    slot: &Slot<'_>,
    window: Option<(u64, u64)>,
    now_ms: u64,
    slots: &mut Vec<Vec<u8>>,
) -> Result<(), StoreError> {
    if group.limits.concurrency.is_some() {
        let key = keys.throttle_slot(&group.throttle, &group.name, slot.holder);
        tx.set(&key, &tuple::pack(&(slot.expiry_ms,)))?;
        slots.push(key);
    }
    if let (Some(rate), Some((start, count))) = (group.limits.rate, window) {
        let next = if now_ms >= start.saturating_add(millis(rate.period)) {
            (now_ms, 1)
        } else {
            (start, count + 1)
        };
        tx.set(
            &keys.throttle_rate(&group.throttle, &group.name),
            &tuple::pack(&next),
        )?;
    }
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The rate window of `group`: its start and how many deliveries started in it.
async fn window(tx: &Transaction, keys: &Keys, group: &Group) -> Result<(u64, u64), StoreError> {
    let value = tx
        .get(&keys.throttle_rate(&group.throttle, &group.name))
        .await?;
    Ok(value
        .and_then(|v| tuple::unpack::<(u64, u64)>(&v).ok())
        .unwrap_or((0, 0)))
}

fn expiry(value: &[u8]) -> u64 {
    tuple::unpack::<(u64,)>(value).map_or(0, |(e,)| e)
}

/// Gives back the slots of `permit`.
pub(crate) async fn release(store: &Store, permit: Permit) -> Result<(), StoreError> {
    if permit.slots.is_empty() {
        return Ok(());
    }
    let slots = Arc::new(permit.slots);
    store
        .transact(move |tx| {
            let slots = slots.clone();
            Box::pin(async move {
                for slot in slots.iter() {
                    tx.clear(slot)?;
                }
                Ok(())
            })
        })
        .await
}
