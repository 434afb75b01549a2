//! A queued message in the shape of Stalwart's `/api/queue/messages/{id}`: recipients grouped
//! by domain, each with its status (`"scheduled"`, `{"temp_fail": reply}`,
//! `{"perm_fail": reply}`, `{"completed": reply}`), plus ferrymail's `held`.
//!
//! The queue keeps no per-domain expiry or notification time in its admin view, so
//! `next_notify` is `null` and `expires` is left out.

use ferrymail_rpc::queue::{MessageDetail, RecipientState, RecipientStatus};
use serde_json::{Value, json};

use crate::timestamps;

/// What Stalwart writes for a recipient an administrator cancelled.
const CANCELLED: &str = "Delivery canceled.";

/// The message as Stalwart's API shows it.
pub fn message(detail: &MessageDetail) -> Value {
    let summary = &detail.summary;
    let mut value = json!({
        "id": summary.queue_id.as_str(),
        "return_path": summary.sender,
        "domains": domains(&detail.recipients),
        "created": timestamps::format(summary.arrival),
        "size": summary.size,
        "held": summary.held,
    });
    let priority = summary.priority.get();
    if priority != 0
        && let Value::Object(fields) = &mut value
    {
        fields.insert("priority".into(), json!(priority));
    }
    value
}

/// The recipients grouped by domain, in the order the domains first appear.
fn domains(recipients: &[RecipientStatus]) -> Vec<Value> {
    let mut groups: Vec<(String, Vec<&RecipientStatus>)> = Vec::new();
    for recipient in recipients {
        let domain = recipient
            .address
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_ascii_lowercase();
        match groups.iter_mut().find(|(d, _)| *d == domain) {
            Some((_, members)) => members.push(recipient),
            None => groups.push((domain, vec![recipient])),
        }
    }
    groups
        .into_iter()
        .map(|(name, members)| domain(&name, &members))
        .collect()
}

fn domain(name: &str, members: &[&RecipientStatus]) -> Value {
    let next_retry = members
        .iter()
        .filter(|r| is_live(r.state))
        .filter_map(|r| r.next_attempt)
        .min();
    json!({
        "name": name,
        "status": domain_status(members),
        "recipients": members.iter().map(|r| json!({
            "address": r.address,
            "status": status(r),
        })).collect::<Vec<_>>(),
        "retry_num": members.iter().map(|r| r.attempts).max().unwrap_or(0),
        "next_retry": next_retry.and_then(timestamps::format),
        "next_notify": Value::Null,
    })
}

fn is_live(state: RecipientState) -> bool {
    matches!(state, RecipientState::Pending | RecipientState::TempFailed)
}

/// A domain is scheduled while a recipient is; else failed if one failed; else completed.
fn domain_status(members: &[&RecipientStatus]) -> Value {
    if let Some(live) = members.iter().find(|r| is_live(r.state)) {
        return status(live);
    }
    members
        .iter()
        .find(|r| {
            matches!(
                r.state,
                RecipientState::PermFailed | RecipientState::Cancelled
            )
        })
        .map_or_else(|| json!({ "completed": "" }), |failed| status(failed))
}

fn status(recipient: &RecipientStatus) -> Value {
    let reply = || recipient.last_reply.clone().unwrap_or_default();
    match recipient.state {
        RecipientState::Pending => json!("scheduled"),
        RecipientState::TempFailed => json!({ "temp_fail": reply() }),
        RecipientState::Delivered => json!({ "completed": reply() }),
        RecipientState::PermFailed => json!({ "perm_fail": reply() }),
        RecipientState::Cancelled => json!({ "perm_fail": CANCELLED }),
    }
}

#[cfg(test)]
mod tests {
    use ferrymail_rpc::queue::{MessageSummary, Priority, QueueId};

    use super::*;

    fn recipient(address: &str, state: RecipientState, next: Option<u64>) -> RecipientStatus {
        RecipientStatus {
            address: address.into(),
            state,
            attempts: 2,
            next_attempt: next,
            last_reply: Some(format!("reply for {address}")),
        }
    }

    #[test]
    fn recipients_are_grouped_by_domain_with_stalwart_s_statuses() {
        let detail = MessageDetail {
            summary: MessageSummary {
                queue_id: QueueId::new("01JGZ5"),
                sender: "alice@example.org".into(),
                recipients: 4,
                size: 1451,
                arrival: 1_736_087_595,
                next_attempt: Some(1_736_087_600),
                priority: Priority::default(),
                held: false,
            },
            recipients: vec![
                recipient("a@example.net", RecipientState::Delivered, None),
                recipient(
                    "b@Example.NET",
                    RecipientState::TempFailed,
                    Some(1_736_087_600),
                ),
                recipient("c@example.com", RecipientState::Cancelled, None),
                recipient("d@example.com", RecipientState::PermFailed, None),
            ],
        };
        let value = message(&detail);
        assert_eq!(value["id"], "01JGZ5");
        assert_eq!(value["created"], "2025-01-05T14:33:15Z");
        assert!(
            value.get("priority").is_none(),
            "0 is left out, as Stalwart does"
        );
        let domains = value["domains"].as_array().cloned().unwrap_or_default();
        assert_eq!(domains.len(), 2);
        assert_eq!(domains[0]["name"], "example.net");
        assert_eq!(
            domains[0]["status"],
            json!({"temp_fail": "reply for b@Example.NET"})
        );
        assert_eq!(domains[0]["next_retry"], "2025-01-05T14:33:20Z");
        assert_eq!(
            domains[0]["recipients"][0]["status"],
            json!({"completed": "reply for a@example.net"})
        );
        assert_eq!(domains[1]["status"], json!({"perm_fail": CANCELLED}));
        assert_eq!(domains[1]["next_retry"], Value::Null);
        assert_eq!(domains[1]["retry_num"], 2);
    }
}
