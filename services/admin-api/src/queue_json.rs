//! ferrymail's own JSON form of the queue, shared by `ferrymail queue … --json` (one object
//! per line, as `postqueue -j` prints) and the admin API's own paths (stats, destinations,
//! bulk). Field names are snake_case; times are Unix seconds, `null` when there is none.

use ferrymail_rpc::queue::{
    BulkReport, DestinationScope, Destinations, MessageDetail, MessageSummary, QueueStats,
    RecipientState,
};
use serde_json::{Value, json};

/// One message at a glance.
pub fn summary(m: &MessageSummary) -> Value {
    json!({
        "queue_id": m.queue_id.as_str(),
        "sender": m.sender,
        "recipients": m.recipients,
        "size": m.size,
        "arrival": m.arrival,
        "next_attempt": m.next_attempt,
        "priority": m.priority.get(),
        "held": m.held,
    })
}

/// One message with each recipient's state, as `summary` with a `recipient_states` array.
pub fn detail(d: &MessageDetail) -> Value {
    let mut value = summary(&d.summary);
    let recipients: Vec<Value> = d
        .recipients
        .iter()
        .map(|r| {
            json!({
                "address": r.address,
                "state": state_name(r.state),
                "attempts": r.attempts,
                "next_attempt": r.next_attempt,
                "last_reply": r.last_reply,
            })
        })
        .collect();
    if let Value::Object(fields) = &mut value {
        fields.insert("recipient_states".into(), Value::Array(recipients));
    }
    value
}

/// What a change to one message did: `action` and how many recipients (or whether it
/// changed, for hold and release).
pub fn change(action: &str, queue_id: &str, outcome: Value) -> Value {
    json!({ "action": action, "queue_id": queue_id, "result": outcome })
}

/// What a bulk action did (`cursor` is where to go on, `null` once the queue was examined).
pub fn bulk_report(action: &str, dry_run: bool, r: &BulkReport) -> Value {
    json!({
        "action": action,
        "dry_run": dry_run,
        "examined": r.examined,
        "matched": r.matched,
        "messages_changed": r.messages_changed,
        "recipients_changed": r.recipients_changed,
        "cursor": r.cursor,
    })
}

/// Totals over the queue.
pub fn stats(s: &QueueStats) -> Value {
    let r = &s.recipients;
    json!({
        "messages": s.messages,
        "bytes": s.bytes,
        "oldest_arrival": s.oldest_arrival,
        "recipients": {
            "pending": r.pending,
            "temp_failed": r.temp_failed,
            "perm_failed": r.perm_failed,
            "delivered": r.delivered,
            "cancelled": r.cancelled,
        },
    })
}

/// The pauses in force and the destinations with failed connections (`until` is `null`
/// while one is failing but not yet suspended).
pub fn destinations(d: &Destinations) -> Value {
    let paused: Vec<Value> = d
        .paused
        .iter()
        .map(|p| {
            let mut value = scope(&p.scope);
            if let Value::Object(fields) = &mut value {
                fields.insert("since".into(), p.since.into());
            }
            value
        })
        .collect();
    let suspended: Vec<Value> = d
        .suspended
        .iter()
        .map(|s| {
            json!({
                "destination": s.destination,
                "failures": s.failures,
                "until": s.until,
                "reason": s.reason,
            })
        })
        .collect();
    json!({ "paused": paused, "suspended": suspended })
}

/// What a pause applies to, as the `pause` options name it.
fn scope(scope: &DestinationScope) -> Value {
    match scope {
        DestinationScope::All => json!({ "all": true }),
        DestinationScope::Domain(domain) => json!({ "domain": domain }),
        DestinationScope::Remote(id) => json!({ "remote": id }),
    }
}

/// A recipient state as `--state` spells it.
pub fn state_name(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::TempFailed => "temp-failed",
        RecipientState::PermFailed => "perm-failed",
        RecipientState::Cancelled => "cancelled",
    }
}
