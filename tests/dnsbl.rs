//! DNS blocklists end to end: `ferrymail all` asks a fake DNS server's zones about the
//! client (127.0.0.1, or 127.0.0.2 as another client), its EHLO name and its sender's
//! domain; listings refuse, the blocklists' error answers and DNS failures never do, weights
//! add up to the threshold, allow lists take weight away, and authenticated sessions are not
//! judged by their EHLO name or sender.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, FakeDns, Ferrymail, SmtpClient, SmtpSink,
    SmtpSinkOptions, http_get, logins_directory, sasl_plain,
};
use hickory_proto::rr::RecordType;

const LISTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `ferrymail all` relaying everything to `sink`, asking `dns`, with `extra` configuration.
fn start(dns: &FakeDns, sink: &SmtpSink, extra: &str) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
{store}[session.rcpt]
relay = true
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
{resolver}{extra}
"#,
        store = EMBEDDED_STORE,
        sink = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    Ferrymail::start("all", &config)
}

/// A `session.dnsbl.server.<id>` table.
fn zone(id: &str, zone: &str, scope: &str, weight: i32) -> String {
    format!(
        "[session.dnsbl.server.{id}]\nzone = \"{zone}\"\nscope = \"{scope}\"\nweight = {weight}\n"
    )
}

/// Sends a whole message from an accepted client; returns the final reply code.
fn send_mail(client: &mut SmtpClient, helo: &str, sender: &str) -> u16 {
    assert_eq!(client.command(&format!("EHLO {helo}")).code, 250);
    let mail = client.command(&format!("MAIL FROM:<{sender}>"));
    if mail.code != 250 {
        return mail.code;
    }
    assert_eq!(client.command("RCPT TO:<bob@remote.test>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    let reply = client.send_data("Subject: hello\r\n\r\nHello.\r\n");
    client.command("QUIT");
    reply.code
}

/// The value of one sample on `/metrics`, 0 when absent.
fn metric(process: &mut Ferrymail, sample: &str) -> u64 {
    let body = http_get(process.address("admin"), "/metrics").unwrap().body;
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

/// How many times `name` was asked for its A record.
fn queries(dns: &FakeDns, name: &str) -> usize {
    dns.queries()
        .iter()
        .filter(|(asked, kind)| asked.trim_end_matches('.') == name && *kind == RecordType::A)
        .count()
}

fn smtp(process: &mut Ferrymail) -> SocketAddr {
    process.address("smtp")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_client_is_refused_at_connect_and_the_answer_is_cached() {
    let dns = FakeDns::start();
    dns.set_ttl(300);
    dns.add_a("1.0.0.127.bl.test", LISTED);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &zone("bl", "bl.test", "ip", 1));

    for _ in 0..2 {
        let client = SmtpClient::connect(smtp(&mut process));
        assert_eq!(client.greeting.code, 554, "{}", client.greeting);
        assert_eq!(
            client.greeting.text(),
            "5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test"
        );
    }
    assert_eq!(
        queries(&dns, "1.0.0.127.bl.test"),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(
        metric(
            &mut process,
            "smtp_dnsbl_rejections_total{stage=\"connect\"}"
        ),
        2
    );
    assert_eq!(
        metric(
            &mut process,
            "smtp_dnsbl_lookups_total{zone=\"bl.test\",result=\"listed\"}"
        ),
        2
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_answer_does_not_list_and_is_counted_and_logged() {
    let dns = FakeDns::start();
    dns.add_a("1.0.0.127.bl.test", Ipv4Addr::new(127, 255, 255, 254));
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &zone("bl", "bl.test", "ip", 1));

    let mut client = SmtpClient::connect(smtp(&mut process));
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    assert_eq!(
        send_mail(&mut client, "client.test", "alice@good.test"),
        250
    );
    assert_eq!(
        metric(
            &mut process,
            "smtp_dnsbl_lookups_total{zone=\"bl.test\",result=\"error_answer\"}"
        ),
        1
    );
    let warning = process.wait_for("the error answer's warning", |line| {
        line.message().contains("error code") && line.field("zone") == Some("bl.test")
    });
    assert_eq!(warning.field("level"), Some("WARN"), "{:?}", warning.0);
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_zone_lets_mail_through_and_is_counted() {
    let dns = FakeDns::start();
    dns.fail("1.0.0.127.bl.test");
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &zone("bl", "bl.test", "ip", 1));

    let mut client = SmtpClient::connect(smtp(&mut process));
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    assert_eq!(
        send_mail(&mut client, "client.test", "alice@good.test"),
        250
    );
    assert_eq!(
        metric(
            &mut process,
            "smtp_dnsbl_lookups_total{zone=\"bl.test\",result=\"failed\"}"
        ),
        1
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_add_up_to_the_threshold() {
    let dns = FakeDns::start();
    // 127.0.0.1 is listed by one zone, 127.0.0.2 by both.
    dns.add_a("1.0.0.127.a.test", LISTED);
    dns.add_a("2.0.0.127.a.test", LISTED);
    dns.add_a("2.0.0.127.b.test", LISTED);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let extra = format!(
        "[session.dnsbl]\nthreshold = 2\n{}{}",
        zone("a", "a.test", "ip", 1),
        zone("b", "b.test", "ip", 1)
    );
    let mut process = start(&dns, &sink, &extra);

    let mut once = SmtpClient::connect(smtp(&mut process));
    assert_eq!(once.greeting.code, 220, "{}", once.greeting);
    assert_eq!(send_mail(&mut once, "client.test", "alice@good.test"), 250);
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let twice = SmtpClient::connect_from(smtp(&mut process), other);
    assert_eq!(twice.greeting.code, 554, "{}", twice.greeting);
    assert_eq!(
        twice.greeting.text(),
        "5.7.1 Service unavailable; client [127.0.0.2] blocked using a.test, b.test"
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_list_lets_a_listed_client_through() {
    let dns = FakeDns::start();
    dns.add_a("1.0.0.127.bl.test", LISTED);
    dns.add_a("1.0.0.127.wl.test", LISTED);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let extra = format!(
        "{}{}",
        zone("bl", "bl.test", "ip", 1),
        zone("wl", "wl.test", "ip", -2)
    );
    let mut process = start(&dns, &sink, &extra);

    let mut client = SmtpClient::connect(smtp(&mut process));
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    assert_eq!(
        send_mail(&mut client, "client.test", "alice@good.test"),
        250
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

/// `bad-helo.test` is listed by the HELO zone, `spam.test` by the sender-domain zone.
fn publish_domains(dns: &FakeDns) {
    dns.add_a("bad-helo.test.helo.test", LISTED);
    dns.add_a("spam.test.dbl.test", LISTED);
}

fn domain_zones() -> String {
    format!(
        "{}{}",
        zone("helo", "helo.test", "helo", 1),
        zone("dbl", "dbl.test", "sender-domain", 1)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn helo_and_sender_domains_are_refused_at_their_stage() {
    let dns = FakeDns::start();
    publish_domains(&dns);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &domain_zones());

    let mut client = SmtpClient::connect(smtp(&mut process));
    assert_eq!(client.greeting.code, 220, "{}", client.greeting);
    let ehlo = client.command("EHLO bad-helo.test");
    assert_eq!(ehlo.code, 550, "{ehlo}");
    assert_eq!(
        ehlo.text(),
        "5.7.1 <bad-helo.test>: Helo command rejected: blocked using helo.test"
    );
    assert_eq!(client.command("EHLO good.test").code, 250);
    let mail = client.command("MAIL FROM:<eve@spam.test>");
    assert_eq!(mail.code, 550, "{mail}");
    assert_eq!(
        mail.text(),
        "5.7.1 <eve@spam.test>: Sender address rejected: domain spam.test blocked using dbl.test"
    );
    assert_eq!(
        client.command("MAIL FROM:<>").code,
        250,
        "the null sender has no domain"
    );
    client.command("RSET");
    client.command("QUIT");
    let mut clean = SmtpClient::connect(smtp(&mut process));
    assert_eq!(send_mail(&mut clean, "good.test", "alice@good.test"), 250);
    assert_eq!(
        metric(&mut process, "smtp_dnsbl_rejections_total{stage=\"ehlo\"}"),
        1
    );
    assert_eq!(
        metric(&mut process, "smtp_dnsbl_rejections_total{stage=\"mail\"}"),
        1
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authenticated_session_is_not_checked_at_mail() {
    let dns = FakeDns::start();
    publish_domains(&dns);
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let extra = format!(
        "{logins}[session.auth]\ndirectory = \"logins\"\nallow-plain-text = true\n{zones}",
        logins = logins_directory(&dovecot),
        zones = domain_zones(),
    );
    let mut process = start(&dns, &sink, &extra);

    // Where AUTH is offered, the EHLO name waits for MAIL FROM: the client may log in.
    let mut user = SmtpClient::connect(smtp(&mut process));
    assert_eq!(user.command("EHLO bad-helo.test").code, 250);
    let auth = user.command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, ALICE.1)));
    assert_eq!(auth.code, 235, "{auth}");
    assert_eq!(user.command("MAIL FROM:<alice@spam.test>").code, 250);
    user.command("QUIT");

    let mut stranger = SmtpClient::connect(smtp(&mut process));
    assert_eq!(stranger.command("EHLO bad-helo.test").code, 250);
    let mail = stranger.command("MAIL FROM:<eve@good.test>");
    assert_eq!(mail.code, 550, "{mail}");
    assert!(mail.text().contains("Helo command rejected"), "{mail}");
    let mail = stranger.command("MAIL FROM:<eve@spam.test>");
    assert_eq!(mail.code, 550, "{mail}");
    stranger.command("QUIT");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv6_client_is_asked_nibble_by_nibble() {
    let dns = FakeDns::start();
    // RFC 5782 §2.4: ::1 is its 32 nibbles, last first, each a label.
    let name = format!("1.{}bl6.test", "0.".repeat(31));
    dns.add_a(&name, LISTED);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let extra = format!(
        "[server.listener.smtp6]\nbind = \"[::1]:0\"\nprotocol = \"smtp\"\n{}",
        zone("bl6", "bl6.test", "ip", 1)
    );
    let mut process = start(&dns, &sink, &extra);

    let client = SmtpClient::connect(process.address("smtp6"));
    assert_eq!(client.greeting.code, 554, "{}", client.greeting);
    assert_eq!(
        client.greeting.text(),
        "5.7.1 Service unavailable; client [::1] blocked using bl6.test"
    );
    assert_eq!(queries(&dns, &name), 1);
    // The same zone over IPv4 asks for 127.0.0.1's name, which is not listed.
    let mut v4 = SmtpClient::connect(smtp(&mut process));
    assert_eq!(v4.greeting.code, 220, "{}", v4.greeting);
    assert_eq!(send_mail(&mut v4, "client.test", "alice@example.net"), 250);
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
