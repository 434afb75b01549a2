//! `session.dnsbl.*`: DNS blocklists and allow lists asked about the client's address, its
//! EHLO name and its sender's domain, with weights and a threshold as Postfix's postscreen
//! has them (`postscreen_dnsbl_sites`, `postscreen_dnsbl_threshold`).

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::bounds::require_nonzero;
use crate::keys;
use crate::reader::TableReader;
use crate::value::DnsblScope;

/// `session.dnsbl.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnsbl {
    /// `threshold`: the score at or above which a client is refused.
    pub threshold: u32,
    /// `allow-threshold`: an `ip` score at or below it skips the domain checks (0: never).
    pub allow_threshold: i32,
    /// `timeout`: how long the lookups of one stage may take together.
    pub timeout: Duration,
    /// `server.<id>`, the enabled ones, by id.
    pub zones: Vec<DnsblZone>,
}

impl Default for Dnsbl {
    /// No zone: nothing is asked.
    fn default() -> Self {
        Self {
            threshold: 1,
            allow_threshold: 0,
            timeout: Duration::from_secs(5),
            zones: Vec::new(),
        }
    }
}

impl Dnsbl {
    /// The enabled zones of `scope`.
    pub fn zones_of(&self, scope: DnsblScope) -> impl Iterator<Item = &DnsblZone> {
        self.zones.iter().filter(move |z| z.scope == scope)
    }
}

/// `session.dnsbl.server.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblZone {
    /// `<id>`.
    pub id: String,
    /// `zone`, lower case, without a trailing dot.
    pub zone: String,
    /// `scope`.
    pub scope: DnsblScope,
    /// `weight`: added to the score when the zone lists; negative for an allow list.
    pub weight: i32,
    /// `replies`: the A records that mean "listed".
    pub replies: Vec<ReplyRange>,
}

impl DnsblZone {
    /// Whether `answer` is one of the replies that mean "listed" here.
    pub fn lists(&self, answer: Ipv4Addr) -> bool {
        self.replies.iter().any(|r| r.contains(answer))
    }
}

/// Consecutive addresses, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRange {
    /// The first address.
    pub first: Ipv4Addr,
    /// The last address.
    pub last: Ipv4Addr,
}

impl ReplyRange {
    /// Whether `address` is in the range.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.first <= address && address <= self.last
    }
}

/// Every reply a blocklist can mean something by: 127.0.0.0/8 (RFC 5782 §2.1).
const LOOPBACK: ReplyRange = ReplyRange {
    first: Ipv4Addr::new(127, 0, 0, 0),
    last: Ipv4Addr::new(127, 255, 255, 255),
};

/// Reads `session.dnsbl` from its table `t`; `None` when something in it is invalid (reported).
pub(crate) fn read(t: &TableReader<'_>) -> Option<Dnsbl> {
    let threshold = t.get(&keys::SESSION_DNSBL_THRESHOLD);
    let allow_threshold = t.get(&keys::SESSION_DNSBL_ALLOW_THRESHOLD);
    let timeout = t.get(&keys::SESSION_DNSBL_TIMEOUT);
    require_nonzero(t, "timeout", timeout);
    if threshold == Some(0) {
        t.report(
            "threshold",
            "must be at least 1 (0 would refuse every client)",
        );
    }
    if allow_threshold.is_some_and(|a| a > 0) {
        t.report(
            "allow-threshold",
            "must be 0 (off) or negative: allow lists have negative weights",
        );
    }
    let mut zones = Vec::new();
    let mut valid = true;
    for (id, zone_table) in t.table("server").entries() {
        let enabled = zone_table.get(&keys::SESSION_DNSBL_SERVER_ENABLE);
        match read_zone(&id, &zone_table) {
            Some(zone) if enabled == Some(true) => zones.push(zone),
            Some(_) => {}
            None => valid = false,
        }
    }
    valid.then_some(())?;
    Some(Dnsbl {
        threshold: threshold.filter(|&n| n > 0)?,
        allow_threshold: allow_threshold.filter(|&n| n <= 0)?,
        timeout: timeout.filter(|d| !d.is_zero())?,
        zones,
    })
}

/// Reads `session.dnsbl.server.<id>`.
fn read_zone(id: &str, t: &TableReader<'_>) -> Option<DnsblZone> {
    let zone = t.get(&keys::SESSION_DNSBL_SERVER_ZONE);
    let scope = t.get(&keys::SESSION_DNSBL_SERVER_SCOPE);
    let weight = t.get(&keys::SESSION_DNSBL_SERVER_WEIGHT);
    let replies: Option<Vec<String>> = t.get(&keys::SESSION_DNSBL_SERVER_REPLIES);
    let zone = match zone.map(|z| parse_zone(&z)) {
        Some(Ok(zone)) => Some(zone),
        Some(Err(problem)) => {
            t.report("zone", problem);
            None
        }
        None => None,
    };
    if weight == Some(0) {
        t.report(
            "weight",
            "must not be 0 (a zone that never counts; use enable = false)",
        );
    }
    let replies = match replies.map(|r| parse_replies(&r)) {
        Some(Ok(replies)) => Some(replies),
        Some(Err(problem)) => {
            t.report("replies", problem);
            None
        }
        None => None,
    };
    Some(DnsblZone {
        id: id.to_owned(),
        zone: zone?,
        scope: scope?,
        weight: weight.filter(|&w| w != 0)?,
        replies: replies?,
    })
}

