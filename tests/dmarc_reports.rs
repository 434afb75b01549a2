//! DMARC aggregate reports end to end: `ferrymail all` checks mail from two loopback
//! sources against a fake DNS server publishing `_dmarc` records with `rua=mailto:`
//! destinations (one inside the domain, one external that authorized the reports, one
//! external that did not), and at the end of a short period (`send = "10s"`) queues one
//! report per domain. Reports are delivered to Postfix's smtp-sink and parsed there by
//! parsedmarc, an independent DMARC report parser (installed into target/test-venv by
//! `.ci/install-test-deps`). With two processes on one PostgreSQL store, each domain and
//! period is reported exactly once, also when one process is killed at the period's end.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrymail_e2e::{
    ClusterCertificates, EMBEDDED_STORE, FakeDns, Ferrymail, Postgres, SmtpSink, SmtpSinkOptions,
    python_with_input, require_peer, test_venv_python,
};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{AuthenticatedMessage, DkimResult};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

/// The reporting period of these tests (the shortest `send` takes).
const PERIOD: &str = "10s";
const PERIOD_SECS: u64 = 10;

/// Waits for the start of the next reporting period (periods are aligned on multiples of
/// their length), so that the mail a test sends next falls into one period: this wait is on
/// the clock because periods are.
fn next_period() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() % u128::from(PERIOD_SECS * 1000);
    let left = u64::try_from(u128::from(PERIOD_SECS * 1000) - into).unwrap();
    std::thread::sleep(Duration::from_millis(left + 200));
}

/// A message from `from`, CRLF line ends.
fn message(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: bob@remote.test\r\nSubject: {subject}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\nHello Bob, {subject}.\r\n"
    )
}

/// A fresh RSA key of example.org: the signer, and its TXT record.
fn rsa_key() -> (DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let signer = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
        .domain("example.org")
        .selector("rsa1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"]);
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        STANDARD.encode(key.public_key_raw())
    );
    (signer, record)
}

/// example.org: SPF lists 127.0.0.1 only, its DKIM key, p=none with three destinations, of
/// which external.test authorized its reports and other.test did not. example.net:
/// p=quarantine, reports to itself. example.com: p=reject (enforced: `strict`).
fn publish(dns: &FakeDns, dkim_record: &str) {
    dns.add_txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("rsa1._domainkey.example.org", dkim_record);
    dns.add_txt(
        "_dmarc.example.org",
        "v=DMARC1; p=none; rua=mailto:dmarc@example.org,mailto:reports@external.test!10m,mailto:spy@other.test",
    );
    dns.add_txt("example.org._report._dmarc.external.test", "v=DMARC1");
    dns.add_txt("example.net", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt(
        "_dmarc.example.net",
        "v=DMARC1; p=quarantine; rua=mailto:agg@example.net",
    );
    dns.add_txt(
        "_dmarc.example.com",
        "v=DMARC1; p=reject; rua=mailto:dmarc@example.com",
    );
}

/// `ferrymail all` relaying everything to `sink`, reporting every [`PERIOD`], on `store`.
fn start(dns: &FakeDns, sink: &SmtpSink, store: &str, extra: &str) -> Ferrymail {
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
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
[queue.lease]
duration = "6s"
[auth.dmarc]
verify = "strict"
[report.dmarc.aggregate]
send = "{PERIOD}"
org-name = "Test Receiver"
from-address = "dmarc-reports@mx.test"
{extra}
{resolver}
"#,
        sink = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    Ferrymail::start("all", &config)
}

/// Sends `message` from `source` (a loopback address) with smtplib; asserts it is queued.
fn send(process: &mut Ferrymail, source: &str, sender: &str, message: &str) {
    assert_eq!(try_send(process, source, sender, message), "250");
}

/// Sends `message` from `source`: `250`, or the refusal's code.
fn try_send(process: &mut Ferrymail, source: &str, sender: &str, message: &str) -> String {
    let smtp = process.address("smtp");
    let script = format!(
        r#"
import smtplib, sys
s = smtplib.SMTP("{host}", {port}, timeout=30, source_address=("{source}", 0))
s.ehlo("client.example.org")
try:
    s.sendmail({sender:?}, ["bob@remote.test"], sys.stdin.buffer.read())
    print("250")
except smtplib.SMTPDataError as e:
    print(e.smtp_code)
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
    );
    python_with_input(&require_peer("python3"), &script, &[], message.as_bytes())
}

/// The aggregate report in `raw` (a whole report message) as parsedmarc reads it.
fn parsedmarc(raw: &str) -> Value {
    let script = r#"
import json, sys, parsedmarc
parsed = parsedmarc.parse_report_email(sys.stdin.buffer.read(), offline=True)
print(json.dumps(parsed, default=str))
"#;
    let out = python_with_input(&test_venv_python("parsedmarc"), script, &[], raw.as_bytes());
    let parsed: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("parsedmarc printed no JSON ({e}): {out}\n{raw}"));
    assert_eq!(parsed["report_type"], "aggregate", "{parsed}");
    parsed["report"].clone()
}

