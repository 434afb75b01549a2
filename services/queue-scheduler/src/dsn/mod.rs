//! Delivery status notifications: which recipients of an attempt are reported to the sender,
//! and the notice queued for it.
//!
//! A notice is written in the transaction that records the failure (or the delay) it
//! reports, so it exists exactly when that result does: a scheduler dying between the two
//! cannot lose it or send it twice. Notices go out with the null sender and are never
//! reported on themselves, so bounces cannot loop. The sender's NOTIFY decides: no NOTIFY
//! means failures and delays are reported, NEVER means nothing is. Successes are not reported
//! here: NOTIFY and ORCPT travel on to the next hop, whose final delivery reports them.

mod report;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrymail_rpc::queue::{Envelope, Notify, Recipient, RecipientState};
use ferrymail_store::blob::SmallBlob;
use futures::StreamExt;

pub(crate) use report::{Action, Report, ReportedRecipient, Returned};

use crate::model::new_message::{Body, NewMessage};
use crate::model::queue_id::MessageId;
use crate::model::record::{MessageRecord, RecipientRecord};
use crate::service::Queue;

/// Most of the original message a notice quotes: its header block up to this size, or the
/// whole message when the sender asked for it (`RET=FULL`) and it is no larger.
pub const MAX_RETURNED: usize = 64 * 1024;

/// The part of the original message a notice quotes, read before the commit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Original {
    content: Vec<u8>,
    whole: bool,
}

impl Original {
    fn returned(&self, record: &MessageRecord) -> Returned<'_> {
        let full = record.envelope.ret == Some(ferrymail_rpc::queue::DsnReturn::Full);
        if full && self.whole {
            return Returned::Full(&self.content);
        }
        Returned::Headers(header_block(&self.content))
    }
}

/// What a delivery commit needs to send notices.
#[derive(Debug, Clone)]
pub(crate) struct NoticeSettings {
    /// This MTA's name in reports.
    pub hostname: String,
    /// Delay notices after arrival (`queue.schedule.notify`).
    pub notify: Vec<Duration>,
    /// Lifetime of the notice itself in the queue.
    pub expire_ms: u64,
    /// The quoted original.
    pub original: Original,
}

impl Queue {
    /// Reads what a notice about `record` would quote: at most [`MAX_RETURNED`] bytes.
    /// A failed read quotes nothing rather than holding the notice back.
    pub(crate) async fn original(&self, record: &MessageRecord) -> Original {
        let mut content = Vec::new();
        let mut stream = std::pin::pin!(self.content(record, None));
        while let Some(piece) = stream.next().await {
            let Ok(piece) = piece else {
                return Original::default();
            };
            content.extend_from_slice(&piece);
            if content.len() > MAX_RETURNED {
                content.truncate(MAX_RETURNED);
                return Original {
                    content,
                    whole: false,
                };
            }
        }
        Original {
            content,
            whole: true,
        }
    }
}

/// Whether recipients of `record` can be told about at all: never for the null sender.
pub(crate) fn may_notify(record: &MessageRecord) -> bool {
    !record.envelope.sender.is_empty()
}

fn wants_failure(recipient: &Recipient) -> bool {
    match recipient.notify {
        Notify::Default => true,
        Notify::Never => false,
        Notify::On(on) => on.failure(),
    }
}

fn wants_delay(recipient: &Recipient) -> bool {
    match recipient.notify {
        Notify::Default => true,
        Notify::Never => false,
        Notify::On(on) => on.delay(),
    }
}

/// The recipients of `changed` (just recorded) to report as failed.
pub(crate) fn failed<'a>(
    changed: impl Iterator<Item = &'a RecipientRecord>,
) -> Vec<ReportedRecipient> {
    changed
        .filter(|r| r.state == RecipientState::PermFailed && wants_failure(&r.recipient))
        .map(|r| reported(r, Action::Failed))
        .collect()
}

/// Why an administrator's cancel failed a recipient, as its notice says.
pub(crate) const CANCELLED: &str = "delivery cancelled by the administrator";

/// The recipients of `cancelled` (just cancelled by an administrator) to report as failed.
pub(crate) fn cancelled<'a>(
    cancelled: impl Iterator<Item = &'a RecipientRecord>,
) -> Vec<ReportedRecipient> {
    cancelled
        .filter(|r| wants_failure(&r.recipient))
        .map(|r| ReportedRecipient {
            reason: CANCELLED.to_owned(),
            ..reported(r, Action::Failed)
        })
        .collect()
}

/// The delay notices due for `record` at `now_ms` under `notify`: the new count, and the
/// recipients to report as delayed when a notice is due.
pub(crate) fn delayed(
    record: &MessageRecord,
    recipients: &[RecipientRecord],
    notify: &[Duration],
    now_ms: u64,
) -> (u32, Vec<ReportedRecipient>) {
    let elapsed = Duration::from_millis(now_ms.saturating_sub(record.arrival_ms));
    let passed =
        u32::try_from(notify.iter().filter(|&&at| at <= elapsed).count()).unwrap_or(u32::MAX);
    if passed <= record.delay_notices {
        return (record.delay_notices, Vec::new());
    }
    let delayed = recipients
        .iter()
        .filter(|r| r.state == RecipientState::TempFailed && wants_delay(&r.recipient))
        .map(|r| reported(r, Action::Delayed))
        .collect();
    (passed, delayed)
}

