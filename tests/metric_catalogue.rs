//! The metric catalogue (`docs/metrics.md`) and what a running `ferrymail all` serves on
//! `/metrics` after real traffic agree both ways: every catalogued metric is served with its
//! type and labels, and every served metric is catalogued. Labels never carry an address.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, CLUSTER_DOMAIN, ClusterCertificates, Dovecot, DovecotOptions, EMBEDDED_STORE, FakeDns,
    Ferrymail, HookServer, SmtpSink, SmtpSinkOptions, WebhookReceiver, http_get, logins_directory,
    mailboxes_directory,
};
use ferrymail_rpc::cluster_tls::{ChannelSecurity, ClusterTls, Credentials};
use ferrymail_rpc::queue::{GrpcQueue, QueueService};

/// One catalogued metric: its type and label names.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: String,
    labels: BTreeSet<String>,
}

/// The rows of the catalogue's table, by scraped name.
fn catalogue() -> BTreeMap<String, Entry> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut entries = BTreeMap::new();
    for row in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let entry = Entry {
            kind: cells[2].to_owned(),
            labels,
        };
        assert!(
            entries.insert(name.clone(), entry).is_none(),
            "{name} is catalogued twice"
        );
    }
    assert!(entries.len() > 10, "the catalogue table was not found");
    entries
}

/// A served sample: its series name and labels.
#[derive(Debug)]
struct Sample {
    series: String,
    labels: Vec<(String, String)>,
}

/// The labels of `{a="x",b="y"}` (without the braces), escapes kept as written.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').to_owned();
        let value_start = &rest[eq + 2..];
        let mut end = 0;
        let bytes = value_start.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        labels.push((key, value_start[..end].to_owned()));
        rest = &value_start[(end + 1).min(value_start.len())..];
    }
    labels
}

/// The families of an OpenMetrics text, by the name they are scraped under (counters with
/// `_total`), with their types; and its samples.
fn parse_scrape(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut families = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').unwrap();
            let scraped = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            assert!(
                families.insert(scraped.clone(), kind.to_owned()).is_none(),
                "{scraped} is declared twice"
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, labels) = match line.split_once('{') {
                Some((series, rest)) => (series, parse_labels(&rest[..rest.rfind('}').unwrap()])),
                None => (line.split(' ').next().unwrap(), Vec::new()),
            };
            samples.push(Sample {
                series: series.to_owned(),
                labels,
            });
        }
    }
    (families, samples)
}

/// The scraped name of the family a sample series belongs to.
fn family_of<'a>(series: &str, families: &'a BTreeMap<String, String>) -> Option<&'a str> {
    if let Some((name, _)) = families.get_key_value(series) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        families
            .get_key_value(base)
            .filter(|(_, kind)| *kind == "histogram")
            .map(|(k, _)| k.as_str())
    })
}

/// The families the Prometheus project's OpenMetrics parser (its Python client's) reads from
/// `text`, as `name type`, by the name each is declared under; panics when it refuses the
/// text, as Prometheus drops a scrape that declares a family twice or puts metadata after
/// samples.
fn families_read_by_prometheus_client(text: &str) -> BTreeSet<String> {
    let scrape = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(scrape.path(), text).unwrap();
    let script = format!(
        r#"
from prometheus_client.openmetrics.parser import text_string_to_metric_families
with open({path:?}) as f:
    for family in text_string_to_metric_families(f.read()):
        print(family.name, family.type)
"#,
        path = scrape.path().display().to_string(),
    );
    ferrymail_e2e::python(&script)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn send_with_smtplib(smtp: SocketAddr) {
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
# PLAIN fails, then LOGIN is refused without asking: the limit is one failure.
try:
    s.login("{rcpt}", "wrong")
except smtplib.SMTPAuthenticationError:
    pass
s.sendmail("sender@remote.test", ["{rcpt}"], b"Subject: metrics\r\n\r\nhello metrics\r\n")
try:
    s.sendmail("sender@remote.test", ["nosuch@example.org"], b"Subject: refused\r\n\r\nno\r\n")
except smtplib.SMTPRecipientsRefused:
    pass
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    ferrymail_e2e::python(&script);
}

/// Asks the queue's stats with the ingress's certificate, which only the admin may.
fn call_as_the_wrong_role(certificates: &ClusterCertificates, grpc: SocketAddr) {
    let ingress = certificates.role(&["smtp-ingress"]);
    let path = |p: &std::path::Path| p.display().to_string();
    let credentials = Credentials::from_files(
        &path(&ingress.cert_pem),
        &path(&ingress.key_pem),
        &path(&certificates.ca_pem),
        CLUSTER_DOMAIN,
    )
    .unwrap();
    let security = ChannelSecurity::MutualTls(ClusterTls::new(credentials));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let queue = GrpcQueue::connect_with(&format!("https://{grpc}"), &security).unwrap();
        assert!(queue.stats().await.is_err());
    });
}

