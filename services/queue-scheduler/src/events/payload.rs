//! The JSON of delivery events, in the shape of Stalwart's webhooks: a request body is
//! `{"events": [event, …]}`, each event `{"id", "type", "createdAt", "data"}`.
//!
//! ```json
//! {"id": "01JA…", "type": "delivery.bounced", "createdAt": "2025-01-02T03:04:05.678Z",
//!  "data": {"queueId": "01JA…", "sender": "a@example.org", "recipient": "b@example.net",
//!           "attempt": 1, "nextHop": {"type": "mx", "domain": "example.net", "host": "mx.example.net"},
//!           "reply": {"code": 550, "enhancedCode": "5.1.1", "text": "user unknown"},
//!           "status": "5.1.1", "category": "invalid-recipient"}}
//! ```
//!
//! `nextHop` is `{"type": "remote", "id": "<remote id>"}` for a relay; `reply` is null when no
//! reply was recorded (hold, release, cancel), its `code` and `enhancedCode` null when the
//! reply had none; `status` (RFC 3463) and `category` are null for events that are not
//! failures, except `status` of a delivery; `retryAt` is set on `delivery.deferred`. Each
//! event is serialized once, when it is written to the outbox; a request joins the stored
//! bytes.

use serde_json::{Value, json};

use super::EventKind;
use super::classify::{self, FailureKind};
use super::next_hop::NextHop;
use crate::model::event_outbox::EventId;
use crate::model::queue_id::MessageId;

/// One event, before it is serialized.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Its unique id, which receivers deduplicate by.
    pub(crate) id: EventId,
    /// What happened.
    pub(crate) kind: EventKind,
    /// When (Unix milliseconds).
    pub(crate) time_ms: u64,
    /// The message's queue id.
    pub(crate) queue_id: MessageId,
    /// The envelope sender.
    pub(crate) sender: String,
    /// The recipient.
    pub(crate) recipient: String,
    /// Attempts made for the recipient so far.
    pub(crate) attempt: u32,
    /// Where its delivery goes, when known.
    pub(crate) next_hop: Option<NextHop>,
    /// The reply recorded, if any.
    pub(crate) reply: Option<String>,
    /// When the next attempt is due (deferred events).
    pub(crate) retry_at_ms: Option<u64>,
}

impl Event {
    /// The event as JSON bytes.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let reply = self.reply.as_deref().map(classify::parse_reply);
        let failure = match self.kind {
            EventKind::Deferred => Some(FailureKind::Temporary),
            EventKind::Bounced => Some(FailureKind::Permanent),
            EventKind::Expired => Some(FailureKind::Expired),
            _ => None,
        };
        let (status, category) = match (&reply, failure) {
            (Some(reply), Some(kind)) => (
                Some(classify::status(reply, kind)),
                Some(classify::classify(reply, kind).name()),
            ),
            (None, Some(kind)) => {
                let empty = classify::parse_reply("");
                (
                    Some(classify::status(&empty, kind)),
                    Some(classify::classify(&empty, kind).name()),
                )
            }
            (Some(reply), None) if self.kind == EventKind::Delivered => (
                Some(reply.enhanced.clone().unwrap_or_else(|| "2.0.0".to_owned())),
                None,
            ),
            _ => (None, None),
        };
        let mut data = json!({
            "queueId": self.queue_id.to_string(),
            "sender": self.sender,
            "recipient": self.recipient,
            "attempt": self.attempt,
            "nextHop": self.next_hop.as_ref().map(next_hop_json),
            "reply": reply.map(|r| json!({
                "code": r.code,
                "enhancedCode": r.enhanced,
                "text": r.text,
            })),
            "status": status,
            "category": category,
        });
        if let (Some(at), Value::Object(fields)) = (self.retry_at_ms, &mut data) {
            fields.insert("retryAt".to_owned(), Value::String(timestamp(at)));
        }
        let event = json!({
            "id": self.id.to_string(),
            "type": self.kind.name(),
            "createdAt": timestamp(self.time_ms),
            "data": data,
        });
        // Serializing a `Value` built here cannot fail; an empty object would still be JSON.
        serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec())
    }
}

fn next_hop_json(hop: &NextHop) -> Value {
    match hop {
        NextHop::Remote(id) => json!({"type": "remote", "id": id}),
        NextHop::Mx { domain, host } => json!({"type": "mx", "domain": domain, "host": host}),
    }
}

