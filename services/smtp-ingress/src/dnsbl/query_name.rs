//! The names a blocklist is asked about (RFC 5782 §2.1–2.3).

use std::fmt::Write;
use std::net::IpAddr;

/// `<reversed address>.<zone>`: IPv4 by octets, IPv6 by nibbles (RFC 5782 §2.1, §2.4).
pub(crate) fn for_address(address: IpAddr, zone: &str) -> String {
    let mut name = String::with_capacity(72 + zone.len());
    match address {
        IpAddr::V4(v4) => {
            for octet in v4.octets().iter().rev() {
                let _ = write!(name, "{octet}.");
            }
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
        }
    }
    name.push_str(zone);
    name
}

/// `<domain>.<zone>` (RFC 5782 §2.3), or `None` when `domain` is not a domain name a zone
/// could list: an address literal, a single label, or a name too long to prefix.
pub(crate) fn for_domain(domain: &str, zone: &str) -> Option<String> {
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let is_domain = domain.contains('.')
        && domain.split('.').all(label_ok)
        && domain.parse::<IpAddr>().is_err();
    let name = format!("{domain}.{zone}");
    (is_domain && name.len() <= 253).then_some(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ipv4_addresses_are_reversed_by_octet() {
        let name = for_address("192.0.2.99".parse().unwrap(), "bl.example");
        assert_eq!(name, "99.2.0.192.bl.example");
        let name = for_address("127.0.0.1".parse().unwrap(), "zen.example");
        assert_eq!(name, "1.0.0.127.zen.example");
    }

    #[test]
    fn ipv6_addresses_are_reversed_by_nibble() {
        // RFC 5782 §2.4's example.
        let name = for_address(
            "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
            "ugly.example.com",
        );
        assert_eq!(
            name,
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        let name = for_address("::1".parse().unwrap(), "bl.example");
        assert_eq!(name, format!("1.{}bl.example", "0.".repeat(31)));
    }

    #[test]
    fn domains_are_prefixed_to_the_zone() {
        assert_eq!(
            for_domain("Spam.Example.", "dbl.example"),
            Some("spam.example.dbl.example".to_owned())
        );
        assert_eq!(for_domain("[192.0.2.1]", "dbl.example"), None);
        assert_eq!(for_domain("192.0.2.1", "dbl.example"), None);
        assert_eq!(for_domain("localhost", "dbl.example"), None);
        assert_eq!(for_domain("a..b", "dbl.example"), None);
        let long = format!("{}.example", "a".repeat(63) + &".b".repeat(100));
        assert_eq!(for_domain(&long, "dbl.example"), None);
    }
}
