//! The examples of the reference documents load, and every default is the documented one.

use std::time::Duration;

use ferrymail_config::model::directory::DirectoryType;
use ferrymail_config::model::queue::Hop;
use ferrymail_config::model::queue_limits::{QuotaKey, Rate, ThrottleKey};
use ferrymail_config::model::remote::RemoteProtocol;
use ferrymail_config::model::rules::Variable;
use ferrymail_config::model::server::ListenerProtocol;
use ferrymail_config::model::stage_rules::{Decision, RejectReply, Stage};
use ferrymail_config::{Config, load_str};

fn load(text: &str) -> Config {
    match load_str("seed.toml", text) {
        Ok(config) => config,
        Err(errors) => panic!("refused:\n{errors}"),
    }
}

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);

/// Seed 002's two examples, verbatim, plus seeds 000/001's directory keys.
const EVERY_SEED_KEY: &str = r#"
[server]
hostname = "mx.example.org"

[remote."lmtp"]
address = "localhost"
port = 24
protocol = "lmtp"
concurrency = 10
timeout = "1m"
lookup = true
[remote."lmtp".cache]
entries = 1000
ttl = {positive = "1d", negative = "1h"}
[remote."lmtp".tls]
implicit = false
allow-invalid-certs = true
[remote."lmtp".auth]
username = "relay_server"
secret = "123456"
[remote."lmtp".limits]
errors = 3
requests = 50

[remote."imap"]
address = "mail.mydomain.org"
port = 143
protocol = "imap"
concurrency = 10
timeout = "1m"
lookup = true
[remote."imap".cache]
entries = 1000
ttl = {positive = "1d", negative = "1h"}
[remote."imap".tls]
implicit = false
allow-invalid-certs = true

[directory."imap"]
type = "imap"
address = "imap.example.org"
port = 993

[directory."imap".tls]
implicit = true
allow-invalid-certs = false

[directory."lmtp"]
type = "lmtp"
address = "127.0.0.1"
port = 11200

[directory."lmtp".tls]
implicit = false
allow-invalid-certs = true

[directory."lmtp".limits]
rcpt = 25
auth-errors = 5

[directory."lmtp".lookup]
domains = ["example.org", "example.com"]
blocked_ips = ["10.0.0.0/8", "192.0.2.1"]
"#;

#[test]
fn every_key_of_the_seeds_loads() {
    let config = load(EVERY_SEED_KEY);
    let lmtp = &config.remotes["lmtp"];
    assert_eq!(
        (lmtp.address.as_str(), lmtp.port, lmtp.protocol),
        ("localhost", 24, RemoteProtocol::Lmtp)
    );
    assert_eq!(
        (lmtp.concurrency, lmtp.timeout, lmtp.lookup),
        (10, Duration::from_secs(60), true)
    );
    assert_eq!(
        (
            lmtp.cache.entries,
            lmtp.cache.ttl_positive,
            lmtp.cache.ttl_negative
        ),
        (1000, DAY, HOUR)
    );
    assert_eq!((lmtp.tls_implicit, lmtp.allow_invalid_certs), (false, true));
    let auth = lmtp
        .auth
        .as_ref()
        .map(|a| (a.username.as_str(), a.secret.expose()));
    assert_eq!(auth, Some(("relay_server", "123456")));
    assert_eq!((lmtp.max_errors, lmtp.max_requests), (3, 50));
    assert_eq!(config.remotes["imap"].protocol, RemoteProtocol::Imap);

    let imap = &config.directories["imap"];
    assert_eq!(
        (
            imap.kind,
            imap.port,
            imap.tls_implicit,
            imap.allow_invalid_certs
        ),
        (DirectoryType::Imap, 993, true, false)
    );
    let lmtp = &config.directories["lmtp"];
    assert_eq!(
        (lmtp.kind, lmtp.address.as_str(), lmtp.port),
        (DirectoryType::Lmtp, "127.0.0.1", 11200)
    );
    assert_eq!(
        (
            lmtp.tls_implicit,
            lmtp.allow_invalid_certs,
            lmtp.max_rcpt,
            lmtp.max_auth_errors
        ),
        (false, true, 25, 5)
    );
    assert_eq!(lmtp.domains(), ["example.org", "example.com"]);
    assert_eq!(
        lmtp.lists["blocked_ips"].values,
        ["10.0.0.0/8", "192.0.2.1"]
    );
}

