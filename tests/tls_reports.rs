//! SMTP TLS reports end to end: `ferrymail all` delivers by MX (a fake DNS server, Postfix's
//! smtp-sink as the exchanger) to example.org, which publishes an MTA-STS record whose policy
//! cannot be fetched (no policy host) and a `_smtp._tls` record naming a `mailto:` and an
//! `https:` destination. Each delivery succeeds without a policy, after an
//! `sts-policy-fetch-error`; at the end of a short period (`send = "10s"`) the report goes
//! by mail (to smtp-sink, by MX) and by HTTPS POST (to a test endpoint over TLS), and both
//! copies are checked against RFC 8460's JSON schema with Python's jsonschema. A bad `rua`,
//! an unreachable endpoint and a DNS failure at report time keep the rows for a later try;
//! two processes on one PostgreSQL store send each period's report once.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Read;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    EMBEDDED_STORE, FakeDns, Ferrymail, HookServer, Postgres, SmtpSink, SmtpSinkOptions,
    TestCertificates, tls_report_schema_errors,
};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;

const PERIOD_SECS: u64 = 10;

/// Waits for the start of the next reporting period (periods are aligned on multiples of
/// their length), so that the mail a test sends next falls into one period.
fn next_period() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() % u128::from(PERIOD_SECS * 1000);
    let left = u64::try_from(u128::from(PERIOD_SECS * 1000) - into).unwrap();
    std::thread::sleep(Duration::from_millis(left + 200));
}

/// `ferrymail all` on `store` delivering by MX to `sink`, reporting TLS every 10 s, with
/// `env`.
fn start(dns: &FakeDns, sink: &SmtpSink, store: &str, env: &[(&str, &str)]) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{store}[session.rcpt]
relay = true
[queue.outbound]
mx-port = {port}
[report.dmarc.aggregate]
send = "never"
[report.tls.aggregate]
send = "{PERIOD_SECS}s"
org-name = "Test Sender"
from-address = "tls-reports@mx.test"
{resolver}
"#,
        port = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    Ferrymail::start_with_env("all", &config, &[], env)
}

/// Sends one message to `rcpt` with smtplib.
fn send(process: &mut Ferrymail, rcpt: &str, subject: &str) {
    let smtp = process.address("smtp");
    ferrymail_e2e::python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
s.sendmail("alice@client.test", ["{rcpt}"], b"Subject: {subject}\r\n\r\nhello\r\n")
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
    ));
}

/// The messages smtp-sink received that are TLS reports.
fn report_mails(sink: &SmtpSink) -> Vec<String> {
    sink.messages()
        .into_iter()
        .filter(|m| m.contains("TLS-Report-Domain"))
        .collect()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut json)
        .unwrap();
    json
}

/// `json`, checked against the schema.
fn check_schema(json: &[u8]) -> Value {
    assert_eq!(
        tls_report_schema_errors(json),
        "",
        "{}",
        String::from_utf8_lossy(json)
    );
    serde_json::from_slice(json).unwrap()
}

/// Checks `json` against the schema and what the deliveries to example.org came to: `sent`
/// successes without a policy, and the MTA-STS policy that could not be fetched.
fn check_report(json: &[u8], sent: u64) -> Value {
    let report = check_schema(json);
    assert_eq!(report["organization-name"], "Test Sender");
    let policies = report["policies"].as_array().unwrap();
    let of_type = |kind: &str| {
        policies
            .iter()
            .find(|p| p["policy"]["policy-type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} policy in {report}"))
    };
    let none = of_type("no-policy-found");
    assert_eq!(none["policy"]["policy-domain"], "example.org");
    assert_eq!(none["summary"]["total-successful-session-count"], sent);
    assert_eq!(none["summary"]["total-failure-session-count"], 0);
    let sts = of_type("sts");
    assert_eq!(sts["policy"]["policy-domain"], "example.org");
    assert_eq!(
        sts["summary"]["total-failure-session-count"], sent,
        "{report}"
    );
    let failure = &sts["failure-details"][0];
    assert_eq!(failure["result-type"], "sts-policy-fetch-error");
    assert_eq!(failure["failed-session-count"], sent);
    report
}

