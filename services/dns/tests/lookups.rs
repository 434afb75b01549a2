//! The resolver built from `resolver.*` asks the configured name servers: MX, A/AAAA and TXT
//! answers, a missing name told apart from a DNS failure, over UDP and TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use ferrymail_config::load_str;
use ferrymail_config::model::outbound::IpStrategy;
use ferrymail_config::model::resolver::Resolver;
use ferrymail_dns::{LookupError, MxHost, authenticator, ip_addresses, mta_sts_id, mx_hosts};
use ferrymail_e2e::FakeDns;

const STRATEGIES: [IpStrategy; 4] = [
    IpStrategy::Ipv4Only,
    IpStrategy::Ipv6Only,
    IpStrategy::Ipv4ThenIpv6,
    IpStrategy::Ipv6ThenIpv4,
];

fn settings(resolver_section: &str) -> Resolver {
    load_str(
        "dns.toml",
        &format!("[server]\nhostname = \"mx.test\"\n{resolver_section}"),
    )
    .unwrap()
    .resolver
}

#[tokio::test]
async fn mx_hosts_come_most_preferred_first_with_their_addresses() {
    let dns = FakeDns::start();
    dns.add_mx("example.org", 20, "backup.example.org");
    dns.add_mx("example.org", 10, "mx1.example.org");
    dns.add_a("mx1.example.org", "127.0.0.10".parse().unwrap());
    dns.add_aaaa("backup.example.org", "::1".parse().unwrap());
    let resolver = authenticator(&settings(&dns.resolver_config())).unwrap();

    let hosts = mx_hosts(&resolver, "example.org").await.unwrap();
    assert_eq!(
        hosts,
        [
            MxHost {
                preference: 10,
                host: "mx1.example.org".into()
            },
            MxHost {
                preference: 20,
                host: "backup.example.org".into()
            },
        ]
    );
    let v4 = ip_addresses(&resolver, "mx1.example.org", IpStrategy::Ipv4ThenIpv6)
        .await
        .unwrap();
    assert_eq!(v4, ["127.0.0.10".parse::<std::net::IpAddr>().unwrap()]);
    // No A record: the AAAA record answers.
    let v6 = ip_addresses(&resolver, "backup.example.org", IpStrategy::Ipv4ThenIpv6)
        .await
        .unwrap();
    assert_eq!(v6, ["::1".parse::<std::net::IpAddr>().unwrap()]);
}

#[tokio::test]
async fn a_missing_name_is_not_found_and_a_failing_server_is_temporary() {
    let dns = FakeDns::start();
    dns.fail("broken.example");
    let resolver = authenticator(&settings(&dns.resolver_config())).unwrap();

    let missing = mx_hosts(&resolver, "nowhere.example").await.unwrap_err();
    assert!(
        matches!(missing, LookupError::NotFound { kind: "MX", .. }),
        "{missing:?}"
    );
    let failing = mx_hosts(&resolver, "broken.example").await.unwrap_err();
    assert!(failing.is_temporary(), "{failing:?}");
    for strategy in STRATEGIES {
        let failing = ip_addresses(&resolver, "broken.example", strategy)
            .await
            .unwrap_err();
        assert!(failing.is_temporary(), "{strategy:?}: {failing:?}");
        let missing = ip_addresses(&resolver, "nowhere.example", strategy)
            .await
            .unwrap_err();
        assert!(!missing.is_temporary(), "{strategy:?}: {missing:?}");
    }
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_temporary_failure() {
    // A bound socket that never answers: the query times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let section = format!(
        "[resolver]\ntype = \"custom\"\ncustom = [\"udp://{}\"]\ntimeout = \"200ms\"\nattempts = 1\ntry-tcp-on-error = false\n",
        silent.local_addr().unwrap()
    );
    let resolver = authenticator(&settings(&section)).unwrap();
    let error = mx_hosts(&resolver, "example.org").await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
}

#[tokio::test]
async fn tcp_name_servers_are_asked_over_tcp() {
    let dns = FakeDns::start();
    let long_record = format!("v=spf1 {} -all", "ip4:192.0.2.1 ".repeat(40));
    dns.add_txt("example.org", &long_record);
    let section = format!(
        "[resolver]\ntype = \"custom\"\ncustom = [\"tcp://{}\"]\n",
        dns.address()
    );
    let resolver = authenticator(&settings(&section)).unwrap();
    let text = resolver.txt_raw_lookup("example.org").await.unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), long_record);
}

#[test]
fn the_default_reads_the_system_configuration() {
    // This machine has an /etc/resolv.conf; the default must accept it.
    if std::path::Path::new("/etc/resolv.conf").exists() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        authenticator(&settings("")).unwrap();
    }
}

#[tokio::test]
async fn the_ip_strategy_picks_and_orders_the_address_families() {
    let dns = FakeDns::start();
    dns.add_a("dual.example", "127.0.0.7".parse().unwrap());
    dns.add_aaaa("dual.example", "::1".parse().unwrap());
    dns.add_a("v4.example", "127.0.0.8".parse().unwrap());
    let resolver = authenticator(&settings(&dns.resolver_config())).unwrap();
    let (v4, v6): (IpAddr, IpAddr) = ("127.0.0.7".parse().unwrap(), "::1".parse().unwrap());
    let cases = [
        (IpStrategy::Ipv4Only, vec![v4]),
        (IpStrategy::Ipv6Only, vec![v6]),
        (IpStrategy::Ipv4ThenIpv6, vec![v4, v6]),
        (IpStrategy::Ipv6ThenIpv4, vec![v6, v4]),
    ];
    for (strategy, expected) in cases {
        let found = ip_addresses(&resolver, "dual.example", strategy)
            .await
            .unwrap();
        assert_eq!(found, expected, "{strategy:?}");
    }
    let only_v4 = ip_addresses(&resolver, "v4.example", IpStrategy::Ipv6ThenIpv4)
        .await
        .unwrap();
    assert_eq!(
        only_v4,
        ["127.0.0.8".parse::<IpAddr>().unwrap()],
        "the other family fills in"
    );
    let none = ip_addresses(&resolver, "v4.example", IpStrategy::Ipv6Only)
        .await
        .unwrap_err();
    assert!(
        matches!(none, LookupError::NotFound { kind: "AAAA", .. }),
        "ipv6_only never falls back to IPv4: {none:?}"
    );
}

#[tokio::test]
async fn mta_sts_records_give_their_id_and_tell_absence_from_failure() {
    let dns = FakeDns::start();
    dns.add_txt("_mta-sts.example.org", "v=STSv1; id=20261122T0415;");
    dns.add_txt("_mta-sts.broken.example", "v=STSv2; id=1;");
    dns.add_txt("_mta-sts.noid.example", "v=STSv1;");
    dns.fail("_mta-sts.failing.example");
    let resolver = authenticator(&settings(&dns.resolver_config())).unwrap();

    assert_eq!(
        mta_sts_id(&resolver, "example.org").await,
        Ok("20261122T0415".to_owned())
    );
    for domain in ["nowhere.example", "broken.example", "noid.example"] {
        let result = mta_sts_id(&resolver, domain).await;
        assert!(
            matches!(result, Err(LookupError::NotFound { .. })),
            "{domain}: {result:?}"
        );
    }
    let failed = mta_sts_id(&resolver, "failing.example").await;
    assert!(
        failed.as_ref().is_err_and(LookupError::is_temporary),
        "{failed:?}"
    );
}
