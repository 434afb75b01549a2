//! The stored forms of a message and of its recipients, and their encoding.
//!
//! Values are tuples, like the keys, led by a format number, so each record decodes whole or
//! fails whole and a later layout can be told apart. Times are Unix milliseconds.
//!
//! Message record, format 3:
//! `(3, (sender, ret, envid, declared_size, priority, hold_until_s, requiretls, smtputf8,
//! body_type, client_ip, helo, authenticated_as), (trace_parent, size, arrival_ms, expiry_ms,
//! blob, due_ms, recipients, prepend, delay_notices, held))`, where `ret` is 0 (none), 1 (FULL) or 2 (HDRS),
//! `body_type` 0 (7BIT), 1 (8BITMIME) or 2 (BINARYMIME), `client_ip` text or nil, `blob` the
//! 16-byte blob id, `due_ms` nil when no recipient is live, `prepend` the header fields
//! written before the blob's content and `delay_notices` how many delay notices went to the
//! sender, and `held` whether an administrator put the message on hold. Format 2 is format 3
//! without `held`, format 1 format 2 without its last two; both are still read (not held).
//!
//! Recipient record, format 1:
//! `(1, address, notify, orcpt, state, attempts, due_ms, last_reply)`, where `notify` is 0
//! (no NOTIFY), 1 (NEVER) or 8 + 1·SUCCESS + 2·FAILURE + 4·DELAY, and `state` 0 pending,
//! 1 delivered, 2 temp-failed, 3 perm-failed, 4 cancelled.

use ferrymail_rpc::queue::{
    BodyType, DsnReturn, Envelope, Notify, NotifyOn, Priority, Recipient, RecipientState,
};
use ferrymail_store::blob::BlobId;
use ferrymail_store::tuple;

use crate::model::queue_id::MessageId;

/// Layout version of message records.
const MESSAGE_FORMAT: u64 = 3;

/// Layout version of recipient records.
const RECIPIENT_FORMAT: u64 = 1;

/// A queued message as stored, recipients apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// The message's queue id.
    pub id: MessageId,
    /// The envelope as received. Its `recipients` are empty here: each recipient is stored under
    /// its own key, as a [`RecipientRecord`].
    pub envelope: Envelope,
    /// Size in bytes of the message as delivered: `prepend` and the blob's content.
    pub size: u64,
    /// When the message was queued.
    pub arrival_ms: u64,
    /// When undelivered recipients fail: arrival plus `queue.schedule.expire`.
    pub expiry_ms: u64,
    /// The blob holding the body.
    pub blob: BlobId,
    /// Header fields added once the body was read, delivered before it.
    pub prepend: Vec<u8>,
    /// Delay notices sent to the sender so far (`queue.schedule.notify`).
    pub delay_notices: u32,
    /// Time of the message's due-index entry: the earliest due time of its live recipients;
    /// `None` when no recipient is live.
    pub due_ms: Option<u64>,
    /// Number of recipients.
    pub recipients: u32,
    /// Put on hold by an administrator: never attempted, and out of the due index, until
    /// released.
    pub held: bool,
}

/// One recipient of a message and where its delivery stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRecord {
    /// Position in the envelope, from 0.
    pub index: u32,
    /// The address and its DSN parameters.
    pub recipient: Recipient,
    /// Delivery state.
    pub state: RecipientState,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When the next attempt is due: set exactly when the recipient is live.
    pub due_ms: Option<u64>,
    /// The last reply of the receiving server (the reason of a permanent failure, say).
    pub last_reply: Option<String>,
}

/// A stored value that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt queue record: {0}")]
pub struct CorruptRecord(pub String);

impl RecipientRecord {
    /// A recipient not yet attempted, due at `due_ms`.
    pub fn pending(index: u32, recipient: Recipient, due_ms: u64) -> Self {
        Self {
            index,
            recipient,
            state: RecipientState::Pending,
            attempts: 0,
            due_ms: Some(due_ms),
            last_reply: None,
        }
    }

    /// Whether delivery to this recipient is still to be done.
    pub fn is_live(&self) -> bool {
        is_live(self.state)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let r = &self.recipient;
        tuple::pack(&(
            RECIPIENT_FORMAT,
            r.address.as_str(),
            notify_code(r.notify),
            r.orcpt.as_deref(),
            state_code(self.state),
            self.attempts,
            self.due_ms,
            self.last_reply.as_deref(),
        ))
    }