#[test]
fn a_period_of_deliveries_is_reported_by_mail_and_by_https_post() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path());
    let endpoint = HookServer::start_tls(&certificates);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("example.org", 10, "mx.example.org");
    dns.add_a("mx.example.org", "127.0.0.1".parse().unwrap());
    // A policy is announced, but mta-sts.example.org does not exist: every fetch fails.
    dns.add_txt("_mta-sts.example.org", "v=STSv1; id=20261207");
    dns.add_txt(
        "_smtp._tls.example.org",
        &format!(
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,{}",
            endpoint.url()
        ),
    );
    let ca = certificates.ca_pem.to_str().unwrap();
    let mut process = start(&dns, &sink, EMBEDDED_STORE, &[("SSL_CERT_FILE", ca)]);
    process.address("smtp");

    next_period();
    send(&mut process, "bob@example.org", "first");
    send(&mut process, "carol@example.org", "second");
    sink.wait_for_messages(2);

    let deadline = Instant::now() + Duration::from_secs(60);
    while report_mails(&sink).is_empty() || endpoint.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no report by mail ({}) or by POST ({}); log:\n{}",
            report_mails(&sink).len(),
            endpoint.requests().len(),
            process.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mails = report_mails(&sink);
    assert_eq!(mails.len(), 1, "one report for the period: {mails:?}");
    let raw = mails[0].replace('\n', "\r\n");
    let mail = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let header = |name: &str| mail.header_raw(name).unwrap_or_default().trim().to_owned();
    assert_eq!(header("TLS-Report-Domain"), "example.org");
    assert_eq!(header("TLS-Report-Submitter"), "mx.test");
    let content_type = mail.content_type().unwrap();
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("multipart", Some("report"))
    );
    assert_eq!(content_type.attribute("report-type"), Some("tlsrpt"));
    let attachment = mail.attachment(0).expect("the report attached");
    let name = attachment.attachment_name().unwrap();
    let parts: Vec<&str> = name.trim_end_matches(".json.gz").split('!').collect();
    assert_eq!(parts.len(), 5, "{name}");
    assert_eq!((parts[0], parts[1]), ("mx.test", "example.org"), "{name}");
    let begin: u64 = parts[2].parse().unwrap();
    let end: u64 = parts[3].parse().unwrap();
    assert_eq!(end - begin, PERIOD_SECS, "{name}");
    let by_mail = check_report(&gunzip(attachment.contents()), 2);

    let posts = endpoint.requests();
    assert_eq!(posts.len(), 1, "one POST for the period");
    assert_eq!(
        posts[0].header("content-type"),
        Some("application/tlsrpt+gzip")
    );
    let by_post = check_report(&gunzip(&posts[0].raw), 2);
    assert_eq!(by_mail["report-id"], by_post["report-id"]);
}

#[test]
fn bad_destinations_and_dns_failures_keep_the_rows_for_a_later_try() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    for domain in ["example.net", "example.com"] {
        dns.add_mx(domain, 10, &format!("mx.{domain}"));
        dns.add_a(&format!("mx.{domain}"), "127.0.0.1".parse().unwrap());
    }
    // Nothing listens on port 1: the endpoint is unreachable.
    dns.add_txt(
        "_smtp._tls.example.net",
        "v=TLSRPTv1; rua=mailto:not-an-address,https://localhost:1/tlsrpt",
    );
    dns.add_txt(
        "_smtp._tls.example.com",
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
    );
    dns.fail("_smtp._tls.example.com");
    let mut process = start(&dns, &sink, EMBEDDED_STORE, &[]);
    process.address("smtp");
    send(&mut process, "bob@example.net", "to net");
    send(&mut process, "bob@example.com", "to com");
    sink.wait_for_messages(2);

    let malformed = process.wait_for("the malformed destination", |l| {
        l.message().starts_with("malformed rua destination")
    });
    assert_eq!(malformed.field("destination"), Some("not-an-address"));
    process.wait_for("the unreachable endpoint's report kept", |l| {
        l.message() == "no destination took the report: rows kept, tried again later"
            && l.field("reason") == Some("unreachable")
            && l.field("domain") == Some("example.net")
    });
    process.wait_for("the report kept after a DNS failure", |l| {
        l.message() == "DNS failed at report time: report kept, tried again later"
            && l.field("domain") == Some("example.com")
    });
    assert!(report_mails(&sink).is_empty(), "no report yet");

    dns.recover("_smtp._tls.example.com");
    let deadline = Instant::now() + Duration::from_secs(90);
    while report_mails(&sink).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no report after DNS recovered; log:\n{}",
            process.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mails = report_mails(&sink);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].contains("TLS-Report-Domain: example.com"),
        "{}",
        mails[0]
    );
}

/// The `begin` of each report mail's file name.
fn report_begins(sink: &SmtpSink) -> Vec<u64> {
    report_mails(sink)
        .iter()
        .map(|m| {
            let raw = m.replace('\n', "\r\n");
            let mail = MessageParser::default().parse(raw.as_bytes()).unwrap();
            let name = mail
                .attachment(0)
                .unwrap()
                .attachment_name()
                .unwrap()
                .to_owned();
            name.split('!').nth(2).unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn two_schedulers_on_one_store_send_each_period_once() {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let store = postgres.store_config("shared", "mail", postgres.port());
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("example.org", 10, "mx.example.org");
    dns.add_a("mx.example.org", "127.0.0.1".parse().unwrap());
    dns.add_txt(
        "_smtp._tls.example.org",
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.org",
    );
    let mut first = start(&dns, &sink, &store, &[]);
    let mut second = start(&dns, &sink, &store, &[]);
    first.address("smtp");
    second.address("smtp");

    next_period();
    send(&mut first, "bob@example.org", "through the first");
    send(&mut second, "carol@example.org", "through the second");
    sink.wait_for_messages(2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while report_mails(&sink).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no report; log:\n{}",
            first.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both processes' sessions are in the one report.
    let mails = report_mails(&sink);
    let raw = mails[0].replace('\n', "\r\n");
    let mail = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let report = check_schema(&gunzip(mail.attachment(0).unwrap().contents()));
    assert_eq!(
        report["policies"][0]["summary"]["total-successful-session-count"], 2,
        "{report}"
    );
    // The reports themselves go to example.org, so later periods have reports too; once
    // three more periods have ended, no period may have been reported twice.
    let first_begin = report_begins(&sink)[0];
    std::thread::sleep(Duration::from_secs(3 * PERIOD_SECS));
    let mut begins = report_begins(&sink);
    begins.sort_unstable();
    let count = begins.len();
    begins.dedup();
    assert_eq!(begins.len(), count, "a period reported twice: {begins:?}");
    assert!(begins.contains(&first_begin));
}
