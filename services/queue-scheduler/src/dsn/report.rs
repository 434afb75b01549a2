//! The content of a delivery status notification (RFC 3464): a `multipart/report` with a
//! human-readable part, the `message/delivery-status` part, and the original message's header
//! (or, when the sender asked for it with `RET=FULL` and it is small, the whole message).

use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use crate::model::record::MessageRecord;

/// Longest text taken from a remote server's reply into a header field of the report.
const MAX_REPLY: usize = 900;

/// What happened to a reported recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delivery failed for good.
    Failed,
    /// Delivery is still being tried.
    Delayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Delayed => "delayed",
        }
    }
}

/// One recipient in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportedRecipient {
    /// The address delivered to.
    pub address: String,
    /// The ORCPT address the client gave (type `rfc822`), decoded.
    pub orcpt: Option<String>,
    /// What happened.
    pub action: Action,
    /// The last reply of the receiving server, or why there was none.
    pub reason: String,
}

/// What the report quotes of the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returned<'a> {
    /// Its header block.
    Headers(&'a [u8]),
    /// The whole message.
    Full(&'a [u8]),
}

/// A notification about `record`'s `recipients`, from the MTA named `hostname`.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub hostname: &'a str,
    pub record: &'a MessageRecord,
    pub recipients: &'a [ReportedRecipient],
    pub returned: Returned<'a>,
    pub now: SystemTime,
}

impl Report<'_> {
    /// The notification as a message, CRLF line ends.
    pub(crate) fn build(&self) -> Vec<u8> {
        let failed = self.recipients.iter().any(|r| r.action == Action::Failed);
        let subject = if failed {
            "Undelivered Mail Returned to Sender"
        } else {
            "Delayed Mail (still being retried)"
        };
        let returned = match self.returned {
            Returned::Headers(headers) => MimePart::new(
                ContentType::new("text/rfc822-headers"),
                BodyPart::Binary(headers.into()),
            ),
            Returned::Full(message) => MimePart::new(
                ContentType::new("message/rfc822"),
                BodyPart::Binary(message.into()),
            ),
        }
        .transfer_encoding(transfer_encoding(self.returned));
        let report = MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
            BodyPart::Multipart(vec![
                MimePart::new(ContentType::new("text/plain"), self.explanation()),
                MimePart::new(
                    ContentType::new("message/delivery-status"),
                    BodyPart::Text(self.delivery_status().into()),
                )
                .transfer_encoding("7bit"),
                returned,
            ]),
        );
        let from = Address::new_address(
            Some("Mail Delivery System"),
            format!("MAILER-DAEMON@{}", self.hostname),
        );
        MessageBuilder::new()
            .from(from)
            .to(Address::new_address(
                None::<&str>,
                self.record.envelope.sender.clone(),
            ))
            .subject(subject)
            .date(Date::new(unix_seconds(self.now)))
            .header("Auto-Submitted", Raw::new("auto-replied"))
            .body(report)
            .write_to_vec()
            .unwrap_or_default()
    }

    /// The human-readable part.
    fn explanation(&self) -> String {
        let mut text = format!("This is the mail system at host {}.\r\n\r\n", self.hostname);
        for (action, intro) in [
            (
                Action::Failed,
                "Your message could not be delivered to the following recipients:",
            ),
            (
                Action::Delayed,
                "Your message has not been delivered yet to the following recipients; \
                 delivery will be tried again, nothing needs to be done:",
            ),
        ] {
            let listed: Vec<_> = self
                .recipients
                .iter()
                .filter(|r| r.action == action)
                .collect();
            if listed.is_empty() {
                continue;
            }
            text.push_str(intro);
            text.push_str("\r\n\r\n");
            for recipient in listed {
                text.push_str(&format!(
                    "  <{}>: {}\r\n",
                    recipient.address,
                    one_line(&recipient.reason)
                ));
            }
            text.push_str("\r\n");
        }
        text
    }

    /// The `message/delivery-status` part: per-message fields, then one block per recipient.
    fn delivery_status(&self) -> String {
        let mut status = format!("Reporting-MTA: dns; {}\r\n", self.hostname);
        if let Some(envid) = &self.record.envelope.envid {
            status.push_str(&format!("Original-Envelope-Id: {}\r\n", one_line(envid)));
        }
        let arrival = Date::new(unix_seconds_of_ms(self.record.arrival_ms)).to_rfc822();
        status.push_str(&format!("Arrival-Date: {arrival}\r\n"));
        for recipient in self.recipients {
            status.push_str("\r\n");
            if let Some(orcpt) = &recipient.orcpt {
                status.push_str(&format!(
                    "Original-Recipient: rfc822;{}\r\n",
                    one_line(orcpt)
                ));
            }
            status.push_str(&format!(
                "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
                recipient.address,
                recipient.action.as_str(),
                status_code(recipient.action, &recipient.reason)
            ));
            if looks_like_reply(&recipient.reason) {
                status.push_str(&format!(
                    "Diagnostic-Code: smtp; {}\r\n",
                    one_line(&recipient.reason)
                ));
            }
            if recipient.action == Action::Delayed {
                let until = Date::new(unix_seconds_of_ms(self.record.expiry_ms)).to_rfc822();
                status.push_str(&format!("Will-Retry-Until: {until}\r\n"));
            }
        }
        status
    }
}