    pub(crate) fn decode(index: u32, value: &[u8]) -> Result<Self, CorruptRecord> {
        type Fields = (
            u64,
            String,
            u64,
            Option<String>,
            u64,
            u32,
            Option<u64>,
            Option<String>,
        );
        let (format, address, notify, orcpt, state, attempts, due_ms, last_reply) =
            tuple::unpack::<Fields>(value).map_err(|e| corrupt(format!("recipient: {e}")))?;
        check_format(format, RECIPIENT_FORMAT)?;
        let state = state_from_code(state)?;
        if is_live(state) != due_ms.is_some() {
            return Err(corrupt(format!(
                "recipient {address:?} is {state:?} with due time {due_ms:?}"
            )));
        }
        Ok(Self {
            index,
            recipient: Recipient {
                address,
                notify: notify_from_code(notify)?,
                orcpt,
            },
            state,
            attempts,
            due_ms,
            last_reply,
        })
    }
}

/// Whether a recipient in `state` is still to be delivered.
pub(crate) fn is_live(state: RecipientState) -> bool {
    matches!(state, RecipientState::Pending | RecipientState::TempFailed)
}

impl MessageRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let e = &self.envelope;
        let envelope = (
            e.sender.as_str(),
            ret_code(e.ret),
            e.envid.as_deref(),
            e.declared_size,
            i64::from(e.priority.get()),
            e.hold_until,
            e.requiretls,
            e.smtputf8,
            body_type_code(e.body_type),
            e.client_ip.map(|ip| ip.to_string()),
            e.helo.as_str(),
            e.authenticated_as.as_deref(),
        );
        let queue = (
            e.trace_parent.as_deref(),
            self.size,
            self.arrival_ms,
            self.expiry_ms,
            self.blob.as_bytes().to_vec(),
            self.due_ms,
            self.recipients,
            self.prepend.as_slice(),
            self.delay_notices,
            self.held,
        );
        tuple::pack(&(MESSAGE_FORMAT, envelope, queue))
    }

    pub(crate) fn decode(id: MessageId, value: &[u8]) -> Result<Self, CorruptRecord> {
        type EnvelopeFields = (
            String,
            u64,
            Option<String>,
            Option<u64>,
            i64,
            Option<u64>,
            bool,
            bool,
            u64,
            Option<String>,
            String,
            Option<String>,
        );
        type QueueFields = (
            Option<String>,
            u64,
            u64,
            u64,
            Vec<u8>,
            Option<u64>,
            u32,
            Vec<u8>,
            u32,
            bool,
        );
        type QueueFieldsV2 = (
            Option<String>,
            u64,
            u64,
            u64,
            Vec<u8>,
            Option<u64>,
            u32,
            Vec<u8>,
            u32,
        );
        type QueueFieldsV1 = (Option<String>, u64, u64, u64, Vec<u8>, Option<u64>, u32);
        let (envelope, queue) = match tuple::unpack::<(u64, EnvelopeFields, QueueFields)>(value) {
            Ok((format, envelope, queue)) => {
                check_format(format, MESSAGE_FORMAT)?;
                (envelope, queue)
            }
            Err(e) => match tuple::unpack::<(u64, EnvelopeFields, QueueFieldsV2)>(value) {
                Ok((2, envelope, (t, s, a, x, b, d, r, p, n))) => {
                    (envelope, (t, s, a, x, b, d, r, p, n, false))
                }
                _ => match tuple::unpack::<(u64, EnvelopeFields, QueueFieldsV1)>(value) {
                    Ok((1, envelope, (t, s, a, x, b, d, r))) => {
                        (envelope, (t, s, a, x, b, d, r, Vec::new(), 0, false))
                    }
                    _ => return Err(corrupt(format!("message {id}: {e}"))),
                },
            },
        };
        let (
            sender,
            ret,
            envid,
            declared_size,
            priority,
            hold_until,
            requiretls,
            smtputf8,
            body_type,
            client_ip,
            helo,
            authenticated_as,
        ) = envelope;
        let (
            trace_parent,
            size,
            arrival_ms,
            expiry_ms,
            blob,
            due_ms,
            recipients,
            prepend,
            delay_notices,
            held,
        ) = queue;
        let client_ip = client_ip
            .map(|ip| ip.parse())
            .transpose()
            .map_err(|_| corrupt(format!("message {id}: bad client address")))?;
        let priority = i32::try_from(priority)
            .ok()
            .and_then(Priority::new)
            .ok_or_else(|| corrupt(format!("message {id}: priority {priority}")))?;
        let blob: [u8; 16] = blob
            .try_into()
            .map_err(|_| corrupt(format!("message {id}: a blob id is 16 bytes")))?;
        Ok(Self {
            id,
            envelope: Envelope {
                sender,
                recipients: Vec::new(),
                ret: ret_from_code(ret)?,
                envid,
                declared_size,
                priority,
                hold_until,
                requiretls,
                smtputf8,
                body_type: body_type_from_code(body_type)?,
                client_ip,
                helo,
                authenticated_as,
                trace_parent,
                // The record's key names the message.
                queue_id: None,
                quarantine: None,
            },
            size,
            arrival_ms,
            expiry_ms,
            blob: BlobId::from_bytes(blob),
            prepend,
            delay_notices,
            due_ms,
            recipients,
            held,
        })
    }
}