#[test]
fn remote_defaults_are_the_documented_ones() {
    let config = load(
        "[server]\nhostname = \"h\"\n[remote.r]\naddress = \"relay.example\"\nprotocol = \"smtp\"\n",
    );
    let r = &config.remotes["r"];
    assert_eq!(r.concurrency, 10);
    assert_eq!(r.timeout, Duration::from_secs(60));
    assert!(!r.lookup);
    assert!(r.tls_implicit, "tls.implicit defaults to true");
    assert!(!r.allow_invalid_certs);
    assert!(r.auth.is_none());
    assert_eq!((r.max_errors, r.max_requests), (3, 50));
    assert_eq!(
        (r.cache.entries, r.cache.ttl_positive, r.cache.ttl_negative),
        (1024, DAY, HOUR)
    );
    assert_eq!(r.port, 465, "implicit TLS SMTP");
}

#[test]
fn directory_defaults_are_the_documented_ones() {
    let config =
        load("[server]\nhostname = \"h\"\n[directory.d]\ntype = \"smtp\"\naddress = \"a\"\n");
    let d = &config.directories["d"];
    assert_eq!(
        (d.max_rcpt, d.max_auth_errors, d.max_connections),
        (10, 3, 10)
    );
    assert_eq!(
        (d.tls_implicit, d.allow_invalid_certs, d.port),
        (false, false, 25)
    );
    assert_eq!(d.timeout, Duration::from_secs(30));
    assert!(d.domains().is_empty());
}

#[test]
fn ports_follow_protocol_and_tls_mode() {
    let text = r#"
[server]
hostname = "h"
[remote.a]
address = "x"
protocol = "imap"
[remote.b]
address = "x"
protocol = "imap"
tls.implicit = false
[remote.c]
address = "x"
protocol = "lmtp"
[remote.d]
address = "x"
protocol = "smtp"
tls.implicit = false
"#;
    let config = load(text);
    let ports: Vec<u16> = config.remotes.values().map(|r| r.port).collect();
    assert_eq!(ports, [993, 143, 24, 25]);
}

#[test]
fn queue_and_server_defaults() {
    let config = load("[server]\nhostname = \"h\"\n");
    let minutes = |m: u64| Duration::from_secs(m * 60);
    assert_eq!(
        config.queue.retry,
        [
            minutes(2),
            minutes(5),
            minutes(10),
            minutes(15),
            minutes(30),
            HOUR,
            2 * HOUR
        ]
    );
    assert_eq!(config.queue.notify, [DAY, 3 * DAY]);
    assert_eq!(config.queue.expire, 5 * DAY);
    assert!(config.queue.next_hop.0.branches.is_empty());
    assert_eq!(config.queue.next_hop.0.otherwise, Hop::Mx);
    assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));
}

#[test]
fn queue_quotas_and_throttles() {
    let text = r#"
[server]
hostname = "h"
[queue.quota.global]
messages = 100000
size = "10GB"
[queue.quota.per-sender]
key = ["sender-domain", "rcpt"]
messages = 10
[queue.quota.off]
messages = 1
enable = false
[queue.throttle.per-domain]
key = ["rcpt-domain"]
concurrency = 5
rate = "30/1m"
[queue.throttle.partners]
match = [
  { if = "sender-domain", in-list = "local/domains" },
  { if = "rcpt-domain", in-list = "local/partners" },
]
rate = "10/1s"
[directory.local]
type = "lmtp"
address = "127.0.0.1"
lookup.domains = ["example.org"]
lookup.partners = ["partner.example"]
"#;
    let config = load(text);
    let quotas = &config.queue.quotas;
    assert_eq!(quotas.keys().collect::<Vec<_>>(), ["global", "per-sender"]);
    assert_eq!(
        quotas["global"].size,
        Some(10 << 30),
        "GB counts 1024³ bytes"
    );
    assert!(quotas["global"].key.is_empty());
    assert_eq!(
        quotas["per-sender"].key,
        [QuotaKey::SenderDomain, QuotaKey::Rcpt]
    );
    let throttle = &config.queue.throttles["per-domain"];
    assert_eq!(throttle.key, [ThrottleKey::RcptDomain]);
    assert_eq!(throttle.concurrency, Some(5));
    assert_eq!(
        throttle.rate,
        Some(Rate {
            count: 30,
            period: Duration::from_secs(60)
        })
    );
    assert!(throttle.conditions.is_empty(), "no match: every delivery");
    let partners = &config.queue.throttles["partners"].conditions;
    let tested: Vec<_> = partners
        .iter()
        .map(|c| (c.variable, c.list.to_string()))
        .collect();
    assert_eq!(
        tested,
        [
            (Variable::SenderDomain, "local/domains".to_owned()),
            (Variable::RcptDomain, "local/partners".to_owned()),
        ]
    );
    assert!(
        partners[1].values.contains("Partner.Example"),
        "the list's values come along"
    );
    assert!(load("[server]\nhostname = \"h\"\n").queue.quotas.is_empty());
}

