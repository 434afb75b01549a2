//! `queue.quota.<id>` and `queue.throttle.<id>`: how much may wait in the queue, and how
//! fast and how many at once it may be delivered.

use super::lists::CompiledList;
use super::references::{Known, NEXT_HOP_VARIABLES, check_list};
use crate::keys;
use crate::reader::TableReader;
use crate::value::ByteSize;
use crate::value::rules::{ListRef, Match, Variable};

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{QuotaKey, Rate, ThrottleKey, parse_rate};

/// A `match` condition with the values of the list it names, so that testing it needs
/// neither the rest of the configuration nor the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCondition {
    /// What is tested.
    pub variable: Variable,
    /// The list, as the configuration names it.
    pub list: ListRef,
    /// The list's values.
    pub values: CompiledList,
}

/// `queue.quota.<id>`: a limit on what waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// `match`: only messages meeting every condition count (all when empty).
    pub conditions: Vec<ListCondition>,
    /// Most messages per group.
    pub messages: Option<u64>,
    /// Most bytes per group.
    pub size: Option<u64>,
    /// The grouping; empty for one group over the whole queue.
    pub key: Vec<QuotaKey>,
}

/// `queue.throttle.<id>`: a limit on deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// `match`: only deliveries meeting every condition count (all when empty).
    pub conditions: Vec<ListCondition>,
    /// Most deliveries under way at once per group, across every scheduler.
    pub concurrency: Option<u32>,
    /// Most deliveries started per period per group, across every scheduler.
    pub rate: Option<Rate>,
    /// The grouping; empty for one group over all deliveries.
    pub key: Vec<ThrottleKey>,
}

/// `None` when invalid, `Some(None)` when disabled.
pub(crate) fn read_quota(t: &TableReader<'_>, known: &Known<'_>) -> Option<Option<Quota>> {
    let conditions = read_match(t, known, &keys::QUEUE_QUOTA_MATCH);
    let messages = t.get(&keys::QUEUE_QUOTA_MESSAGES);
    let size: Option<ByteSize> = t.get(&keys::QUEUE_QUOTA_SIZE);
    let key = t.get(&keys::QUEUE_QUOTA_KEY);
    let enable = t.get(&keys::QUEUE_QUOTA_ENABLE);
    if messages.is_none() && size.is_none() {
        t.report("messages", "a quota needs `messages`, `size` or both");
    }
    if messages == Some(0) {
        t.report("messages", "must be more than zero");
        return None;
    }
    let quota = Quota {
        conditions: conditions?,
        messages,
        size: size.map(|s| s.0),
        key: key?,
    };
    Some(
        enable?
            .then_some(quota)
            .filter(|q| q.messages.is_some() || q.size.is_some()),
    )
}

/// `None` when invalid, `Some(None)` when disabled.
pub(crate) fn read_throttle(t: &TableReader<'_>, known: &Known<'_>) -> Option<Option<Throttle>> {
    let conditions = read_match(t, known, &keys::QUEUE_THROTTLE_MATCH);
    let concurrency = t.get(&keys::QUEUE_THROTTLE_CONCURRENCY);
    let rate = t.get(&keys::QUEUE_THROTTLE_RATE);
    let key = t.get(&keys::QUEUE_THROTTLE_KEY);
    let enable = t.get(&keys::QUEUE_THROTTLE_ENABLE);
    if concurrency.is_none() && rate.is_none() {
        t.report(
            "concurrency",
            "a throttle needs `concurrency`, `rate` or both",
        );
    }
    if concurrency == Some(0) {
        t.report("concurrency", "must be more than zero");
        return None;
    }
    let throttle = Throttle {
        conditions: conditions?,
        concurrency,
        rate,
        key: key?,
    };
    Some(
        enable?
            .then_some(throttle)
            .filter(|t| t.concurrency.is_some() || t.rate.is_some()),
    )
}

/// The `match` of a quota or throttle, its lists resolved; `None` when invalid.
fn read_match(
    t: &TableReader<'_>,
    known: &Known<'_>,
    key: &crate::key::Key<Match>,
) -> Option<Vec<ListCondition>> {
    let Some(conditions) = t.get(key) else {
        // Refused (already reported), or absent: no condition.
        return (!t.contains(key.name())).then(Vec::new);
    };
    match resolve_match(known, &conditions) {
        Ok(resolved) => Some(resolved),
        Err(problems) => {
            for problem in problems {
                t.report(key.name(), problem);
            }
            None
        }
    }
}

/// The conditions of a quota's or throttle's `match` with their lists' values, or everything
/// wrong with them. Only message variables can be tested there, and only lists of the
/// configuration: `remote/<id>` would need a lookup over the network for every message.
fn resolve_match(known: &Known<'_>, conditions: &Match) -> Result<Vec<ListCondition>, Vec<String>> {
    let mut problems = Vec::new();
    let mut resolved = Vec::new();
    for condition in &conditions.0 {
        if !NEXT_HOP_VARIABLES.contains(&condition.variable) {
            problems.push(format!(
                "variable {:?} is not known to the queue; use rcpt, rcpt-domain, sender or sender-domain",
                condition.variable.as_str()
            ));
        }
        let ListRef::Directory { directory, list } = &condition.list else {
            problems.push(format!(
                "in-list {}: remote lists need a lookup over the network, which the queue does not \
                 make for every message; use a list of a directory",
                condition.list
            ));
            continue;
        };
        if let Some(problem) = check_list(known, &condition.list) {
            problems.push(problem);
            continue;
        }
        if let Some(values) = known
            .directories
            .get(directory)
            .and_then(|d| d.lists.get(list))
        {
            resolved.push(ListCondition {
                variable: condition.variable,
                list: condition.list.clone(),
                values: CompiledList::new(&values.values),
            });
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}
