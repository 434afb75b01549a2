//! The `Received` trace header (RFC 5321 §4.4) added in front of every message.

use std::net::IpAddr;

use mail_builder::headers::date::Date;

/// A `Received:` header with its trailing CRLF. Its `id` clause is the queue id the message
/// will have, so a copy of the message leads back to the queue and its logs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn received_header(
    hostname: &str,
    helo: &str,
    client: IpAddr,
    lmtp: bool,
    esmtp: bool,
    authenticated: bool,
    tls: Option<&str>,
    single_recipient: Option<&str>,
    queue_id: &str,
) -> String {
    // RFC 3848 protocol names: ESMTP plus S (TLS) and A (authenticated).
    let protocol = match (lmtp, esmtp, tls.is_some(), authenticated) {
        (true, ..) => "LMTP".to_string(),
        (false, false, _, _) => "SMTP".to_string(),
        (false, true, s, a) => format!(
            "ESMTP{}{}",
            if s { "S" } else { "" },
            if a { "A" } else { "" }
        ),
    };
    let helo: String = helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let mut header = format!(
        "Received: from {helo} ([{client}])\r\n\tby {hostname} (ferrymail) with {protocol} id {queue_id}"
    );
    if let Some(tls) = tls {
        header.push_str(&format!("\r\n\t(TLS {tls})"));
    }
    if let Some(rcpt) = single_recipient {
        let rcpt: String = rcpt.chars().filter(|c| !c.is_control()).collect();
        header.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    header.push_str(&format!(";\r\n\t{}\r\n", Date::now().to_rfc822()));
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_tls_details() {
        let h = received_header(
            "mx.test",
            "client.example",
            "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            false,
            true,
            true,
            Some("version=TLSv1_3"),
            Some("a@b"),
            "01J9ZK3M5Q8W2XGJ4R6T0B7C1D",
        );
        assert!(h.starts_with("Received: from client.example ([192.0.2.1])\r\n\tby mx.test (ferrymail) with ESMTPSA id 01J9ZK3M5Q8W2XGJ4R6T0B7C1D\r\n\t(TLS version=TLSv1_3)\r\n\tfor <a@b>;\r\n\t"), "{h}");
        assert!(h.ends_with("\r\n"));
        let plain = received_header(
            "mx.test",
            "x\r\nInjected: yes",
            "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            false,
            false,
            false,
            None,
            None,
            "01J9ZK3M5Q8W2XGJ4R6T0B7C1D",
        );
        assert!(
            plain.contains("with SMTP id 01J9ZK3M5Q8W2XGJ4R6T0B7C1D;")
                && !plain.contains("\r\nInjected"),
            "{plain}"
        );
    }
}
