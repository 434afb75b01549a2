//! `queue.limiter.inbound.<id>`: how often, and how many at once, clients may connect, greet,
//! start transactions and name recipients, counted across every ingress.

use std::time::Duration;

use super::lists::CompiledList;
use super::references::{Known, check_list};
use crate::keys;
use crate::reader::TableReader;
use crate::value::limiter_match::{LimiterMatch, LimiterTest};
use crate::value::rules::{ListRef, Variable};
use crate::value::stage_rules::Stage;
use crate::value::{LimiterKey, Rate};

/// The shortest `lease`: a renewal, a third of it, must still fit a round trip to the store.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// Stages a limiter can be taken at, earliest first.
const STAGES: [Stage; 4] = [Stage::Connect, Stage::Ehlo, Stage::Mail, Stage::Rcpt];

/// `queue.limiter.inbound.<id>`, enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundLimiter {
    /// `key`: one counter per combination of these values; empty for one counter.
    pub key: Vec<LimiterKey>,
    /// `match`: only sessions and commands meeting every condition are counted.
    pub conditions: Vec<Condition>,
    /// `rate`: most events per period per counter.
    pub rate: Option<Rate>,
    /// `concurrency`: most sessions (or transactions) at once per counter.
    pub concurrency: Option<u32>,
    /// `lease`: how long a concurrency slot outlives the last renewal of a dead holder.
    pub lease: Duration,
    /// The earliest stage at which every variable of `key` and `match` is known: the
    /// limiter is taken there.
    pub stage: Stage,
}

/// A `match` condition with its list's values, so that testing it needs no network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is tested.
    pub variable: Variable,
    /// How.
    pub test: Test,
}

/// What a [`Condition`] asks of its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// In the list.
    InList(ListRef, CompiledList),
    /// Not in the list.
    NotInList(ListRef, CompiledList),
    /// Empty (`true`) or not (`false`).
    IsEmpty(bool),
}

impl Condition {
    /// Whether the condition holds for `value`.
    pub fn holds(&self, value: &str) -> bool {
        match &self.test {
            Test::InList(_, list) => !value.is_empty() && list.contains(value),
            Test::NotInList(_, list) => value.is_empty() || !list.contains(value),
            Test::IsEmpty(empty) => value.is_empty() == *empty,
        }
    }
}

impl LimiterKey {
    /// The session variable this key reads.
    pub fn variable(self) -> Variable {
        match self {
            LimiterKey::RemoteIp | LimiterKey::RemoteNetwork => Variable::RemoteIp,
            LimiterKey::HeloDomain => Variable::HeloDomain,
            LimiterKey::Sender => Variable::Sender,
            LimiterKey::SenderDomain => Variable::SenderDomain,
            LimiterKey::Rcpt => Variable::Rcpt,
            LimiterKey::RcptDomain => Variable::RcptDomain,
            LimiterKey::AuthenticatedAs => Variable::AuthenticatedAs,
            LimiterKey::Listener => Variable::Listener,
        }
    }
}

/// The earliest stage at which every one of `variables` is known.
fn stage_of(variables: impl Iterator<Item = Variable> + Clone) -> Stage {
    STAGES
        .into_iter()
        .find(|stage| variables.clone().all(|v| stage.variables().contains(&v)))
        .unwrap_or(Stage::Rcpt)
}

/// `None` when invalid, `Some(None)` when disabled.
pub(crate) fn read_limiter(
    t: &TableReader<'_>,
    known: &Known<'_>,
) -> Option<Option<InboundLimiter>> {
    let conditions = read_match(t, known);
    let rate = t.get(&keys::QUEUE_LIMITER_INBOUND_RATE);
    let concurrency = t.get(&keys::QUEUE_LIMITER_INBOUND_CONCURRENCY);
    let key: Option<Vec<LimiterKey>> = t.get(&keys::QUEUE_LIMITER_INBOUND_KEY);
    let lease = t.get(&keys::QUEUE_LIMITER_INBOUND_LEASE);
    let enable = t.get(&keys::QUEUE_LIMITER_INBOUND_ENABLE);
    if rate.is_none() && concurrency.is_none() && !t.contains("rate") && !t.contains("concurrency")
    {
        t.report("rate", "a limiter needs `rate`, `concurrency` or both");
        return None;
    }
    if concurrency == Some(0) {
        t.report("concurrency", "must be more than zero");
        return None;
    }
    if lease.is_some_and(|l| l < MIN_LEASE) {
        t.report("lease", format!("must be at least {MIN_LEASE:?}"));
        return None;
    }
    // Absent is fine; present and refused (already reported) is not.
    let refused = |value: bool, name: &str| !value && t.contains(name);
    if refused(rate.is_some(), "rate") || refused(concurrency.is_some(), "concurrency") {
        return None;
    }
    let (key, conditions) = (key?, conditions?);
    let variables = key
        .iter()
        .map(|k| k.variable())
        .chain(conditions.iter().map(|c| c.variable));
    let stage = stage_of(variables);
    let limiter = InboundLimiter {
        key,
        conditions,
        rate,
        concurrency,
        lease: lease?,
        stage,
    };
    Some(enable?.then_some(limiter))
}

/// The `match` of a limiter, its lists resolved; `None` when invalid.
fn read_match(t: &TableReader<'_>, known: &Known<'_>) -> Option<Vec<Condition>> {
    let key = &keys::QUEUE_LIMITER_INBOUND_MATCH;
    let Some(LimiterMatch(conditions)) = t.get(key) else {
        return (!t.contains(key.name())).then(Vec::new);
    };
    let mut problems = Vec::new();
    let mut resolved = Vec::new();
    for condition in conditions {
        let test = match condition.test {
            LimiterTest::IsEmpty(empty) => Test::IsEmpty(empty),
            LimiterTest::InList(list) => match compiled(known, &list) {
                Ok(values) => Test::InList(list, values),
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            },
            LimiterTest::NotInList(list) => match compiled(known, &list) {
                Ok(values) => Test::NotInList(list, values),
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            },
        };
        resolved.push(Condition {
            variable: condition.variable,
            test,
        });
    }
    if problems.is_empty() {
        return Some(resolved);
    }
    for problem in problems {
        t.report(key.name(), problem);
    }
    None
}

/// The values of a directory's list. Remote lists are refused: a limiter is tested at
/// every connection or command, too often for a lookup over the network.
fn compiled(known: &Known<'_>, list: &ListRef) -> Result<CompiledList, String> {
    let ListRef::Directory {
        directory,
        list: name,
    } = list
    else {
        return Err(format!(
            "{list}: remote lists need a lookup over the network for every session; use a \
             list of a directory"
        ));
    };
    if let Some(problem) = check_list(known, list) {
        return Err(problem);
    }
    Ok(known
        .directories
        .get(directory)
        .and_then(|d| d.lists.get(name))
        .map(|l| CompiledList::new(&l.values))
        .unwrap_or_default())
}