/// The enhanced status code (RFC 3463) of a recipient's outcome: the reply's own when it has
/// one, `4.4.7` for an expired message, else the class of the reply's code.
pub(crate) fn status_code(action: Action, reason: &str) -> String {
    if reason.starts_with("expired") {
        return "4.4.7".to_owned();
    }
    if looks_like_reply(reason)
        && let Some(code) = reason.get(4..).and_then(|rest| rest.split(' ').next())
        && is_enhanced_code(code)
    {
        return code.to_owned();
    }
    let class = match (looks_like_reply(reason), reason.as_bytes().first(), action) {
        (true, Some(b'5'), _) | (false, _, Action::Failed) => "5",
        _ => "4",
    };
    format!("{class}.0.0")
}

/// Whether `text` starts with a three-digit SMTP reply code and a space.
fn looks_like_reply(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && matches!(bytes[0], b'2'..=b'5')
        && bytes[3] == b' '
}

/// `class.subject.detail` with class 2, 4 or 5 and numbers of up to three digits.
fn is_enhanced_code(code: &str) -> bool {
    let parts: Vec<&str> = code.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `text` made safe for one header line: no line breaks or controls, ASCII only, bounded.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else if c.is_ascii_whitespace() {
                ' '
            } else {
                '?'
            }
        })
        .take(MAX_REPLY)
        .collect()
}

