//! The DNSSEC-aware resolver reports the AD bit of the configured name server's answers:
//! secure and insecure answers, TLSA records as published, a missing name told apart from a
//! failure, and answers that cannot be read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferrymail_config::load_str;
use ferrymail_config::model::resolver::Resolver;
use ferrymail_dns::{DnssecResolver, LookupError, SecureAddresses, TlsaRecord, dnssec_resolver};
use ferrymail_e2e::FakeDns;
use hickory_resolver::proto::rr::RecordType;

fn resolver(dns: &FakeDns) -> DnssecResolver {
    let settings: Resolver = load_str(
        "dns.toml",
        &format!(
            "[server]\nhostname = \"mx.test\"\n{}",
            dns.resolver_config()
        ),
    )
    .unwrap()
    .resolver;
    dnssec_resolver(&settings).unwrap()
}

#[tokio::test]
async fn the_ad_bit_tells_secure_answers_from_insecure_ones() {
    let dns = FakeDns::start();
    dns.add_mx("signed.example", 10, "mx.signed.example");
    dns.add_mx("unsigned.example", 10, "mx.unsigned.example");
    dns.add_a("mx.signed.example", "127.0.0.1".parse().unwrap());
    dns.add_aaaa("v6.signed.example", "::1".parse().unwrap());
    dns.add_a("mx.unsigned.example", "127.0.0.1".parse().unwrap());
    for name in ["signed.example", "mx.signed.example", "v6.signed.example"] {
        dns.secure(name);
    }
    let resolver = resolver(&dns);
    assert_eq!(resolver.mx_is_secure("signed.example").await, Ok(true));
    assert_eq!(resolver.mx_is_secure("unsigned.example").await, Ok(false));
    assert_eq!(
        resolver.addresses_are_secure("mx.signed.example").await,
        Ok(true)
    );
    assert_eq!(
        resolver.addresses_are_secure("v6.signed.example").await,
        Ok(true)
    );
    assert_eq!(
        resolver.addresses_are_secure("mx.unsigned.example").await,
        Ok(false)
    );
}

#[tokio::test]
async fn an_alias_reports_where_its_cname_chain_ends_and_whether_all_of_it_is_secure() {
    let dns = FakeDns::start();
    dns.add_cname("Alias.Signed.Example", "mx.signed.example");
    dns.add_cname("half.signed.example", "mx.unsigned.example");
    dns.add_a("mx.signed.example", "127.0.0.1".parse().unwrap());
    dns.add_a("mx.unsigned.example", "127.0.0.1".parse().unwrap());
    for name in [
        "alias.signed.example",
        "half.signed.example",
        "mx.signed.example",
    ] {
        dns.secure(name);
    }
    let resolver = resolver(&dns);
    let found = |secure: bool, canonical: &str| {
        Ok(SecureAddresses {
            secure,
            canonical: canonical.to_owned(),
        })
    };
    assert_eq!(
        resolver.addresses("alias.signed.example.").await,
        found(true, "mx.signed.example")
    );
    assert_eq!(
        resolver.addresses("mx.signed.example").await,
        found(true, "mx.signed.example")
    );
    assert_eq!(
        resolver.addresses("half.signed.example").await,
        found(false, "mx.unsigned.example"),
        "an insecure link makes the whole answer insecure"
    );
}

#[tokio::test]
async fn tlsa_records_come_as_published_with_their_status() {
    let dns = FakeDns::start();
    dns.add_tlsa("_25._tcp.mx.example", 3, 1, 1, &[7; 32]);
    dns.add_tlsa("_25._tcp.mx.example", 0, 0, 1, &[9; 32]);
    dns.add_tlsa("_25._tcp.mx.example", 255, 9, 9, &[1]);
    dns.secure("_25._tcp.mx.example");
    dns.add_tlsa("_25._tcp.insecure.example", 3, 1, 1, &[7; 32]);
    let resolver = resolver(&dns);

    let answer = resolver.tlsa("_25._tcp.mx.example").await.unwrap();
    assert!(answer.secure);
    let mut records = answer.records;
    records.sort_by_key(|r| r.usage);
    assert_eq!(
        records,
        [
            TlsaRecord {
                usage: 0,
                selector: 0,
                matching: 1,
                data: vec![9; 32]
            },
            TlsaRecord {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![7; 32]
            },
            TlsaRecord {
                usage: 255,
                selector: 9,
                matching: 9,
                data: vec![1]
            },
        ]
    );
    let insecure = resolver.tlsa("_25._tcp.insecure.example").await.unwrap();
    assert!(!insecure.secure);
    assert_eq!(insecure.records.len(), 1);
}