fn corrupt(reason: String) -> CorruptRecord {
    CorruptRecord(reason)
}

fn check_format(format: u64, expected: u64) -> Result<(), CorruptRecord> {
    if format == expected {
        Ok(())
    } else {
        Err(corrupt(format!("unknown record format {format}")))
    }
}

fn notify_code(notify: Notify) -> u64 {
    match notify {
        Notify::Default => 0,
        Notify::Never => 1,
        Notify::On(on) => {
            8 + u64::from(on.success()) + 2 * u64::from(on.failure()) + 4 * u64::from(on.delay())
        }
    }
}

fn notify_from_code(code: u64) -> Result<Notify, CorruptRecord> {
    match code {
        0 => Ok(Notify::Default),
        1 => Ok(Notify::Never),
        9..=15 => {
            let bits = code - 8;
            NotifyOn::new(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0)
                .map(Notify::On)
                .ok_or_else(|| corrupt(format!("notify code {code}")))
        }
        _ => Err(corrupt(format!("notify code {code}"))),
    }
}

pub(crate) fn state_code(state: RecipientState) -> u64 {
    match state {
        RecipientState::Pending => 0,
        RecipientState::Delivered => 1,
        RecipientState::TempFailed => 2,
        RecipientState::PermFailed => 3,
        RecipientState::Cancelled => 4,
    }
}

fn state_from_code(code: u64) -> Result<RecipientState, CorruptRecord> {
    Ok(match code {
        0 => RecipientState::Pending,
        1 => RecipientState::Delivered,
        2 => RecipientState::TempFailed,
        3 => RecipientState::PermFailed,
        4 => RecipientState::Cancelled,
        _ => return Err(corrupt(format!("recipient state {code}"))),
    })
}

fn ret_code(ret: Option<DsnReturn>) -> u64 {
    match ret {
        None => 0,
        Some(DsnReturn::Full) => 1,
        Some(DsnReturn::Headers) => 2,
    }
}

fn ret_from_code(code: u64) -> Result<Option<DsnReturn>, CorruptRecord> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(DsnReturn::Full)),
        2 => Ok(Some(DsnReturn::Headers)),
        _ => Err(corrupt(format!("RET code {code}"))),
    }
}

fn body_type_code(body_type: BodyType) -> u64 {
    match body_type {
        BodyType::SevenBit => 0,
        BodyType::EightBitMime => 1,
        BodyType::BinaryMime => 2,
    }
}

