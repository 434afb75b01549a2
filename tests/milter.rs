//! Milters through SMTP: the real binary with rspamd (proxy worker in milter mode) and
//! OpenDKIM (signing) configured as `session.milter.<id>`, submitting with an SMTP client and
//! checking what reaches smtp-sink.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use ferrymail_config::model::resolver::{NameServer, Resolver, ResolverType};
use ferrymail_e2e::{
    EMBEDDED_STORE, FakeDns, Ferrymail, OpenDkim, Rspamd, SmtpClient, SmtpSink, SmtpSinkOptions,
};
use mail_auth::{AuthenticatedMessage, DkimResult};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// `ferrymail all` relaying everything to `sink`, with the milter tables in `milters`.
fn start(dns: &FakeDns, sink: &SmtpSink, milters: &str) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.example.org"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{store}[session.rcpt]
relay = true
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
{resolver}{milters}
"#,
        store = EMBEDDED_STORE,
        sink = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    Ferrymail::start("all", &config)
}

fn milter(id: &str, address: std::net::SocketAddr) -> String {
    format!(
        "[session.milter.{id}]\nhostname = \"{}\"\nport = {}\n",
        address.ip(),
        address.port()
    )
}

/// Sends one message from alice@example.org; returns the final reply.
fn submit(server: &mut Ferrymail, subject: &str, body: &str) -> ferrymail_e2e::SmtpReply {
    let mut c = SmtpClient::connect(server.address("smtp"));
    assert_eq!(c.command("EHLO client.example.org").code, 250);
    assert_eq!(c.command("MAIL FROM:<alice@example.org>").code, 250);
    assert_eq!(c.command("RCPT TO:<bob@example.net>").code, 250);
    assert_eq!(c.command("DATA").code, 354);
    let message = format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n\
         Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}"
    );
    c.send_data(&message)
}

/// The message as it was sent on, without the fields smtp-sink writes in front of it (its
/// `X-*` lines and its `Received` field), with CRLF line ends.
fn as_sent(dumped: &str) -> String {
    let unified = dumped.replace("\r\n", "\n");
    let mut lines = unified.split('\n').peekable();
    while lines.next_if(|l| l.starts_with("X-")).is_some() {}
    if lines.next_if(|l| l.starts_with("Received: ")).is_some() {
        while lines.next_if(|l| l.starts_with([' ', '\t'])).is_some() {}
    }
    lines.collect::<Vec<_>>().join("\r\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn rspamd_and_opendkim_filter_and_sign_what_is_relayed() {
    let rspamd = Rspamd::start();
    let opendkim = OpenDkim::start("example.org", "mx2026");
    let dns = FakeDns::start();
    let key_name = format!("{}._domainkey.{}", opendkim.selector, opendkim.domain);
    dns.add_txt(&key_name, &opendkim.dns_record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    // Asked in id order: rspamd, then signing.
    let milters = format!(
        "{}stages = [\"connect\", \"ehlo\", \"mail\", \"rcpt\", \"data\"]\n{}",
        milter("rspamd", rspamd.address()),
        milter("signing", opendkim.address())
    );
    let mut server = start(&dns, &sink, &milters);

    let spam = submit(&mut server, "offer", GTUBE);
    assert_eq!(spam.code, 554, "{:?}", spam.lines);
    assert!(spam.lines[0].contains("5.7.1"), "{:?}", spam.lines);

    let clean = submit(&mut server, "lunch", "Shall we have lunch on Friday?");
    assert_eq!(clean.code, 250, "{:?}", clean.lines);
    sink.wait_for_messages(1);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "the GTUBE message was not relayed");
    let dumped = &messages[0];
    assert!(dumped.contains("X-Spamd-Result:"), "{dumped}");
    assert!(dumped.contains("DKIM-Signature: v=1;"), "{dumped}");
    // The receiving side's own check, on the way out of ferrymail, with the key published
    // on the fake DNS server.
    assert!(
        dumped.contains("dkim=pass header.d=example.org header.s=mx2026"),
        "{dumped}"
    );

    let resolver = ferrymail_dns::authenticator(&Resolver {
        kind: ResolverType::Custom,
        custom: vec![NameServer::parse(&format!("udp://{}", dns.address())).unwrap()],
        concurrency: 1,
        timeout: Duration::from_secs(2),
        attempts: 1,
        try_tcp_on_error: true,
        preserve_intermediates: true,
    })
    .unwrap();
    let sent = as_sent(dumped);
    let parsed = AuthenticatedMessage::parse(sent.as_bytes()).unwrap();
    let results = resolver.verify_dkim(&parsed).await;
    assert!(
        results.iter().any(|r| r.result() == &DkimResult::Pass),
        "{results:?}\n{sent}"
    );
}

#[test]
fn a_milter_that_is_down_defers_the_message_never_refuses_it() {
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let dns = FakeDns::start();
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut server = start(&dns, &sink, &milter("down", address));
    let reply = submit(&mut server, "deferred", "Hello.");
    assert_eq!(reply.code, 451, "{:?}", reply.lines);
    assert!(reply.lines[0].starts_with("4.3.0"), "{:?}", reply.lines);

    let config = format!(
        "{}options.tempfail-on-error = false\n",
        milter("down", address)
    );
    let mut server = start(&dns, &sink, &config);
    let reply = submit(&mut server, "passed", "Hello.");
    assert_eq!(reply.code, 250, "{:?}", reply.lines);
    sink.wait_for_messages(1);
    assert!(sink.messages()[0].contains("Subject: passed"));
}