/// A self-signed certificate and key, as PEM files in `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
    (cert, key)
}

#[test]
fn seed_003_listeners() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = certificate(dir.path());
    let certificate = format!(
        "[certificate.default]\ncert = \"%{{file:{}}}%\"\nprivate-key = \"%{{file:{}}}%\"\n",
        cert.display(),
        key.display()
    );
    let listeners = r#"
[server]
hostname = "h"
[server.listener."smtp"]
bind = "[::]:25"
protocol = "smtp"
greeting = "Welcome to Stalwart!"
[server.listener."submissions"]
bind = ["[::]:465"]
protocol = "smtp"
tls.implicit = true
[server.listener."submission"]
bind = ["[::]:587"]
protocol = "smtp"
[server.listener."lmtp"]
bind = ["[::]:24"]
protocol = "lmtp"
"#;
    let config = load(&format!("{certificate}{listeners}"));
    assert_eq!(
        config.server.tls_certificate.as_deref(),
        Some("default"),
        "the only certificate is the default"
    );
    let l = &config.server.listeners;
    assert_eq!(l["smtp"].greeting.as_deref(), Some("Welcome to Stalwart!"));
    assert_eq!(l["smtp"].bind[0].port(), 25);
    assert!(l["submissions"].tls_implicit && !l["submission"].tls_implicit);
    assert_eq!(l["lmtp"].protocol, ListenerProtocol::Lmtp);
    assert_eq!(
        config.server.listeners_of(ListenerProtocol::Smtp).count(),
        3
    );
}

#[test]
fn proxy_protocol_listeners() {
    let text = r#"
[server]
hostname = "h"
[server.listener.smtp]
bind = "[::]:25"
protocol = "smtp"
proxy-protocol = true
proxy.trusted-networks = ["10.0.0.0/8", "::1/128", "192.0.2.7", "fd00::/8"]
[server.listener.lmtp]
bind = "[::]:24"
protocol = "lmtp"
[server.listener.admin]
bind = "[::]:8080"
protocol = "http"
"#;
    let config = load(text);
    let l = &config.server.listeners;
    assert!(l["smtp"].proxy_protocol);
    let networks: Vec<String> = l["smtp"]
        .proxy_trusted_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        networks,
        ["10.0.0.0/8", "::1/128", "192.0.2.7/32", "fd00::/8"],
        "a bare address is a one-host network"
    );
    for id in ["lmtp", "admin"] {
        assert!(!l[id].proxy_protocol, "{id}: off by default");
        assert!(l[id].proxy_trusted_networks.is_empty(), "{id}");
    }
}

#[test]
fn rule_lists_route_by_list_membership() {
    let text = r#"
[server]
hostname = "h"
[directory.corp]
type = "lmtp"
address = "127.0.0.1"
lookup.domains = ["example.org"]
[remote.lmtp]
address = "127.0.0.1"
protocol = "lmtp"
lookup = true
[queue.outbound]
next-hop = [ { if = "rcpt-domain", in-list = "corp/domains", then = "lmtp" },
             { if = "rcpt", in-list = "remote/lmtp", then = "lmtp" },
             { else = "mx" } ]
"#;
    let config = load(text);
    let rules = &config.queue.next_hop.0;
    assert_eq!(rules.branches.len(), 2);
    assert_eq!(rules.branches[0].list.to_string(), "corp/domains");
    assert_eq!(rules.branches[1].list.to_string(), "remote/lmtp");
    assert_eq!(rules.branches[0].then, Hop::Remote("lmtp".into()));
    assert_eq!(rules.otherwise, Hop::Mx);
}

