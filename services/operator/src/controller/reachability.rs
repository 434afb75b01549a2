//! The `Reachable` condition of RemoteHosts, from what the directory-proxy's prober found.
//!
//! The operator asks the directory-proxy (`RemoteStates` over gRPC, at
//! `cluster.directory.endpoint`) and patches the condition of each RemoteHost whose name is
//! a probed remote id (a RemoteHost renders into `remote.<its name>`):
//! - `True`, reason `Answered`: the host answered the last probe or lookup;
//! - `False`, reason `Unreachable`: it did not; the message says why;
//! - `Unknown`, reason `NotProbed`: the directory-proxy has no finding for it (not in the
//!   applied configuration yet, or not probed yet);
//! - `Unknown`, reason `DirectoryProxyUnavailable`: the directory-proxy could not be asked.
//!   A finding the operator can no longer confirm is not left standing as `True`.
//!
//! Ids the directory-proxy reports that name no RemoteHost (remotes written by hand in the
//! main configuration) are ignored. Only the `Reachable` condition changes: the others are
//! written back as read, and a status is patched only when the condition changed, so a
//! steady state writes nothing. The probe time is not written: it changes on every probe,
//! and each change would be a write to the API server.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrymail_rpc::directory::{DirectoryService, Reachability, RemoteState};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Context;
use crate::OperatorError;
use crate::resources::{Condition, ConditionStatus, RemoteHost};

/// The condition type.
pub const REACHABLE: &str = "Reachable";

/// Longest wait for the directory-proxy's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest condition message written.
const MAX_MESSAGE: usize = 1000;

/// What the directory-proxy said, or why it could not be asked.
enum Findings {
    /// Findings by remote id.
    Known(BTreeMap<String, RemoteState>),
    /// The directory-proxy could not be asked.
    Unavailable(String),
}

async fn ask(directory: &dyn DirectoryService) -> Findings {
    match tokio::time::timeout(ASK_TIMEOUT, directory.remote_states()).await {
        Ok(Ok(states)) => {
            Findings::Known(states.into_iter().map(|s| (s.remote.clone(), s)).collect())
        }
        Ok(Err(error)) => Findings::Unavailable(error.to_string()),
        Err(_) => Findings::Unavailable(format!("no answer within {ASK_TIMEOUT:?}")),
    }
}

/// The condition's status, reason and message for the RemoteHost `name`.
fn judge(findings: &Findings, name: &str) -> (ConditionStatus, &'static str, String) {
    match findings {
        Findings::Unavailable(error) => (
            ConditionStatus::Unknown,
            "DirectoryProxyUnavailable",
            format!("cannot ask the directory-proxy: {error}"),
        ),
        Findings::Known(states) => match states.get(name).map(|s| &s.reachability) {
            Some(Reachability::Reachable) => (
                ConditionStatus::True,
                "Answered",
                "the host answered the directory-proxy's last probe or lookup".into(),
            ),
            Some(Reachability::Unreachable { reason }) => {
                (ConditionStatus::False, "Unreachable", reason.clone())
            }
            None => (
                ConditionStatus::Unknown,
                "NotProbed",
                "the directory-proxy has not probed this host (it is not in the applied configuration yet, or its first probe is pending)".into(),
            ),
        },
    }
}

/// The conditions `resource` should have: its others as read, `Reachable` as judged, in type
/// order. `lastTransitionTime` moves only when the status does.
fn desired_conditions(resource: &RemoteHost, findings: &Findings, now: &str) -> Vec<Condition> {
    let current = resource.status.as_ref();
    let previous = current.and_then(|s| s.condition(REACHABLE));
    let (status, reason, message) = judge(findings, &resource.name_any());
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.to_string(),
    };
    let mut conditions: Vec<Condition> = current
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != REACHABLE)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.push(Condition {
        type_: REACHABLE.to_string(),
        status,
        reason: reason.to_string(),
        message: truncate(&message, MAX_MESSAGE),
        last_transition_time,
        observed_generation: resource.metadata.generation,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Asks `directory` what it found and patches the `Reachable` condition of every live
/// RemoteHost whose condition changed. Returns how many were patched.
///
/// The calls: list RemoteHosts, then one status merge patch per changed RemoteHost, in
/// name order. The patch carries the whole `conditions` list (a merge patch replaces a
/// list), with the other conditions as listed; `observedGeneration` is left alone, as it
/// belongs to the rendering.
pub async fn report_reachability(
    ctx: &Context,
    directory: &dyn DirectoryService,
) -> Result<usize, OperatorError> {
    let findings = ask(directory).await;
    if let Findings::Unavailable(error) = &findings {
        tracing::warn!(%error, "cannot ask the directory-proxy which remote hosts are reachable");
    }
    let api: Api<RemoteHost> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let mut remotes = api.list(&ListParams::default()).await?.items;
    remotes.sort_by_key(ResourceExt::name_any);
    let now = (ctx.now)();
    let mut patched = 0;
    for remote in remotes
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
    {
        let conditions = desired_conditions(remote, &findings, &now);
        let current = remote
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        if current == conditions.as_slice() {
            continue;
        }
        api.patch_status(
            &remote.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "conditions": conditions } })),
        )
        .await?;
        patched += 1;
    }
    Ok(patched)
}