/// Unix milliseconds as RFC 3339 in UTC (`2025-01-02T03:04:05.678Z`).
pub(crate) fn timestamp(unix_ms: u64) -> String {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

/// A request body: `{"events": [...]}` around events already serialized.
pub(crate) fn batch_body<'a>(events: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = b"{\"events\":[".to_vec();
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn event(kind: EventKind, reply: Option<&str>) -> Event {
        Event {
            id: EventId::generate(1_700_000_000_123),
            kind,
            time_ms: 1_700_000_000_123,
            queue_id: MessageId::generate(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            sender: "alice@example.org".into(),
            recipient: "bob@example.net".into(),
            attempt: 2,
            next_hop: Some(NextHop::Mx {
                domain: "example.net".into(),
                host: Some("mx.example.net".into()),
            }),
            reply: reply.map(str::to_owned),
            retry_at_ms: None,
        }
    }

    fn parse(event: &Event) -> Value {
        serde_json::from_slice(&event.to_json()).unwrap()
    }

    #[test]
    fn a_bounce_carries_every_field() {
        let bounce = event(
            EventKind::Bounced,
            Some("550 5.1.1 <bob@example.net>: user unknown"),
        );
        let json = parse(&bounce);
        assert_eq!(json["id"], bounce.id.to_string());
        assert_eq!(json["type"], "delivery.bounced");
        assert_eq!(json["createdAt"], "2023-11-14T22:13:20.123Z");
        let data = &json["data"];
        assert_eq!(data["queueId"], bounce.queue_id.to_string());
        assert_eq!(data["sender"], "alice@example.org");
        assert_eq!(data["recipient"], "bob@example.net");
        assert_eq!(data["attempt"], 2);
        assert_eq!(data["nextHop"]["type"], "mx");
        assert_eq!(data["nextHop"]["domain"], "example.net");
        assert_eq!(data["nextHop"]["host"], "mx.example.net");
        assert_eq!(data["reply"]["code"], 550);
        assert_eq!(data["reply"]["enhancedCode"], "5.1.1");
        assert_eq!(data["reply"]["text"], "<bob@example.net>: user unknown");
        assert_eq!(data["status"], "5.1.1");
        assert_eq!(data["category"], "invalid-recipient");
        assert!(data.get("retryAt").is_none());
    }

    #[test]
    fn deliveries_deferrals_and_admin_events() {
        let delivered = parse(&event(EventKind::Delivered, Some("250 2.0.0 Ok: queued")));
        assert_eq!(delivered["data"]["status"], "2.0.0");
        assert!(delivered["data"]["category"].is_null());
        let mut deferred = event(EventKind::Deferred, Some("451 4.7.1 greylisted, try later"));
        deferred.retry_at_ms = Some(1_700_000_060_000);
        deferred.next_hop = Some(NextHop::Remote("relay".into()));
        let deferred = parse(&deferred);
        assert_eq!(deferred["data"]["retryAt"], "2023-11-14T22:14:20Z");
        assert_eq!(
            deferred["data"]["nextHop"],
            json!({"type": "remote", "id": "relay"})
        );
        assert_eq!(deferred["data"]["category"], "policy");
        let held = parse(&event(EventKind::Held, None));
        assert_eq!(held["type"], "queue.held");
        assert!(held["data"]["reply"].is_null() && held["data"]["status"].is_null());
        let expired = parse(&event(EventKind::Expired, None));
        assert_eq!(expired["data"]["status"], "4.4.7");
        assert_eq!(expired["data"]["category"], "expired");
    }

    #[test]
    fn odd_replies_still_make_valid_json() {
        for reply in [
            "",
            "\"quoted\" \\ backslash",
            "\u{0}\u{1b}[31m",
            "550 5.1.1 ünïcödé",
        ] {
            let json = parse(&event(EventKind::Bounced, Some(reply)));
            assert_eq!(json["type"], "delivery.bounced");
        }
    }

    #[test]
    fn a_body_wraps_the_stored_events() {
        let (a, b) = (
            event(EventKind::Held, None),
            event(EventKind::Released, None),
        );
        let (a_json, b_json) = (a.to_json(), b.to_json());
        let body = batch_body([a_json.as_slice(), b_json.as_slice()]);
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["events"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["events"][1]["type"], "queue.released");
        let empty: Value = serde_json::from_slice(&batch_body([])).unwrap();
        assert_eq!(empty, json!({"events": []}));
    }
}