fn body_type_from_code(code: u64) -> Result<BodyType, CorruptRecord> {
    match code {
        0 => Ok(BodyType::SevenBit),
        1 => Ok(BodyType::EightBitMime),
        2 => Ok(BodyType::BinaryMime),
        _ => Err(corrupt(format!("BODY code {code}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::SystemTime;

    use super::*;

    fn full_record() -> MessageRecord {
        MessageRecord {
            id: MessageId::generate(SystemTime::now()),
            envelope: Envelope {
                sender: "alice@example.org".into(),
                recipients: Vec::new(),
                ret: Some(DsnReturn::Headers),
                envid: Some("QQ314159".into()),
                declared_size: Some(3_000_000),
                priority: Priority::new(-4).unwrap(),
                hold_until: Some(1_800_000_000),
                requiretls: true,
                smtputf8: true,
                body_type: BodyType::BinaryMime,
                client_ip: Some("2001:db8::25".parse().unwrap()),
                helo: "mx.example.org".into(),
                authenticated_as: Some("alice".into()),
                trace_parent: Some(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ),
                queue_id: None,
                quarantine: None,
            },
            size: 200_000,
            arrival_ms: 1_700_000_000_123,
            expiry_ms: 1_700_432_000_123,
            blob: BlobId::from_bytes([0, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0]),
            prepend: b"Authentication-Results: mx.example.org; spf=pass\r\n".to_vec(),
            delay_notices: 1,
            due_ms: Some(1_800_000_000_000),
            recipients: 3,
            held: true,
        }
    }

    #[test]
    fn format_1_records_are_still_read() {
        let record = full_record();
        let e = &record.envelope;
        let envelope = (
            e.sender.as_str(),
            2u64,
            e.envid.as_deref(),
            e.declared_size,
            -4i64,
            e.hold_until,
            true,
            true,
            2u64,
            Some("2001:db8::25"),
            e.helo.as_str(),
            e.authenticated_as.as_deref(),
        );
        let queue = (
            e.trace_parent.as_deref(),
            record.size,
            record.arrival_ms,
            record.expiry_ms,
            record.blob.as_bytes().to_vec(),
            record.due_ms,
            record.recipients,
        );
        let old = tuple::pack(&(1u64, envelope, queue));
        let read = MessageRecord::decode(record.id, &old).unwrap();
        assert_eq!(
            read,
            MessageRecord {
                prepend: Vec::new(),
                delay_notices: 0,
                held: false,
                ..record
            }
        );
    }

    #[test]
    fn format_2_records_are_read_as_not_held() {
        let record = full_record();
        let e = &record.envelope;
        let envelope = (
            e.sender.as_str(),
            2u64,
            e.envid.as_deref(),
            e.declared_size,
            -4i64,
            e.hold_until,
            true,
            true,
            2u64,
            Some("2001:db8::25"),
            e.helo.as_str(),
            e.authenticated_as.as_deref(),
        );
        let queue = (
            e.trace_parent.as_deref(),
            record.size,
            record.arrival_ms,
            record.expiry_ms,
            record.blob.as_bytes().to_vec(),
            record.due_ms,
            record.recipients,
            record.prepend.as_slice(),
            record.delay_notices,
        );
        let old = tuple::pack(&(2u64, envelope, queue));
        let read = MessageRecord::decode(record.id, &old).unwrap();
        assert_eq!(
            read,
            MessageRecord {
                held: false,
                ..record
            }
        );
    }

    #[test]
    fn message_records_round_trip() {
        let full = full_record();
        assert_eq!(
            MessageRecord::decode(full.id, &full.encode()).unwrap(),
            full
        );
        let bare = MessageRecord {
            envelope: Envelope::default(),
            due_ms: None,
            ..full_record()
        };
        assert_eq!(
            MessageRecord::decode(bare.id, &bare.encode()).unwrap(),
            bare
        );
    }

    #[test]
    fn recipient_records_round_trip() {
        let on = NotifyOn::new(true, false, true).unwrap();
        let records = [
            RecipientRecord::pending(0, Recipient::new("bob@example.net"), 5),
            RecipientRecord {
                index: 1,
                recipient: Recipient {
                    address: "carol@example.net".into(),
                    notify: Notify::On(on),
                    orcpt: Some("rfc822;carol@example.net".into()),
                },
                state: RecipientState::TempFailed,
                attempts: 3,
                due_ms: Some(9),
                last_reply: Some("451 4.3.0 try later".into()),
            },
            RecipientRecord {
                index: 2,
                recipient: Recipient {
                    address: "dave@example.net".into(),
                    notify: Notify::Never,
                    orcpt: None,
                },
                state: RecipientState::PermFailed,
                attempts: 1,
                due_ms: None,
                last_reply: Some("550 5.1.1 no such user".into()),
            },
        ];
        for record in records {
            let back = RecipientRecord::decode(record.index, &record.encode()).unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn inconsistent_and_foreign_records_are_refused() {
        let mut live_without_due = RecipientRecord::pending(0, Recipient::new("a@b"), 1);
        live_without_due.due_ms = None;
        assert!(RecipientRecord::decode(0, &live_without_due.encode()).is_err());
        let record = full_record();
        assert!(MessageRecord::decode(record.id, b"garbage").is_err());
        let future = tuple::pack(&(4u64, "x"));
        assert!(MessageRecord::decode(record.id, &future).is_err());
        assert!(RecipientRecord::decode(0, &future).is_err());
    }
}