/// The report messages smtp-sink received (after its own trace fields), CRLF line ends.
fn reports(sink: &SmtpSink) -> Vec<String> {
    sink.messages()
        .into_iter()
        .filter(|m| m.contains("Report Domain:"))
        .map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n"))
        .collect()
}

/// The Message-ID of `raw`.
fn message_id(raw: &str) -> String {
    raw.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("Message-ID")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("a report without Message-ID: {raw}"))
}

/// The report about `domain` among `reports`, parsed by parsedmarc.
fn report_of(reports: &[String], domain: &str) -> Value {
    let found: Vec<Value> = reports
        .iter()
        .map(|raw| parsedmarc(raw))
        .filter(|report| report["policy_published"]["domain"] == domain)
        .collect();
    assert_eq!(found.len(), 1, "one report about {domain}: {found:?}");
    found.into_iter().next().unwrap()
}

/// The report's records as (source address, count, disposition, dkim, spf).
fn rows(report: &Value) -> Vec<(String, u64, String, String, String)> {
    let mut rows: Vec<_> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"]["ip_address"].as_str().unwrap().to_owned(),
                r["count"].as_u64().unwrap(),
                r["policy_evaluated"]["disposition"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r["policy_evaluated"]["dkim"].as_str().unwrap().to_owned(),
                r["policy_evaluated"]["spf"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Sends the test's mail: example.org signed from 127.0.0.1 (twice) and unsigned from
/// 127.0.0.2 (SPF fails there), example.net from 127.0.0.1 (fails, p=quarantine).
fn send_mail(
    process: &mut Ferrymail,
    signer: &DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>,
    tag: &str,
) {
    for n in 0..2 {
        let text = message("alice@example.org", &format!("{tag}-signed-{n}"));
        let signed = format!(
            "{}{text}",
            signer.sign(text.as_bytes()).unwrap().to_header()
        );
        send(process, "127.0.0.1", "alice@example.org", &signed);
    }
    let forged = message("alice@example.org", &format!("{tag}-forged"));
    send(process, "127.0.0.2", "alice@example.org", &forged);
    let net = message("carol@example.net", &format!("{tag}-net"));
    send(process, "127.0.0.1", "carol@example.net", &net);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_report_per_domain_reaches_the_authorized_destinations_and_parses_back() {
    test_venv_python("parsedmarc");
    let dns = FakeDns::start();
    let (signer, record) = rsa_key();
    publish(&dns, &record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    // Reports are DKIM-signed by mx.test with an Ed25519 key kept in a file.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), key.serialize_pem()).unwrap();
    dns.add_txt(
        "reports._domainkey.mx.test",
        &format!(
            "v=DKIM1; k=ed25519; p={}",
            STANDARD.encode(key.public_key_raw())
        ),
    );
    let signing = format!(
        "sign = [\"reports\"]\n[signature.reports]\nprivate-key = \"%{{file:{}}}%\"\ndomain = \"mx.test\"\nselector = \"reports\"\nalgorithm = \"ed25519-sha256\"\n",
        key_file.path().display()
    );
    let mut process = start(&dns, &sink, EMBEDDED_STORE, &signing);
    process.address("smtp");
    tokio::task::block_in_place(next_period);
    send_mail(&mut process, &signer, "one");
    // Refused under example.com's p=reject: never queued, yet counted in its report.
    let rejected = message("dave@example.com", "rejected");
    assert_eq!(
        try_send(&mut process, "127.0.0.2", "dave@example.com", &rejected),
        "550"
    );

    // The four messages, then one report per domain at the end of the period.
    tokio::task::block_in_place(|| sink.wait_for_messages(7));
    let reports = reports(&sink);
    assert_eq!(reports.len(), 3, "{reports:?}");
    let com = report_of(&reports, "example.com");
    assert_eq!(com["policy_published"]["p"], "reject");
    assert_eq!(
        rows(&com),
        vec![(
            "127.0.0.2".into(),
            1,
            "reject".into(),
            "fail".into(),
            "fail".into()
        )]
    );

    let org = report_of(&reports, "example.org");
    assert_eq!(org["report_metadata"]["org_name"], "Test Receiver");
    assert_eq!(org["report_metadata"]["org_email"], "dmarc-reports@mx.test");
    assert_eq!(org["policy_published"]["p"], "none");
    assert_eq!(
        rows(&org),
        vec![
            (
                "127.0.0.1".into(),
                2,
                "none".into(),
                "pass".into(),
                "pass".into()
            ),
            (
                "127.0.0.2".into(),
                1,
                "none".into(),
                "fail".into(),
                "fail".into()
            ),
        ]
    );
    let net = report_of(&reports, "example.net");
    assert_eq!(net["policy_published"]["p"], "quarantine");
    assert_eq!(
        rows(&net),
        vec![(
            "127.0.0.1".into(),
            1,
            "quarantine".into(),
            "fail".into(),
            "fail".into()
        )]
    );

    // The report of example.org went to the domain and to the destination that
    // authorized it, never to the one that did not; the file is named as the RFC says.
    let org_raw = reports
        .iter()
        .find(|r| r.contains("Report Domain: example.org"))
        .unwrap();
    assert!(org_raw.contains("dmarc@example.org") && org_raw.contains("reports@external.test"));
    assert!(!org_raw.contains("spy@other.test"), "{org_raw}");
    assert!(org_raw.contains("mx.test!example.org!"), "{org_raw}");
    // Signed by mx.test, and the signature verifies against the published key.
    let resolver = ferrymail_dns::authenticator(
        &ferrymail_config::load_str(
            "dns.toml",
            &format!("[server]\nhostname = \"t\"\n{}", dns.resolver_config()),
        )
        .unwrap()
        .resolver,
    )
    .unwrap();
    let parsed = AuthenticatedMessage::parse(org_raw.as_bytes()).unwrap();
    let outputs = resolver.verify_dkim(&parsed).await;
    assert!(
        outputs
            .iter()
            .any(|o| o.result() == &DkimResult::Pass
                && o.signature().is_some_and(|s| s.d == "mx.test")),
        "{outputs:?}"
    );
    let refused = process.wait_for("the unauthorized destination logged", |line| {
        line.message()
            .contains("without its _report._dmarc authorization record")
    });
    assert_eq!(refused.field("destination"), Some("spy@other.test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dns_failure_at_report_time_keeps_the_rows_for_a_later_try() {
    let dns = FakeDns::start();
    let (signer, record) = rsa_key();
    publish(&dns, &record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, EMBEDDED_STORE, "");
    process.address("smtp");
    tokio::task::block_in_place(next_period);
    send_mail(&mut process, &signer, "dns");
    tokio::task::block_in_place(|| sink.wait_for_messages(4));

    // The policy was read when the mail came; at report time its name server fails.
    dns.fail("_dmarc.example.org");
    let failed = process.wait_for("a DNS failure at report time", |line| {
        line.message().starts_with("DNS failed at report time")
    });
    assert_eq!(failed.field("domain"), Some("example.org"));
    assert_eq!(failed.0["attempts"], 1);
    dns.recover("_dmarc.example.org");

    // The report comes on a later try, with every evaluation of the period.
    tokio::task::block_in_place(|| sink.wait_for_messages(6));
    let reports = reports(&sink);
    assert_eq!(reports.len(), 2, "{reports:?}");
    let org = report_of(&reports, "example.org");
    assert_eq!(
        rows(&org),
        vec![
            (
                "127.0.0.1".into(),
                2,
                "none".into(),
                "pass".into(),
                "pass".into()
            ),
            (
                "127.0.0.2".into(),
                1,
                "none".into(),
                "fail".into(),
                "fail".into()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_send_each_report_once_even_when_one_is_killed() {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let store = postgres.store_config("shared", "mail", postgres.port());
    let dns = FakeDns::start();
    let (signer, record) = rsa_key();
    publish(&dns, &record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut first = start(&dns, &sink, &store, "");
    let mut second = start(&dns, &sink, &store, "");

    first.address("smtp");
    second.address("smtp");

    // Mail through both processes: both record in the same rows.
    tokio::task::block_in_place(next_period);
    send_mail(&mut first, &signer, "first");
    send_mail(&mut second, &signer, "second");
    tokio::task::block_in_place(|| sink.wait_for_messages(8));
    let org = rows_after_reports(&sink, 10);
    assert_eq!(
        org,
        vec![
            (
                "127.0.0.1".into(),
                4,
                "none".into(),
                "pass".into(),
                "pass".into()
            ),
            (
                "127.0.0.2".into(),
                2,
                "none".into(),
                "fail".into(),
                "fail".into()
            ),
        ]
    );

    // Another period; the process that takes a report's lease is killed (SIGKILL) as soon
    // as it says so, before or after its commit: the other takes over what it held once
    // its lease runs out, and nothing is reported twice.
    let taken = |process: &mut Ferrymail| {
        process
            .read_log()
            .iter()
            .filter(|l| l.message().starts_with("DMARC report lease taken"))
            .count()
    };
    let before = (taken(&mut first), taken(&mut second));
    tokio::task::block_in_place(next_period);
    send_mail(&mut first, &signer, "third");
    tokio::task::block_in_place(|| sink.wait_for_messages(14));
    let survivor = tokio::task::block_in_place(|| {
        loop {
            if taken(&mut first) > before.0 {
                first.kill();
                break second;
            }
            if taken(&mut second) > before.1 {
                second.kill();
                break first;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    tokio::task::block_in_place(|| sink.wait_for_messages(16));
    // Give a second report every chance to come.
    tokio::task::block_in_place(|| sink.received_within(17, Duration::from_secs(25)));
    // Each build of a report has a Message-ID of its own. A copy with the same one is the
    // same queued message delivered again (the killed process was delivering it when it
    // died: delivery is at least once), not a second report.
    let all = reports(&sink);
    let mut built: Vec<String> = all.iter().map(|raw| message_id(raw)).collect();
    built.sort();
    built.dedup();
    assert_eq!(
        built.len(),
        4,
        "two periods, two domains, each built once: {built:?}"
    );
    let mut periods: Vec<(String, String)> = all
        .iter()
        .map(|raw| parsedmarc(raw))
        .map(|r| {
            (
                r["policy_published"]["domain"].as_str().unwrap().to_owned(),
                r["report_metadata"]["begin_date"].to_string(),
            )
        })
        .collect();
    periods.sort();
    periods.dedup();
    assert_eq!(periods.len(), 4, "each domain and period once: {periods:?}");
    drop(survivor);
}

/// Waits for `count` messages, then returns example.org's rows of the only report about it.
fn rows_after_reports(sink: &SmtpSink, count: usize) -> Vec<(String, u64, String, String, String)> {
    tokio::task::block_in_place(|| sink.wait_for_messages(count));
    let all = reports(sink);
    assert_eq!(all.len(), 2, "{all:?}");
    rows(&report_of(&all, "example.org"))
}

#[tokio::test(flavor = "multi_thread")]
async fn split_roles_carry_evaluations_over_grpc() {
    let dns = FakeDns::start();
    let (signer, record) = rsa_key();
    publish(&dns, &record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = ClusterCertificates::generate(certificates_dir.path(), "cluster");
    let common = format!(
        "[server]\nhostname = \"mx.test\"\nshutdown-timeout = \"5s\"\n[report.dmarc.aggregate]\nsend = \"{PERIOD}\"\n{}",
        dns.resolver_config()
    );
    let queue_tls = certificates.config(&certificates.role(&["queue-scheduler"]));
    let mut queue = Ferrymail::start(
        "queue-scheduler",
        &format!(
            "{common}[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n{EMBEDDED_STORE}\
             [remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\n\
             [queue.outbound]\nnext-hop = \"sink\"\n{queue_tls}",
            sink.address().port()
        ),
    );
    let grpc = queue.address("grpc");
    // Relaying everything, the ingress never asks the directory, but it is its peer all the same.
    let proxy_tls = certificates.config(&certificates.role(&["directory-proxy"]));
    let mut proxy = Ferrymail::start(
        "directory-proxy",
        &format!(
            "{common}[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n{proxy_tls}"
        ),
    );
    let proxy_grpc = proxy.address("grpc");
    let ingress_tls = certificates.config(&certificates.role(&["smtp-ingress"]));
    let mut ingress = Ferrymail::start(
        "smtp-ingress",
        &format!(
            "{common}[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n\
             [session.rcpt]\nrelay = true\n[auth.dmarc]\nverify = \"strict\"\n\
             [cluster.queue]\nendpoint = \"https://{grpc}\"\n\
             [cluster.directory]\nendpoint = \"https://{proxy_grpc}\"\n{ingress_tls}"
        ),
    );
    ingress.address("smtp");
    tokio::task::block_in_place(next_period);
    send_mail(&mut ingress, &signer, "split");
    let rejected = message("dave@example.com", "split-rejected");
    assert_eq!(
        try_send(&mut ingress, "127.0.0.2", "dave@example.com", &rejected),
        "550"
    );

    tokio::task::block_in_place(|| sink.wait_for_messages(7));
    let reports = reports(&sink);
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert_eq!(
        rows(&report_of(&reports, "example.org")),
        vec![
            (
                "127.0.0.1".into(),
                2,
                "none".into(),
                "pass".into(),
                "pass".into()
            ),
            (
                "127.0.0.2".into(),
                1,
                "none".into(),
                "fail".into(),
                "fail".into()
            ),
        ]
    );
    assert_eq!(
        rows(&report_of(&reports, "example.com")),
        vec![(
            "127.0.0.2".into(),
            1,
            "reject".into(),
            "fail".into(),
            "fail".into()
        )]
    );
    drop((queue, proxy));
}