/// A zone name: DNS labels of letters, digits, `-` and `_`, lower-cased, trailing dot dropped.
fn parse_zone(text: &str) -> Result<String, String> {
    let zone = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    // Room for a reversed IPv6 address (64 characters) in front, within 253.
    if zone.is_empty() || zone.len() > 189 {
        return Err(format!(
            "{text:?} is not a zone name (1 to 189 characters, e.g. \"zen.spamhaus.org\")"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !zone.split('.').all(label_ok) {
        return Err(format!(
            "{text:?} is not a zone name (labels of letters, digits, '-' and '_', separated by dots)"
        ));
    }
    Ok(zone)
}

/// The `replies` list: at least one entry, each within 127.0.0.0/8.
fn parse_replies(entries: &[String]) -> Result<Vec<ReplyRange>, String> {
    if entries.is_empty() {
        return Err("needs at least one address, network or range".to_owned());
    }
    entries.iter().map(|e| parse_reply(e)).collect()
}

/// One `replies` entry: `127.0.0.2`, `127.0.0.0/24` or `127.0.0.2-127.0.0.11`.
fn parse_reply(entry: &str) -> Result<ReplyRange, String> {
    let address = |text: &str| {
        text.trim().parse::<Ipv4Addr>().map_err(|_| {
            format!(
                "{entry:?} is not an IPv4 address, network (127.0.0.0/24) or range (127.0.0.2-127.0.0.11)"
            )
        })
    };
    let range = if let Some((first, last)) = entry.split_once('-') {
        ReplyRange {
            first: address(first)?,
            last: address(last)?,
        }
    } else if entry.contains('/') {
        let net: Ipv4Net = entry
            .trim()
            .parse()
            .map_err(|_| format!("{entry:?} is not an IPv4 network such as 127.0.0.0/24"))?;
        ReplyRange {
            first: net.network(),
            last: net.broadcast(),
        }
    } else {
        let one = address(entry)?;
        ReplyRange {
            first: one,
            last: one,
        }
    };
    if range.first > range.last {
        return Err(format!("{entry:?} ends before it starts"));
    }
    if !LOOPBACK.contains(range.first) || !LOOPBACK.contains(range.last) {
        return Err(format!(
            "{entry:?} is outside 127.0.0.0/8, where blocklists answer (RFC 5782 §2.1)"
        ));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn range(first: [u8; 4], last: [u8; 4]) -> ReplyRange {
        ReplyRange {
            first: Ipv4Addr::from(first),
            last: Ipv4Addr::from(last),
        }
    }

    #[test]
    fn replies_are_addresses_networks_and_ranges() {
        assert_eq!(
            parse_reply("127.0.0.2"),
            Ok(range([127, 0, 0, 2], [127, 0, 0, 2]))
        );
        assert_eq!(
            parse_reply("127.0.0.0/24"),
            Ok(range([127, 0, 0, 0], [127, 0, 0, 255]))
        );
        assert_eq!(
            parse_reply("127.0.0.2-127.0.0.11"),
            Ok(range([127, 0, 0, 2], [127, 0, 0, 11]))
        );
        assert_eq!(
            parse_reply("127.0.0.2 - 127.0.0.11"),
            Ok(range([127, 0, 0, 2], [127, 0, 0, 11]))
        );
    }

    #[test]
    fn malformed_replies_are_refused_with_a_reason() {
        for (entry, says) in [
            ("127.0.0.300", "not an IPv4 address"),
            ("listed", "not an IPv4 address"),
            ("::1", "not an IPv4 address"),
            ("127.0.0.0/33", "not an IPv4 network"),
            ("127.0.0.11-127.0.0.2", "ends before it starts"),
            ("10.0.0.2", "outside 127.0.0.0/8"),
            ("126.0.0.0/7", "outside 127.0.0.0/8"),
        ] {
            let problem = parse_reply(entry).unwrap_err();
            assert!(problem.contains(says), "{entry}: {problem}");
        }
        assert!(parse_replies(&[]).is_err());
    }

    #[test]
    fn a_zone_lists_only_its_replies() {
        let zone = DnsblZone {
            id: "zen".into(),
            zone: "zen.example".into(),
            scope: DnsblScope::Ip,
            weight: 3,
            replies: vec![range([127, 0, 0, 2], [127, 0, 0, 11])],
        };
        assert!(zone.lists(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(zone.lists(Ipv4Addr::new(127, 0, 0, 11)));
        assert!(!zone.lists(Ipv4Addr::new(127, 0, 0, 12)));
        assert!(!zone.lists(Ipv4Addr::new(127, 0, 1, 2)));
    }

    #[test]
    fn zone_names_are_dns_names() {
        assert_eq!(
            parse_zone("Zen.Spamhaus.org."),
            Ok("zen.spamhaus.org".into())
        );
        assert_eq!(parse_zone("dbl_1.example"), Ok("dbl_1.example".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "bl example",
            "bl.example/24",
            &"a".repeat(64),
        ] {
            assert!(parse_zone(bad).is_err(), "{bad:?}");
        }
    }
}
