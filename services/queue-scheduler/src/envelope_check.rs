//! What the queue accepts in an envelope, checked before any byte of the body is stored.
//!
//! The ingress checks addresses against SMTP's grammar; the queue checks what it relies on
//! itself: something to deliver to, no text that could break a header or a protocol line when
//! it is written out again (in `Received:`, a DSN, an SMTP command), and sizes that keep every
//! record and the enqueue transaction within the store's limits.

use ferrymail_rpc::queue::{Envelope, QueueError};

/// Most recipients of one message. Postfix's default `smtpd_recipient_limit`; with
/// [`MAX_TEXT`] it bounds the enqueue transaction to a few megabytes, under the store's 10 MB.
pub const MAX_RECIPIENTS: usize = 1000;

/// Longest text field (address, ORCPT, ENVID, HELO name, identity, trace context), in bytes:
/// four times SMTP's 256-byte path limit, so only abuse is refused.
pub const MAX_TEXT: usize = 1024;

/// Checks `envelope`; `InvalidArgument` names the first problem.
pub(crate) fn check(envelope: &Envelope) -> Result<(), QueueError> {
    if envelope.recipients.is_empty() {
        return Err(invalid("the envelope has no recipient".into()));
    }
    if envelope.recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(format!(
            "{} recipients; at most {MAX_RECIPIENTS} per message",
            envelope.recipients.len()
        )));
    }
    text("sender", &envelope.sender)?;
    for recipient in &envelope.recipients {
        if recipient.address.is_empty() {
            return Err(invalid("a recipient address is empty".into()));
        }
        text("recipient", &recipient.address)?;
        if let Some(orcpt) = &recipient.orcpt {
            text("orcpt", orcpt)?;
        }
    }
    let optional = [
        ("envid", envelope.envid.as_deref()),
        ("authenticated_as", envelope.authenticated_as.as_deref()),
        ("trace_parent", envelope.trace_parent.as_deref()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            text(name, value)?;
        }
    }
    text("helo", &envelope.helo)
}

/// A text field: bounded, and free of the characters that end a line or a C string.
fn text(name: &str, value: &str) -> Result<(), QueueError> {
    if value.len() > MAX_TEXT {
        return Err(invalid(format!(
            "{name} is {} bytes; at most {MAX_TEXT}",
            value.len()
        )));
    }
    if let Some(bad) = value.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(invalid(format!(
            "{name} {:?} contains {bad:?}",
            value.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

fn invalid(reason: String) -> QueueError {
    QueueError::InvalidArgument(reason)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ferrymail_rpc::queue::Recipient;

    use super::*;

    fn envelope(recipients: &[&str]) -> Envelope {
        Envelope {
            sender: "alice@example.org".into(),
            recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
            ..Envelope::default()
        }
    }

    fn refused(envelope: &Envelope) -> String {
        match check(envelope) {
            Err(QueueError::InvalidArgument(reason)) => reason,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn good_envelopes_pass() {
        check(&envelope(&["bob@example.net"])).unwrap();
        let null_sender = Envelope {
            sender: String::new(),
            ..envelope(&["postmaster"])
        };
        check(&null_sender).unwrap();
    }

    #[test]
    fn bad_envelopes_are_refused_with_the_reason() {
        assert!(refused(&envelope(&[])).contains("no recipient"));
        assert!(refused(&envelope(&[""])).contains("empty"));
        assert!(refused(&envelope(&["bob@example.net\r\nRCPT TO:<x>"])).contains("recipient"));
        assert!(refused(&envelope(&["bob\0@example.net"])).contains("recipient"));
        let sender = Envelope {
            sender: "alice@example.org\n".into(),
            ..envelope(&["bob@example.net"])
        };
        assert!(refused(&sender).contains("sender"));
        let helo = Envelope {
            helo: "x\ry".into(),
            ..envelope(&["bob@example.net"])
        };
        assert!(refused(&helo).contains("helo"));
        let long = "a".repeat(MAX_TEXT) + "@example.net";
        assert!(refused(&envelope(&[&long])).contains("bytes"));
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@example.net"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(refused(&envelope(&many)).contains("recipients"));
    }
}
