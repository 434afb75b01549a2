//! `queue.*`: routing, retry schedule, quotas and throttles.

use std::collections::BTreeMap;
use std::time::Duration;

use super::dead_destinations::{self, DeadDestinations};
use super::inbound_limits::{InboundLimiter, read_limiter};
use super::outbound::Outbound;
use super::queue_limits::{Quota, Throttle, read_quota, read_throttle};
use super::references::{Known, check_next_hop};
use super::webhook::{self, EventOutbox};
use crate::keys;
use crate::reader::TableReader;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{Hop, NextHop};

/// `queue.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// `queue.outbound.next-hop`.
    pub next_hop: NextHop,
    /// `queue.outbound.*`: how MX delivery connects.
    pub outbound: Outbound,
    /// `queue.outbound.dead.*`: when a destination is marked dead, and for how long.
    pub dead: DeadDestinations,
    /// `queue.schedule.retry`.
    pub retry: Vec<Duration>,
    /// `queue.schedule.notify`.
    pub notify: Vec<Duration>,
    /// `queue.schedule.expire`.
    pub expire: Duration,
    /// `queue.lease.duration`.
    pub lease: Duration,
    /// `queue.lease.max-clock-skew`.
    pub max_clock_skew: Duration,
    /// `queue.quota.<id>`, the enabled ones.
    pub quotas: BTreeMap<String, Quota>,
    /// `queue.throttle.<id>`, the enabled ones.
    pub throttles: BTreeMap<String, Throttle>,
    /// `queue.events.*`: the outbox of delivery events.
    pub events: EventOutbox,
    /// `queue.limiter.inbound.<id>`, the enabled ones.
    pub inbound_limiters: BTreeMap<String, InboundLimiter>,
}

pub(crate) fn read(root: &TableReader<'_>, known: &Known<'_>) -> Option<Queue> {
    let t = root.table("queue");
    let outbound = t.table("outbound");
    let next_hop = outbound.get(&keys::QUEUE_NEXT_HOP);
    let mx_delivery = super::outbound::read(&outbound);
    let dead = dead_destinations::read(&outbound);
    for problem in next_hop.iter().flat_map(|hop| check_next_hop(known, hop)) {
        outbound.report("next-hop", problem);
    }
    let schedule = t.table("schedule");
    let retry: Option<Vec<Duration>> = schedule.get(&keys::QUEUE_SCHEDULE_RETRY);
    let notify = schedule.get(&keys::QUEUE_SCHEDULE_NOTIFY);
    let expire = schedule.get(&keys::QUEUE_SCHEDULE_EXPIRE);
    if let Some(retry) = &retry {
        if retry.is_empty() {
            schedule.report("retry", "needs at least one interval");
        } else if retry.iter().any(Duration::is_zero) {
            schedule.report("retry", "intervals must be longer than zero");
        }
    }
    let lease_table = t.table("lease");
    let lease = read_lease(&lease_table);
    let max_clock_skew = read_clock_skew(&lease_table, lease);
    let (quotas, quotas_valid) = enabled(&t.table("quota"), |q| read_quota(q, known));
    let (throttles, throttles_valid) = enabled(&t.table("throttle"), |q| read_throttle(q, known));
    let events = webhook::read_outbox(&t);
    let (inbound_limiters, limiters_valid) = enabled(&t.table("limiter").table("inbound"), |l| {
        read_limiter(l, known)
    });
    (quotas_valid && throttles_valid && limiters_valid).then_some(())?;
    Some(Queue {
        next_hop: next_hop?,
        outbound: mx_delivery?,
        dead: dead?,
        retry: retry?,
        notify: notify?,
        expire: expire?,
        lease: lease?,
        max_clock_skew: max_clock_skew?,
        quotas,
        throttles,
        events: events?,
        inbound_limiters,
    })
}

/// The shortest `queue.lease.duration`: a renewal, a sixth of it, must still fit a store
/// round trip.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// `queue.lease.duration`, at least [`MIN_LEASE`].
fn read_lease(table: &TableReader<'_>) -> Option<Duration> {
    let lease = table.get(&keys::QUEUE_LEASE_DURATION)?;
    if lease < MIN_LEASE {
        table.report("duration", format!("must be at least {MIN_LEASE:?}"));
        return None;
    }
    Some(lease)
}

/// `queue.lease.max-clock-skew`, refused when it would eat the lease it protects: shorter
/// than a third of it, so that a lease less the margins on both of its ends still leaves
/// time to deliver and renew.
fn read_clock_skew(table: &TableReader<'_>, lease: Option<Duration>) -> Option<Duration> {
    let skew = table.get(&keys::QUEUE_LEASE_MAX_CLOCK_SKEW)?;
    let bound = lease? / 3;
    if skew >= bound {
        table.report(
            "max-clock-skew",
            format!("must be shorter than {bound:?} (a third of queue.lease.duration)"),
        );
        return None;
    }
    Some(skew)
}

/// The enabled entries of a `<id>` table; `false` when one of them is invalid.
fn enabled<T>(
    table: &TableReader<'_>,
    read: impl Fn(&TableReader<'_>) -> Option<Option<T>>,
) -> (BTreeMap<String, T>, bool) {
    let mut valid = true;
    let mut entries = BTreeMap::new();
    for (id, entry) in table.entries() {
        match read(&entry) {
            Some(Some(value)) => {
                entries.insert(id, value);
            }
            Some(None) => {}
            None => valid = false,
        }
    }
    (entries, valid)
}