fn transfer_encoding(returned: Returned<'_>) -> &'static str {
    let bytes = match returned {
        Returned::Headers(bytes) | Returned::Full(bytes) => bytes,
    };
    if bytes.is_ascii() { "7bit" } else { "8bit" }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn unix_seconds_of_ms(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use ferrymail_rpc::queue::{DsnReturn, Envelope};
    use ferrymail_store::blob::BlobId;
    use mail_parser::{MessageParser, MimeHeaders};

    use super::*;
    use crate::model::queue_id::MessageId;

    fn record(ret: Option<DsnReturn>) -> MessageRecord {
        let now = SystemTime::now();
        let arrival_ms = MessageId::generate(now).unix_millis();
        MessageRecord {
            id: MessageId::generate(now),
            envelope: Envelope {
                sender: "alice@example.org".into(),
                envid: Some("ENV\r\nBcc: injected".into()),
                ret,
                ..Envelope::default()
            },
            size: 100,
            arrival_ms,
            expiry_ms: arrival_ms + 5 * 86_400_000,
            blob: BlobId::from_bytes([1; 16]),
            prepend: Vec::new(),
            delay_notices: 0,
            due_ms: None,
            recipients: 2,
            held: false,
        }
    }

    fn recipients() -> Vec<ReportedRecipient> {
        vec![
            ReportedRecipient {
                address: "nobody@example.net".into(),
                orcpt: Some("Nobody@example.net".into()),
                action: Action::Failed,
                reason: "550 5.1.1 <nobody@example.net> User unknown\r\nX-Evil: 1".into(),
            },
            ReportedRecipient {
                address: "slow@example.net".into(),
                orcpt: None,
                action: Action::Delayed,
                reason: "connection refused".into(),
            },
        ]
    }

    const ORIGINAL: &[u8] = b"From: alice@example.org\r\nSubject: hello\r\n\r\nsecret body\r\n";

    #[test]
    fn a_report_is_a_multipart_report_with_the_status_of_each_recipient() {
        let record = record(None);
        let recipients = recipients();
        let report = Report {
            hostname: "mx.example.com",
            record: &record,
            recipients: &recipients,
            returned: Returned::Headers(b"From: alice@example.org\r\nSubject: hello\r\n"),
            now: SystemTime::now(),
        }
        .build();
        let message = MessageParser::default().parse(&report).unwrap();
        assert_eq!(
            message.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        assert_eq!(
            message.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        let content_type = message.content_type().unwrap();
        assert_eq!(content_type.ctype(), "multipart");
        assert_eq!(content_type.subtype(), Some("report"));
        assert_eq!(
            content_type.attribute("report-type"),
            Some("delivery-status")
        );
        let text = String::from_utf8_lossy(&report);
        for expected in [
            "Reporting-MTA: dns; mx.example.com\r\n",
            "Original-Envelope-Id: ENV  Bcc: injected\r\n",
            "Original-Recipient: rfc822;Nobody@example.net\r\n",
            "Final-Recipient: rfc822; nobody@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net> User unknown  X-Evil: 1\r\n",
            "Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.0.0\r\n",
            "Will-Retry-Until: ",
            "Content-Type: text/rfc822-headers",
            "Subject: hello",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert!(
            !text.contains("\r\nX-Evil"),
            "a reply cannot add header lines"
        );
        assert!(
            !text.contains("\r\nBcc:"),
            "an ENVID cannot add header lines"
        );
        assert!(!text.contains("secret body"));
    }

    #[test]
    fn the_whole_message_is_returned_only_when_asked_for() {
        let record = record(Some(DsnReturn::Full));
        let report = Report {
            hostname: "mx.example.com",
            record: &record,
            recipients: &recipients()[..1],
            returned: Returned::Full(ORIGINAL),
            now: SystemTime::now() + Duration::from_secs(1),
        }
        .build();
        let text = String::from_utf8_lossy(&report);
        assert!(text.contains("Content-Type: message/rfc822"), "{text}");
        assert!(text.contains("secret body"), "{text}");
    }

    #[test]
    fn status_codes_come_from_the_reply_or_its_class() {
        let cases = [
            (Action::Failed, "550 5.7.1 relay denied", "5.7.1"),
            (Action::Failed, "554 transaction failed", "5.0.0"),
            (
                Action::Failed,
                "expired: not delivered in time; last reply: x",
                "4.4.7",
            ),
            (Action::Failed, "MAIL FROM: 550 5.1.8 bad sender", "5.0.0"),
            (Action::Delayed, "451 4.3.0 try later", "4.3.0"),
            (Action::Delayed, "421 closing", "4.0.0"),
            (Action::Delayed, "connection refused", "4.0.0"),
            (Action::Failed, "550 9.9.9 nonsense", "5.0.0"),
            (Action::Failed, "", "5.0.0"),
        ];
        for (action, reason, expected) in cases {
            assert_eq!(status_code(action, reason), expected, "{reason:?}");
        }
    }
}