fn reported(record: &RecipientRecord, action: Action) -> ReportedRecipient {
    ReportedRecipient {
        address: record.recipient.address.clone(),
        orcpt: record.recipient.orcpt.clone(),
        action,
        reason: record.last_reply.clone().unwrap_or_default(),
    }
}

/// The notice to `record`'s sender about `recipients`, as a message to queue; `None` if it
/// cannot be held as a small body (it always can: its parts are bounded).
#[tracing::instrument(name = "queue.dsn", skip_all, fields(queue_id = %record.id, recipients = recipients.len()))]
pub(crate) fn notice(
    settings: &NoticeSettings,
    record: &MessageRecord,
    recipients: &[ReportedRecipient],
    now: SystemTime,
) -> Option<NewMessage> {
    let content = Report {
        hostname: &settings.hostname,
        record,
        recipients,
        returned: settings.original.returned(record),
        now,
    }
    .build();
    let eight_bit = !content.is_ascii();
    let body = SmallBlob::new([Bytes::from(content)])?;
    let envelope = Envelope {
        sender: String::new(),
        recipients: vec![Recipient {
            address: record.envelope.sender.clone(),
            notify: Notify::Never,
            orcpt: None,
        }],
        priority: record.envelope.priority,
        body_type: if eight_bit {
            ferrymail_rpc::queue::BodyType::EightBitMime
        } else {
            ferrymail_rpc::queue::BodyType::SevenBit
        },
        smtputf8: record.envelope.smtputf8,
        helo: settings.hostname.clone(),
        // The notice belongs to the message's trace.
        trace_parent: record.envelope.trace_parent.clone(),
        ..Envelope::default()
    };
    Some(NewMessage::new(
        MessageId::generate(now),
        envelope,
        Body::Small(body),
        None,
        settings.expire_ms,
    ))
}

/// The header block of `message`: everything before the first empty line (all of it when
/// there is none).
fn header_block(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 2)
        .or_else(|| {
            message
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| at + 1)
        });
    end.map_or(message, |end| &message[..end])
}

#[cfg(test)]
mod tests {
    use ferrymail_rpc::queue::NotifyOn;
    use ferrymail_store::blob::BlobId;

    use super::*;

    const DAY_MS: u64 = 86_400_000;

    fn record(sender: &str, delay_notices: u32) -> MessageRecord {
        MessageRecord {
            id: MessageId::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)),
            envelope: Envelope {
                sender: sender.into(),
                ..Envelope::default()
            },
            size: 1,
            arrival_ms: 1_000_000,
            expiry_ms: 1_000_000 + 5 * DAY_MS,
            blob: BlobId::from_bytes([0; 16]),
            prepend: Vec::new(),
            delay_notices,
            due_ms: Some(1),
            recipients: 3,
            held: false,
        }
    }

    fn recipient(index: u32, notify: Notify, state: RecipientState) -> RecipientRecord {
        let mut record = RecipientRecord::pending(
            index,
            Recipient {
                address: format!("r{index}@example.net"),
                notify,
                orcpt: None,
            },
            1,
        );
        record.state = state;
        record.last_reply = Some("451 4.3.0 later".into());
        record
    }

    #[test]
    fn delay_notices_follow_the_notify_times_and_the_recipients_wishes() {
        let notify = [Duration::from_secs(86_400), Duration::from_secs(3 * 86_400)];
        let delay_only =
            Notify::On(NotifyOn::new(false, false, true).unwrap_or_else(|| unreachable!()));
        let failure_only =
            Notify::On(NotifyOn::new(false, true, false).unwrap_or_else(|| unreachable!()));
        let recipients = [
            recipient(0, Notify::Default, RecipientState::TempFailed),
            recipient(1, delay_only, RecipientState::TempFailed),
            recipient(2, failure_only, RecipientState::TempFailed),
            recipient(3, Notify::Never, RecipientState::TempFailed),
            recipient(4, Notify::Default, RecipientState::Delivered),
        ];
        let fresh = record("alice@example.org", 0);
        let early = fresh.arrival_ms + DAY_MS - 1;
        assert_eq!(
            delayed(&fresh, &recipients, &notify, early),
            (0, Vec::new())
        );
        let (count, reported) = delayed(&fresh, &recipients, &notify, fresh.arrival_ms + DAY_MS);
        assert_eq!(count, 1);
        let addresses: Vec<_> = reported.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addresses, ["r0@example.net", "r1@example.net"]);
        assert!(reported.iter().all(|r| r.action == Action::Delayed));
        let told = record("alice@example.org", 1);
        let two_days = told.arrival_ms + 2 * DAY_MS;
        assert_eq!(
            delayed(&told, &recipients, &notify, two_days),
            (1, Vec::new())
        );
        // A scheduler that was down past both times sends one notice, not two.
        let (count, reported) =
            delayed(&fresh, &recipients, &notify, fresh.arrival_ms + 4 * DAY_MS);
        assert_eq!((count, reported.len()), (2, 2));
    }

    #[test]
    fn failures_are_reported_unless_the_sender_said_never() {
        let failed = [
            recipient(0, Notify::Default, RecipientState::PermFailed),
            recipient(1, Notify::Never, RecipientState::PermFailed),
            recipient(2, Notify::Default, RecipientState::Delivered),
        ];
        let reported = super::failed(failed.iter());
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].address, "r0@example.net");
        assert!(!may_notify(&record("", 0)), "the null sender is never told");
        assert!(may_notify(&record("alice@example.org", 0)));
    }

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_block(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(header_block(b"A: 1\r\nno body"), b"A: 1\r\nno body");
        assert_eq!(header_block(b""), b"");
    }
}
