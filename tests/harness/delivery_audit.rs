//! What a user checks after faults: every message the cluster acknowledged reached the
//! sink; a message delivered twice is rare and bounded; and no scheduler delivered once its
//! lease had expired.
//!
//! The bound on duplicates. A message is delivered twice only when a scheduler delivered it
//! and a fault kept it from recording that, so that another scheduler took it over once the
//! lease ran out. So, per fault:
//! - it is at most the *backlog*: messages whose final `.` had been sent to the cluster
//!   (answered or not) and that the sink had not received whole when the fault struck;
//! - a scheduler killed or stopped delivers nothing after the fault strikes (a stopped one
//!   must drop, when it runs again, every attempt whose lease has expired): only the
//!   deliveries under way then, at most the sink remote's `concurrency`, can be lost;
//! - a scheduler cut off the store keeps delivering what it had claimed until its lease ends
//!   and records none of it: at most `concurrency` deliveries at once for one lease, each
//!   lasting at least the sink's delay before answering DATA;
//! - a fault that strikes no scheduler (clients cut off, a directory-proxy gone) causes none.
//!
//! The test gives the second bound when it records the fault ([`Fault::now`]); the smaller of
//! the two counts.
//!
//! Which scheduler delivered a message is the EHLO name the sink recorded: each scheduler has
//! its own `server.hostname`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::load_generator::end_marker;
use crate::{Delivery, LoadReport, SmtpSink};

/// Slack on arrival times, both ways: the sink's file is written just after the final `.`
/// arrives, and its time comes from the kernel's coarse clock, up to a tick (a few
/// milliseconds) behind the clock the test reads when it injects and undoes a fault.
const ARRIVAL_SLACK: Duration = Duration::from_millis(250);
/// How often the sink is read while waiting.
const POLL: Duration = Duration::from_millis(250);

/// A fault a test injected into the cluster.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What was done, for messages.
    pub what: String,
    /// The EHLO name of the scheduler struck, when it struck one.
    pub scheduler: Option<String>,
    /// When it struck.
    pub started: SystemTime,
    /// When it was undone (SIGCONT, the store given back); `None` for a kill, or a fault that
    /// was not undone.
    pub ended: Option<SystemTime>,
    /// Whether the scheduler was kept from renewing its leases (stopped, or cut off the
    /// store) while it lived: it must then deliver nothing once a lease has passed.
    pub fenced: bool,
    /// Messages sent to the cluster and not yet received whole when it struck.
    pub backlog: usize,
    /// The most duplicates it may cause: the backlog, or less.
    pub bound: usize,
}

impl Fault {
    /// A fault that strikes now, with the backlog `load` and `sink` show, which can cause at
    /// most `most` duplicates whatever the backlog (see the module's documentation).
    pub fn now(
        what: &str,
        scheduler: Option<String>,
        most: usize,
        load: &LoadReport,
        sink: &SmtpSink,
    ) -> Fault {
        let backlog = backlog(load, &complete_deliveries(sink));
        let fault = Fault {
            what: what.to_owned(),
            scheduler,
            started: SystemTime::now(),
            ended: None,
            fenced: false,
            backlog,
            bound: backlog.min(most),
        };
        eprintln!(
            "fault: {} at {:?} with {} message(s) in the cluster ({} acknowledged so far), up to {} duplicate(s)",
            fault.what,
            fault.started,
            fault.backlog,
            load.accepted.len(),
            fault.bound
        );
        fault
    }
}

/// The messages the sink received whole (those of the load: with a Message-ID and the end
/// marker), in order of arrival.
pub fn complete_deliveries(sink: &SmtpSink) -> Vec<Delivery> {
    sink.deliveries()
        .into_iter()
        .filter(|d| {
            d.message_id
                .as_deref()
                .is_some_and(|id| d.text.contains(&end_marker(id)))
        })
        .collect()
}

/// Messages whose final `.` was sent and that `deliveries` do not hold.
pub fn backlog(load: &LoadReport, deliveries: &[Delivery]) -> usize {
    let delivered: BTreeSet<&str> = deliveries
        .iter()
        .filter_map(|d| d.message_id.as_deref())
        .collect();
    load.data_sent.saturating_sub(delivered.len())
}

