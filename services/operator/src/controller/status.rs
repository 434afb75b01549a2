//! The status a resource should have after a pass.

use crate::resources::{Condition, ConditionStatus, ResourceStatus};

/// Condition types.
pub(crate) const RENDERED: &str = "Rendered";
pub(crate) const READY: &str = "Ready";

/// What a pass concluded about one resource.
pub(crate) struct Verdict<'a> {
    /// Why it could not be rendered, if it could not.
    pub(crate) problem: Option<&'a str>,
    /// Whether its last good rendering was kept in its place.
    pub(crate) retained: bool,
    /// The ConfigMap it is rendered into.
    pub(crate) config_map: &'a str,
}

/// The status to write, keeping transition times of unchanged conditions and any
/// condition the rendering does not own (`Reachable`, written from the directory-proxy's
/// probes by `reachability`).
pub(crate) fn desired(
    current: Option<&ResourceStatus>,
    generation: Option<i64>,
    verdict: &Verdict<'_>,
    now: &str,
) -> ResourceStatus {
    let (rendered, ready) = match verdict.problem {
        None => (
            (
                ConditionStatus::True,
                "Rendered",
                format!("rendered into ConfigMap {}", verdict.config_map),
            ),
            (
                ConditionStatus::True,
                "Applied",
                "the pods' configuration includes this resource".to_string(),
            ),
        ),
        Some(problem) => (
            (ConditionStatus::False, "Invalid", problem.to_string()),
            (
                ConditionStatus::False,
                "Invalid",
                if verdict.retained {
                    "this version is not applied; the last good version stays in force".into()
                } else {
                    "not applied: fix the resource".into()
                },
            ),
        ),
    };
    let mut conditions: Vec<Condition> = current
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != RENDERED && c.type_ != READY)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for (type_, (status, reason, message)) in [(RENDERED, rendered), (READY, ready)] {
        let previous = current.and_then(|s| s.condition(type_));
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => now.to_string(),
        };
        conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: generation,
        });
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    ResourceStatus {
        observed_generation: generation,
        conditions,
    }
}