/// Scrapes `/metrics` until `ready` holds for the text (a guard against hangs, not a timing).
fn scrape_until(admin: SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = http_get(admin, "/metrics").unwrap().body;
        if ready(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got ready:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_catalogue_and_the_served_metrics_agree_both_ways() {
    let catalogue = catalogue();
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    // A webhook, so that the delivery event series have samples.
    let receiver = WebhookReceiver::start();
    let hooks = HookServer::start();
    // A blocklist that lists nobody, so that its lookups are counted.
    let dns = FakeDns::start();
    // gRPC over mutual TLS too, so that a refused call can be counted.
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = ClusterCertificates::generate(certificates_dir.path(), "cluster");
    let config = format!(
        "[server]\nhostname = \"mx.test\"\nshutdown-timeout = \"5s\"\n[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n[server.listener.admin]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n{EMBEDDED_STORE}[session.rcpt]\ndirectory = \"mailboxes\"\n[remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\ntimeout = \"10s\"\n[queue.outbound]\nnext-hop = \"sink\"\n[session.auth]\ndirectory = \"logins\"\nallow-plain-text = true\n[server.auto-ban.auth]\nrate = \"1/1h\"\n[webhook.hook]\nurl = \"{}\"\nthrottle = \"10ms\"\n{}",
        sink.address().port(),
        receiver.url(),
        certificates.config(&certificates.role(&["queue-scheduler", "directory-proxy"]))
            + &dns.resolver_config()
            + "[session.dnsbl.server.bl]\nzone = \"bl.test\"\n"
            + "[queue.limiter.inbound.catalogue]\nkey = [\"remote-ip\"]\nrate = \"1000/1m\"\n"
            // A hook, so that stage filters' answers are counted.
            + &format!("[session.hook.catalogue]\nurl = \"{}\"\nstages = [\"mail\"]\n", hooks.url()),
    );
    // The directory comes from an include file named as the operator names its rendering,
    // as on Kubernetes, so the rendered-files hash is served too.
    let include = tempfile::tempdir().unwrap();
    std::fs::write(
        include.path().join("directories.toml"),
        mailboxes_directory(&dovecot) + &logins_directory(&dovecot),
    )
    .unwrap();
    let include_dir = include.path().display().to_string();
    let mut process = Ferrymail::start_with("all", &config, &["--config-dir", &include_dir]);
    let smtp = process.address("smtp");
    let admin = process.address("admin");
    let grpc = process.address("grpc");
    send_with_smtplib(smtp);
    call_as_the_wrong_role(&certificates, grpc);
    sink.wait_for_messages(1);
    let text = scrape_until(admin, |t| {
        t.lines()
            .any(|l| l == "queue_deliveries_total{result=\"delivered\"} 1")
            && t.lines()
                .any(|l| l == "queue_events_sent_total{webhook=\"hook\"} 1")
    });
    let (families, samples) = parse_scrape(&text);
    let declared: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        families_read_by_prometheus_client(&text),
        declared,
        "Prometheus's parser reads other families than declared in:\n{text}"
    );

    let mut problems = Vec::new();
    // Catalogue → output: served with the catalogued type.
    for (name, entry) in &catalogue {
        match families.get(name) {
            None => problems.push(format!("{name} is catalogued but not served")),
            Some(kind) if *kind != entry.kind => problems.push(format!(
                "{name} is served as a {kind}, catalogued as a {}",
                entry.kind
            )),
            Some(_) => {}
        }
    }
    // Output → catalogue: every family served is catalogued.
    for (name, kind) in &families {
        if !catalogue.contains_key(name) {
            problems.push(format!("{name} ({kind}) is served but not catalogued"));
        }
    }
    // Every sample carries exactly the catalogued labels, with bounded values.
    for sample in &samples {
        let Some(entry) = family_of(&sample.series, &families).and_then(|f| catalogue.get(f))
        else {
            problems.push(format!("{} belongs to no catalogued family", sample.series));
            continue;
        };
        let names: BTreeSet<String> = sample
            .labels
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k != "le")
            .collect();
        if names != entry.labels {
            problems.push(format!(
                "{} has labels {names:?}, catalogued {:?}",
                sample.series, entry.labels
            ));
        }
        for (key, value) in &sample.labels {
            if value.contains('@') || value.contains("example.org") {
                problems.push(format!(
                    "{}: label {key}={value:?} looks like an address or a domain",
                    sample.series
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the catalogue and /metrics disagree:\n{}\n\n{text}",
        problems.join("\n")
    );
    // The traffic shows in the series the dashboards are built on.
    for line in [
        "smtp_messages_received_total 1",
        "queue_messages_enqueued_total 1",
        "smtp_messages_rejected_total{reason=\"unknown_user\"} 1",
        "directory_lookups_total{target=\"directory/mailboxes\",operation=\"rcpt\",result=\"yes\"} 1",
        "directory_cache_requests_total{target=\"directory/mailboxes\",level=\"local\",result=\"miss\"} 2",
        "queue_delivery_duration_seconds_count{next_hop=\"remote/sink\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    // Accepting and delivering the message committed writes, each timed.
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("store_commit_duration_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(commits >= 2, "{commits} timed commits in:\n{text}");
    // ... each in one of the embedded store's group commits, which reports them all.
    let grouped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("store_commit_group_transactions_sum "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        grouped >= 2.0,
        "{grouped} transactions in groups in:\n{text}"
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