/// Waits until the sink has received every message of `acknowledged` whole; panics after
/// `patience` naming those missing, with `context()`.
pub fn wait_delivered(
    sink: &SmtpSink,
    acknowledged: &[String],
    patience: Duration,
    context: impl Fn() -> String,
) -> Vec<Delivery> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let deliveries = complete_deliveries(sink);
        let delivered: BTreeSet<&str> = deliveries
            .iter()
            .filter_map(|d| d.message_id.as_deref())
            .collect();
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !delivered.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            return deliveries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} acknowledged message(s) never reached the sink within {patience:?}, e.g. {:?}\n{}",
            missing.len(),
            acknowledged.len(),
            &missing[..missing.len().min(10)],
            context()
        );
        std::thread::sleep(POLL);
    }
}

/// What [`check`] found.
#[derive(Debug)]
pub struct Findings {
    /// Deliveries beyond the first of each message.
    pub duplicates: usize,
    /// The most the faults allowed.
    pub duplicate_bound: usize,
    /// Messages delivered, per scheduler EHLO name.
    pub by_scheduler: BTreeMap<String, usize>,
}

/// Checks `deliveries` against what the load was told and the faults: no 5xx, every
/// acknowledged message delivered, duplicates within the bound, and nothing delivered by a
/// fenced scheduler once its lease (`lease`) had expired, nor, after it came back, a
/// message another scheduler had already delivered. Panics with `context()` otherwise.
pub fn check(
    deliveries: &[Delivery],
    load: &LoadReport,
    faults: &[Fault],
    lease: Duration,
    context: impl Fn() -> String,
) -> Findings {
    assert!(
        load.refused.is_empty(),
        "a client got a permanent error while the cluster was faulted: {:?}\n{}",
        &load.refused[..load.refused.len().min(10)],
        context()
    );
    let mut first: BTreeMap<&str, &Delivery> = BTreeMap::new();
    let mut by_scheduler: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for delivery in deliveries {
        let Some(id) = delivery.message_id.as_deref() else {
            continue;
        };
        *by_scheduler.entry(delivery.helo.clone()).or_default() += 1;
        match first.get(id) {
            None => {
                first.insert(id, delivery);
            }
            Some(earlier) => duplicates.push((id, *earlier, delivery)),
        }
    }
    for (id, _) in &load.accepted {
        assert!(
            first.contains_key(id.as_str()),
            "acknowledged message {id} was never delivered\n{}",
            context()
        );
    }
    let duplicate_bound: usize = faults.iter().map(|f| f.bound).sum();
    assert!(
        duplicates.len() <= duplicate_bound,
        "{} duplicate deliveries, more than the {duplicate_bound} the faults allow: {:?}\n{}",
        duplicates.len(),
        duplicates
            .iter()
            .map(|(id, earlier, d)| format!("{id}: {} then {}", earlier.helo, d.helo))
            .collect::<Vec<_>>(),
        context()
    );
    for fault in faults.iter().filter(|f| f.fenced) {
        let Some(scheduler) = fault.scheduler.as_deref() else {
            continue;
        };
        let expired = fault.started + lease + ARRIVAL_SLACK;
        let ended = fault
            .ended
            .map_or(SystemTime::UNIX_EPOCH + Duration::MAX / 2, |ended| {
                ended - ARRIVAL_SLACK
            });
        let late: Vec<String> = deliveries
            .iter()
            .filter(|d| d.helo == scheduler && d.arrived >= expired && d.arrived < ended)
            .map(|d| format!("{:?} at {:?}", d.message_id, d.arrived))
            .collect();
        assert!(
            late.is_empty(),
            "{scheduler} delivered after its lease expired ({}; lease {lease:?}, from {expired:?} until {ended:?}): {late:?}\n{}",
            fault.what,
            context()
        );
        // Taken over while it was away, and delivered again by it once back: what it still
        // held of its expired leases. (A message another scheduler delivered before or
        // after, and failed to record, may be taken over by this one legitimately.)
        let away_until = fault
            .ended
            .unwrap_or(SystemTime::UNIX_EPOCH + Duration::MAX / 2);
        let stale: Vec<String> = duplicates
            .iter()
            .filter(|(_, earlier, d)| {
                d.helo == scheduler
                    && earlier.helo != scheduler
                    && earlier.arrived >= fault.started
                    && earlier.arrived < away_until
                    && d.arrived >= expired
            })
            .map(|(id, earlier, d)| {
                format!(
                    "{id}: {} at {:?}, {scheduler} at {:?}",
                    earlier.helo, earlier.arrived, d.arrived
                )
            })
            .collect();
        assert!(
            stale.is_empty(),
            "{scheduler} came back from `{}` and delivered messages another scheduler had taken over: {stale:?}\n{}",
            fault.what,
            context()
        );
    }
    Findings {
        duplicates: duplicates.len(),
        duplicate_bound,
        by_scheduler,
    }
}