#[tokio::test]
async fn no_record_is_not_found_and_a_failure_is_temporary() {
    let dns = FakeDns::start();
    dns.add_a("mx.example", "127.0.0.1".parse().unwrap());
    dns.fail("_25._tcp.broken.example");
    dns.add_undecodable_tlsa("_25._tcp.garbled.example", &[3]);
    let resolver = resolver(&dns);

    let nodata = resolver.tlsa("mx.example").await;
    assert!(
        matches!(nodata, Err(LookupError::NotFound { kind: "TLSA", .. })),
        "{nodata:?}"
    );
    let nxdomain = resolver.tlsa("_25._tcp.nowhere.example").await;
    assert!(
        matches!(nxdomain, Err(LookupError::NotFound { .. })),
        "{nxdomain:?}"
    );
    let servfail = resolver.tlsa("_25._tcp.broken.example").await;
    assert!(
        matches!(servfail, Err(LookupError::Temporary { .. })),
        "{servfail:?}"
    );
    let garbled = resolver.tlsa("_25._tcp.garbled.example").await;
    assert!(
        matches!(garbled, Err(LookupError::Temporary { .. })),
        "{garbled:?}"
    );
    let bad_name = resolver.tlsa("not a name..example").await;
    assert!(bad_name.is_err(), "{bad_name:?}");
}

/// How many queries for `kind` records of `name` the server received.
fn asked(dns: &FakeDns, name: &str, kind: RecordType) -> usize {
    dns.queries()
        .iter()
        .filter(|(n, k)| n == name && *k == kind)
        .count()
}

#[tokio::test]
async fn answers_are_kept_for_their_ttl_and_failures_are_not() {
    let dns = FakeDns::start();
    dns.set_ttl(300);
    dns.add_mx("signed.example", 10, "mx.signed.example");
    dns.secure("signed.example");
    dns.add_tlsa("_25._tcp.mx.signed.example", 3, 1, 1, &[7; 32]);
    dns.fail("broken.example");
    let resolver = resolver(&dns);

    for _ in 0..3 {
        assert_eq!(resolver.mx_is_secure("signed.example").await, Ok(true));
        let tlsa = resolver.tlsa("_25._tcp.mx.signed.example").await.unwrap();
        assert_eq!(tlsa.records.len(), 1);
        let missing = resolver.mx_is_secure("nowhere.example").await;
        assert!(
            matches!(missing, Err(LookupError::NotFound { .. })),
            "{missing:?}"
        );
        let failed = resolver.mx_is_secure("broken.example").await;
        assert!(
            matches!(failed, Err(LookupError::Temporary { .. })),
            "{failed:?}"
        );
    }
    assert_eq!(asked(&dns, "signed.example", RecordType::MX), 1);
    assert_eq!(
        asked(&dns, "_25._tcp.mx.signed.example", RecordType::TLSA),
        1
    );
    assert_eq!(
        asked(&dns, "nowhere.example", RecordType::MX),
        1,
        "NXDOMAIN kept for the SOA's TTL"
    );
    // The pool may ask a failing server more than once per call; what matters is that every
    // call asks again.
    let failures = asked(&dns, "broken.example", RecordType::MX);
    assert!(
        failures >= 3,
        "SERVFAIL never kept: {failures} queries for 3 calls"
    );
}

#[tokio::test]
async fn answers_without_a_ttl_are_asked_again() {
    let dns = FakeDns::start();
    dns.set_ttl(0);
    dns.add_mx("signed.example", 10, "mx.signed.example");
    let resolver = resolver(&dns);
    for _ in 0..2 {
        assert_eq!(resolver.mx_is_secure("signed.example").await, Ok(false));
    }
    assert_eq!(asked(&dns, "signed.example", RecordType::MX), 2);
}
