//! The macros (`SMFIC_MACRO`) sent before each command, named and filled as Sendmail and
//! Postfix do, from what the session knows.

use super::codec::{Packet, command, strings};
use crate::filter::{SessionFacts, TransactionFacts};

/// The `SMFIC_MACRO` packet for the command `code`, or `None` when there is nothing to say.
fn packet(code: u8, pairs: Vec<(&str, String)>) -> Option<Packet> {
    let pairs: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    if pairs.is_empty() {
        return None;
    }
    let mut data = vec![code];
    let flat: Vec<&str> = pairs.iter().flat_map(|(n, v)| [*n, v.as_str()]).collect();
    data.extend(strings(&flat));
    Some(Packet::new(command::MACRO, data))
}

/// Before CONNECT: who the client is and who we are.
pub(crate) fn connect(session: &SessionFacts) -> Option<Packet> {
    let client_name = session
        .client_name
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    let client_ip = session.client.ip().to_string();
    packet(
        command::CONNECT,
        vec![
            ("j", session.hostname.clone()),
            // The listener's id, as Sendmail's `DaemonPortOptions` name: OpenDKIM's `MTA`
            // setting signs mail arriving through the listeners it names ("submission").
            ("{daemon_name}", session.listener.clone()),
            ("{daemon_addr}", session.local.ip().to_string()),
            ("{daemon_port}", session.local.port().to_string()),
            ("{if_name}", session.hostname.clone()),
            ("{if_addr}", session.local.ip().to_string()),
            ("{client_addr}", client_ip.clone()),
            ("{client_port}", session.client.port().to_string()),
            ("{client_name}", client_name.clone()),
            ("{client_ptr}", client_name.clone()),
            ("_", format!("{client_name} [{client_ip}]")),
            ("v", "ferrymail".to_owned()),
        ],
    )
}

/// Before HELO: the TLS session, when there is one.
pub(crate) fn helo(session: &SessionFacts) -> Option<Packet> {
    let (version, cipher) = session.tls.clone().unwrap_or_default();
    packet(
        command::HELO,
        vec![("{tls_version}", version), ("{cipher}", cipher)],
    )
}

/// Before MAIL: the protocol, the login, the sender and the queue id when already chosen.
pub(crate) fn mail(session: &SessionFacts, transaction: &TransactionFacts) -> Option<Packet> {
    packet(
        command::MAIL,
        vec![
            ("r", protocol(session)),
            ("i", transaction.queue_id.clone().unwrap_or_default()),
            (
                "{auth_type}",
                session.auth_mechanism.clone().unwrap_or_default(),
            ),
            (
                "{auth_authen}",
                session.authenticated_as.clone().unwrap_or_default(),
            ),
            ("{mail_addr}", transaction.sender.clone()),
        ],
    )
}

/// Sendmail's `r`: how the message is received (`ESMTP`, `ESMTPS` with TLS, `ESMTPSA`
/// authenticated; `LMTP`).
fn protocol(session: &SessionFacts) -> String {
    if session.lmtp {
        return "LMTP".to_owned();
    }
    let tls = if session.tls.is_some() { "S" } else { "" };
    let auth = if session.authenticated_as.is_some() {
        "A"
    } else {
        ""
    };
    format!("ESMTP{tls}{auth}")
}

/// Before RCPT: the recipient.
pub(crate) fn rcpt(recipient: &str) -> Option<Packet> {
    packet(command::RCPT, vec![("{rcpt_addr}", recipient.to_owned())])
}

/// Before DATA, the header and the end of message: the queue id.
pub(crate) fn message(code: u8, transaction: &TransactionFacts) -> Option<Packet> {
    packet(
        code,
        vec![("i", transaction.queue_id.clone().unwrap_or_default())],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn empty_macros_are_left_out() {
        assert!(rcpt("").is_none());
        let packet = rcpt("b@example.org").unwrap();
        assert_eq!(packet.data, b"R{rcpt_addr}\0b@example.org\0");
        let facts = TransactionFacts {
            sender: "a@example.org".into(),
            ..TransactionFacts::default()
        };
        assert!(message(command::DATA, &facts).is_none());
    }
}