#[test]
fn lookup_lists_read_files_one_value_per_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("blocked.txt");
    std::fs::write(&path, "# blocked networks\n10.0.0.0/8\n\n  192.0.2.7  \n")
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "[server]\nhostname = \"h\"\n[directory.corp]\ntype = \"smtp\"\naddress = \"a\"\n[directory.corp.lookup]\nblocked_ips = [\"198.51.100.1\", \"file://{}\"]\n",
        path.display()
    );
    let config = load(&text);
    assert_eq!(
        config.directories["corp"].lists["blocked_ips"].values,
        ["198.51.100.1", "10.0.0.0/8", "192.0.2.7"]
    );
}

#[test]
fn substitutions_read_files_and_environment() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("secret");
    std::fs::write(&path, "s3cret\n").unwrap_or_else(|e| panic!("{e}"));
    // PATH is set in every environment the tests run in.
    let text = format!(
        "[server]\nhostname = \"mx-%{{env:PATH}}%\"\n[remote.r]\naddress = \"h\"\nprotocol = \"smtp\"\nauth.username = \"u\"\nauth.secret = \"%{{file:{}}}%\"\n",
        path.display()
    );
    let config = load(&text);
    let secret = config.remotes["r"]
        .auth
        .as_ref()
        .map(|a| a.secret.expose().to_string());
    assert_eq!(
        secret.as_deref(),
        Some("s3cret"),
        "one trailing newline is dropped"
    );
    assert!(config.server.hostname.starts_with("mx-") && config.server.hostname.len() > 3);
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "secrets never show in Debug output"
    );
}

#[test]
fn stage_rules_accept_or_refuse_with_a_reply() {
    let text = r#"
[server]
hostname = "h"
[directory.corp]
type = "lmtp"
address = "127.0.0.1"
lookup.blocked-ips = ["192.0.2.0/24", "10.0.0.0/8"]
lookup.spammers = ["spam.example"]
[session.connect]
reject = [ { if = "remote-ip", in-list = "corp/blocked-ips", then = "554 5.7.1 Your address is blocked" },
           { else = false } ]
[session.ehlo]
reject = "421 4.3.2 Closed for maintenance"
[session.mail]
reject = [ { if = "sender-domain", in-list = "corp/spammers", then = "550 5.7.1 Sender blocked" },
           { if = "authenticated-as", in-list = "corp/spammers", then = false },
           { else = false } ]
[session.rcpt]
reject = [ { if = "rcpt-domain", in-list = "corp/spammers", then = "450 4.7.1 Later" }, { else = false } ]
"#;
    let config = load(text);
    let reject = &config.session.reject;
    let connect = reject.get(Stage::Connect);
    assert_eq!(connect.branches.len(), 1);
    assert_eq!(connect.branches[0].list.to_string(), "corp/blocked-ips");
    let Decision::Reject(reply) = &connect.branches[0].then else {
        panic!("{connect:?}");
    };
    assert_eq!(
        (reply.code, reply.enhanced.as_str(), reply.text.as_str()),
        (554, "5.7.1", "Your address is blocked")
    );
    assert_eq!(reply.to_string(), "554 5.7.1 Your address is blocked");
    assert_eq!(connect.otherwise, Decision::Accept);
    assert_eq!(
        reject.get(Stage::Ehlo).otherwise,
        Decision::Reject(RejectReply {
            code: 421,
            enhanced: "4.3.2".into(),
            text: "Closed for maintenance".into()
        }),
        "a plain reply refuses every client"
    );
    assert_eq!(reject.get(Stage::Mail).branches.len(), 2);
    assert_eq!(reject.get(Stage::Mail).branches[1].then, Decision::Accept);
    assert!(matches!(
        &reject.get(Stage::Rcpt).branches[0].then,
        Decision::Reject(r) if r.is_temporary()
    ));
    let data = reject.get(Stage::Data);
    assert!(
        data.branches.is_empty() && data.otherwise == Decision::Accept,
        "accept is the default"
    );
}
