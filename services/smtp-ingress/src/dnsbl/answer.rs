//! What a blocklist's A answer means for one zone: listed, not listed, or one of the
//! blocklist's own error answers, which never list.

use std::net::Ipv4Addr;

use ferrymail_config::model::dnsbl::DnsblZone;

/// The outcome of asking one zone about one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An answer among the zone's `replies`: the name is listed.
    Listed,
    /// No such name, or answers the zone's `replies` do not include.
    NotListed,
    /// The blocklist answered with an error code (its own refusal, such as Spamhaus's
    /// "public resolver" 127.255.255.254): the operator's resolver is being refused.
    ErrorCode(Ipv4Addr),
    /// The zone could not be asked (timeout, SERVFAIL): not listed, fail open.
    Failed,
}

impl Answer {
    /// The `result` label of `smtp_dnsbl_lookups_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Answer::Listed => "listed",
            Answer::NotListed => "not_listed",
            Answer::ErrorCode(_) => "error_answer",
            Answer::Failed => "failed",
        }
    }
}

/// Whether `address` is an error answer rather than a listing: `127.0.0.1` (answered by
/// some zones for errors, and never a listing: it is what a test entry for the loopback
/// would collide with), `127.255.255.0/24` (Spamhaus's "query refused, public resolver,
/// rate limited" codes), and anything outside 127.0.0.0/8 (RFC 5782 §2.1: a wildcard or a
/// hijacking resolver).
pub(crate) fn is_error_answer(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    a != 127 || address == Ipv4Addr::new(127, 0, 0, 1) || (b == 255 && c == 255)
}

/// What the A records `addresses` mean for `zone`. An error answer wins over a listing in
/// the same answer: a blocklist that refuses the resolver says nothing else reliable.
pub(crate) fn classify(zone: &DnsblZone, addresses: &[Ipv4Addr]) -> Answer {
    if let Some(&error) = addresses.iter().find(|&&a| is_error_answer(a)) {
        return Answer::ErrorCode(error);
    }
    if addresses.iter().any(|&a| zone.lists(a)) {
        Answer::Listed
    } else {
        Answer::NotListed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ferrymail_config::model::dnsbl::ReplyRange;
    use ferrymail_config::value::DnsblScope;

    use super::*;

    fn zone(replies: &[(Ipv4Addr, Ipv4Addr)]) -> DnsblZone {
        DnsblZone {
            id: "bl".into(),
            zone: "bl.example".into(),
            scope: DnsblScope::Ip,
            weight: 1,
            replies: replies
                .iter()
                .map(|&(first, last)| ReplyRange { first, last })
                .collect(),
        }
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_replies_list_any_127_answer_but_the_errors() {
        let zone = zone(&[(ip("127.0.0.0"), ip("127.255.255.255"))]);
        assert_eq!(classify(&zone, &[ip("127.0.0.2")]), Answer::Listed);
        assert_eq!(classify(&zone, &[ip("127.0.1.4")]), Answer::Listed);
        assert_eq!(classify(&zone, &[ip("127.255.254.1")]), Answer::Listed);
        assert_eq!(classify(&zone, &[]), Answer::NotListed);
    }

    #[test]
    fn error_answers_never_list() {
        let zone = zone(&[(ip("127.0.0.0"), ip("127.255.255.255"))]);
        for error in [
            "127.255.255.252",
            "127.255.255.254",
            "127.255.255.255",
            "127.0.0.1",
        ] {
            assert_eq!(
                classify(&zone, &[ip(error)]),
                Answer::ErrorCode(ip(error)),
                "{error}"
            );
        }
        for outside in ["10.0.0.2", "192.0.2.1", "128.0.0.2", "126.255.255.255"] {
            assert_eq!(
                classify(&zone, &[ip(outside)]),
                Answer::ErrorCode(ip(outside))
            );
        }
        let mixed = [ip("127.0.0.2"), ip("127.255.255.254")];
        assert_eq!(
            classify(&zone, &mixed),
            Answer::ErrorCode(ip("127.255.255.254"))
        );
    }

    #[test]
    fn configured_ranges_decide_what_lists() {
        let zone = zone(&[
            (ip("127.0.0.2"), ip("127.0.0.11")),
            (ip("127.0.1.0"), ip("127.0.1.255")),
        ]);
        assert_eq!(classify(&zone, &[ip("127.0.0.2")]), Answer::Listed);
        assert_eq!(classify(&zone, &[ip("127.0.0.11")]), Answer::Listed);
        assert_eq!(classify(&zone, &[ip("127.0.1.9")]), Answer::Listed);
        assert_eq!(classify(&zone, &[ip("127.0.0.12")]), Answer::NotListed);
        assert_eq!(
            classify(&zone, &[ip("127.0.0.12"), ip("127.0.0.4")]),
            Answer::Listed
        );
    }
}
