//! DANE (RFC 7672) in MX delivery. The MX host is a private Postfix offering STARTTLS with a
//! test CA's certificate for `mx.example.net`, relaying what it accepts to smtp-sink; the fake
//! DNS server publishes MX, A and TLSA records and plays the trusted validating resolver,
//! setting the AD bit for the names a test marks secure.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrymail_e2e::{FakeDns, Postfix, SmtpSink, SmtpSinkOptions, TestCertificates};
use ferrymail_queue_scheduler::{Committed, Queue, QueueMetrics, Scheduler};
use ferrymail_rpc::queue::QueueService;
use ferrymail_store::{Store, StoreOptions};
use ferrymail_telemetry::Metrics;
use sha2::{Digest, Sha256, Sha512};

use super::{enqueue, options};

const MX: &str = "mx.example.net";

/// A TLS-capable MX host: Postfix with a certificate for `mx.example.net` signed by a test
/// CA, relaying to smtp-sink.
struct Peer {
    sink: SmtpSink,
    postfix: Postfix,
    certificates: TestCertificates,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start() -> Peer {
        let sink = SmtpSink::start(SmtpSinkOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let certificates = TestCertificates::generate_for(dir.path(), &[MX]);
        let postfix = Postfix::start_with_tls(sink.address(), &certificates);
        Peer {
            sink,
            postfix,
            certificates,
            _dir: dir,
        }
    }

    fn port(&self) -> u16 {
        self.postfix.address().port()
    }

    /// Where the TLSA records of `host` are looked up: `_<port>._tcp.<host>`.
    fn tlsa_name(&self, host: &str) -> String {
        format!("_{}._tcp.{host}", self.port())
    }

    /// Waits until Postfix has logged a TLS session from us, and returns the log.
    fn wait_for_tls_session(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.postfix.log();
            if log.contains("TLS connection established from") {
                return log;
            }
            assert!(Instant::now() < deadline, "no TLS session logged:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the message to pass through Postfix to the sink.
    fn wait_for_delivery(&self) {
        tokio::task::block_in_place(|| self.sink.wait_for_messages(1));
    }

    /// Asserts that Postfix received no message (it queues what it accepts, then relays it).
    fn assert_nothing_received(&self) {
        assert_eq!(self.postfix.queued(), 0, "{}", self.postfix.log());
        assert_eq!(self.sink.received(), 0);
        assert!(
            !self.postfix.log().contains("from=<sender@example.net>"),
            "Postfix accepted the message:\n{}",
            self.postfix.log()
        );
    }
}

/// A fake DNS where `example.net` has the MX host `mx.example.net` at 127.0.0.1, the MX and
/// A records DNSSEC-secure, and the TLSA name secure too (records added by each test).
fn signed_dns(peer: &Peer) -> FakeDns {
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, MX);
    dns.add_a(MX, "127.0.0.1".parse().unwrap());
    dns.secure("example.net");
    dns.secure(MX);
    dns.secure(&peer.tlsa_name(MX));
    dns
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// A queue and scheduler delivering by MX to `peer`'s port, asking `dns`, with `extra`
/// configuration; and the metrics they record.
struct Lab {
    queue: Arc<Queue>,
    scheduler: Arc<Scheduler>,
    metrics: Metrics,
    _dir: tempfile::TempDir,
}

fn lab(dns: &FakeDns, peer: &Peer, extra: &str) -> Lab {
    lab_for_port(dns, peer.port(), extra)
}

/// [`lab`] delivering to `port`.
fn lab_for_port(dns: &FakeDns, port: u16, extra: &str) -> Lab {
    let text = format!(
        r#"
[server]
hostname = "queue.test"
[queue.outbound]
mx-port = {port}
[queue.outbound.timeouts]
connect = "10s"
greeting = "10s"
tls = "10s"
[queue.schedule]
retry = ["1m", "5m"]
expire = "1d"
{resolver}
{extra}
"#,
        resolver = dns.resolver_config()
    );
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let metrics = Metrics::new("test");
    let queue = Arc::new(Queue::with_metrics(
        store,
        &config.queue,
        QueueMetrics::register(&metrics),
    ));
    let scheduler = Arc::new(Scheduler::new(queue.clone(), &config, options("one")));
    Lab {
        queue,
        scheduler,
        metrics,
        _dir: dir,
    }
}

impl Lab {
    /// Enqueues a message to bob@example.net and makes one delivery attempt.
    async fn attempt(&self) -> (Option<Committed>, String) {
        self.attempt_to("bob@example.net").await
    }

    /// Enqueues a message to `recipient` and makes one delivery attempt.
    async fn attempt_to(&self, recipient: &str) -> (Option<Committed>, String) {
        let id = enqueue(&self.queue, &[recipient]).await;
        let committed = self
            .scheduler
            .attempt(&id, SystemTime::now())
            .await
            .unwrap();
        let reply = match committed {
            Some(Committed::Removed) => String::new(),
            _ => {
                let detail = self.queue.get(&id.to_wire()).await.unwrap();
                detail.recipients[0].last_reply.clone().unwrap_or_default()
            }
        };
        (committed, reply)
    }

    /// How many DANE checks had `result`, as scraped.
    fn dane_checks(&self, result: &str) -> u64 {
        let text = self.metrics.encode().unwrap();
        let series = format!("queue_dane_checks_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |value| value.trim().parse().unwrap())
    }
}

const KEPT: Option<Committed> = Some(Committed::Kept { live: 1 });

#[tokio::test(flavor = "multi_thread")]
async fn a_matching_dane_ee_record_delivers_over_tls() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    let spki = sha256(&peer.certificates.spki_der);
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &spki);
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    peer.wait_for_tls_session();
    assert_eq!(lab.dane_checks("verified"), 1);
    assert!(
        dns.queries()
            .iter()
            .any(|(name, kind)| *name == peer.tlsa_name(MX) && kind.to_string() == "TLSA"),
        "{:?}",
        dns.queries()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_ee_matches_the_whole_certificate_and_sha512_too() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    // One wrong record does not spoil a matching one.
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &sha256(b"another key"));
    let digest = Sha512::digest(&peer.certificates.cert_der).to_vec();
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 0, 2, &digest);
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert_eq!(lab.dane_checks("verified"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_implicit_mx_is_checked_by_dane_too() {
    let peer = Peer::start();
    // No MX record: mail for mx.example.net goes to its own (secure) address.
    let dns = FakeDns::start();
    dns.add_a(MX, "127.0.0.1".parse().unwrap());
    dns.secure(MX);
    dns.secure(&peer.tlsa_name(MX));
    let spki = sha256(&peer.certificates.spki_der);
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &spki);
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt_to("bob@mx.example.net").await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert_eq!(lab.dane_checks("verified"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_tlsa_records_must_offer_starttls() {
    // smtp-sink offers no STARTTLS: with DANE records, clear text is never used.
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let port = sink.address().port();
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, MX);
    dns.add_a(MX, "127.0.0.1".parse().unwrap());
    let tlsa = format!("_{port}._tcp.{MX}");
    for name in ["example.net", MX, tlsa.as_str()] {
        dns.secure(name);
    }
    dns.add_tlsa(&tlsa, 3, 1, 1, &sha256(b"some key"));
    let lab = lab_for_port(&dns, port, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(reply.contains("does not offer STARTTLS"), "{reply}");
    assert_eq!(sink.received(), 0);
    assert_eq!(lab.dane_checks("failed"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mismatching_record_fails_temporarily_whatever_the_starttls_settings() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &sha256(b"another key"));
    // DANE overrides both: the certificate is still checked against the TLSA records.
    let extra = "[queue.outbound.tls]\nstarttls = \"optional\"\nallow-invalid-certs = true\n";
    let lab = lab(&dns, &peer, extra);
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(
        reply.contains("mx.example.net[127.0.0.1]")
            && reply.contains("matches none of its TLSA records"),
        "{reply}"
    );
    peer.assert_nothing_received();
    assert_eq!(lab.dane_checks("failed"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_failing_dane_is_passed_over_for_the_next_mx() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &sha256(b"another key"));
    // The second host is the same Postfix under another name, without TLSA records.
    dns.add_mx("example.net", 20, "mx2.example.net");
    dns.add_a("mx2.example.net", "127.0.0.1".parse().unwrap());
    dns.secure("mx2.example.net");
    dns.secure(&peer.tlsa_name("mx2.example.net"));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert_eq!(lab.dane_checks("failed"), 1);
    assert_eq!(lab.dane_checks("no_records"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dane_ta_record_matching_the_ca_in_the_chain_delivers() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    dns.add_tlsa(
        &peer.tlsa_name(MX),
        2,
        0,
        1,
        &sha256(&peer.certificates.ca_der),
    );
    // DANE applies even where STARTTLS is turned off.
    let lab = lab(
        &dns,
        &peer,
        "[queue.outbound.tls]\nstarttls = \"disable\"\n",
    );
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    peer.wait_for_tls_session();
    assert_eq!(lab.dane_checks("verified"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dane_ta_checks_the_host_name() {
    let peer = Peer::start();
    // The certificate names mx.example.net; this MX host is called otherwise.
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, "other.example.net");
    dns.add_a("other.example.net", "127.0.0.1".parse().unwrap());
    let tlsa = peer.tlsa_name("other.example.net");
    for name in ["example.net", "other.example.net", tlsa.as_str()] {
        dns.secure(name);
    }
    dns.add_tlsa(&tlsa, 2, 1, 1, &sha256(&peer.certificates.ca_spki_der));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(
        reply.contains("does not verify under the TLSA trust anchor"),
        "{reply}"
    );
    peer.assert_nothing_received();
}

/// A fake DNS where `example.net`'s MX host `alias.example.net` is a secure CNAME for
/// `mx.example.net` (the name in the peer's certificate), with the TLSA names of both secure.
fn aliased_dns(peer: &Peer) -> FakeDns {
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, "alias.example.net");
    dns.add_cname("alias.example.net", MX);
    dns.add_a(MX, "127.0.0.1".parse().unwrap());
    for name in ["example.net", "alias.example.net", MX] {
        dns.secure(name);
    }
    dns.secure(&peer.tlsa_name("alias.example.net"));
    dns.secure(&peer.tlsa_name(MX));
    dns
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mx_alias_uses_the_tlsa_records_of_the_name_it_expands_to() {
    let peer = Peer::start();
    let dns = aliased_dns(&peer);
    dns.add_tlsa(
        &peer.tlsa_name(MX),
        2,
        1,
        1,
        &sha256(&peer.certificates.ca_spki_der),
    );
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert_eq!(lab.dane_checks("verified"), 1);
    assert_eq!(lab.dane_checks("no_records"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mx_alias_without_records_at_its_expansion_uses_its_own() {
    // The records are at the alias; the certificate names the expansion, which DANE-TA
    // accepts for an alias.
    let peer = Peer::start();
    let dns = aliased_dns(&peer);
    let tlsa = peer.tlsa_name("alias.example.net");
    dns.add_tlsa(&tlsa, 2, 1, 1, &sha256(&peer.certificates.ca_spki_der));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert_eq!(lab.dane_checks("verified"), 1);
    let asked: Vec<String> = dns.queries().into_iter().map(|(name, _)| name).collect();
    let expansion = peer.tlsa_name(MX);
    let first = asked.iter().position(|n| *n == expansion);
    let then = asked.iter().position(|n| *n == tlsa);
    assert!(
        first.is_some() && first < then,
        "expansion first: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_tlsa_answers_are_ignored() {
    let peer = Peer::start();
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, MX);
    dns.add_a(MX, "127.0.0.1".parse().unwrap());
    dns.secure("example.net");
    dns.secure(MX);
    // Not marked secure: the resolver did not authenticate it, so it cannot be trusted.
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &sha256(b"another key"));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert_eq!(lab.dane_checks("insecure"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insecure_mx_lookup_skips_dane() {
    let peer = Peer::start();
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, MX);
    dns.add_a(MX, "127.0.0.1".parse().unwrap());
    // Everything below the MX record is signed, the MX record itself is not.
    dns.secure(MX);
    dns.secure(&peer.tlsa_name(MX));
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &sha256(b"another key"));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert!(
        !dns.queries()
            .iter()
            .any(|(_, kind)| kind.to_string() == "TLSA"),
        "TLSA is not asked below an unsigned MX record: {:?}",
        dns.queries()
    );
    assert_eq!(lab.dane_checks("insecure"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_tlsa_lookup_is_temporary_and_never_falls_back_to_clear_text() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    dns.fail(&peer.tlsa_name(MX));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(reply.starts_with("451 4.4.3 TLSA lookup"), "{reply}");
    peer.assert_nothing_received();
    assert_eq!(lab.dane_checks("lookup_failed"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn require_without_tlsa_records_fails_temporarily() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    let lab = lab(&dns, &peer, "[queue.outbound.tls]\ndane = \"require\"\n");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(
        reply.starts_with("451 4.7.5 mx.example.net: DANE is required"),
        "{reply}"
    );
    peer.assert_nothing_received();
}

#[tokio::test(flavor = "multi_thread")]
async fn require_with_a_matching_record_delivers() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    let spki = sha256(&peer.certificates.spki_der);
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &spki);
    let lab = lab(&dns, &peer, "[queue.outbound.tls]\ndane = \"require\"\n");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_never_looks_tlsa_up() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    dns.add_tlsa(&peer.tlsa_name(MX), 3, 1, 1, &sha256(b"another key"));
    let lab = lab(&dns, &peer, "[queue.outbound.tls]\ndane = \"disable\"\n");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    assert!(
        !dns.queries()
            .iter()
            .any(|(_, kind)| kind.to_string() == "TLSA"),
        "{:?}",
        dns.queries()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pkix_records_are_unusable_and_leave_opportunistic_tls() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    // PKIX-TA and PKIX-EE (RFC 7672 §3.1.3), both matching nothing.
    dns.add_tlsa(&peer.tlsa_name(MX), 0, 0, 1, &sha256(b"some CA"));
    dns.add_tlsa(&peer.tlsa_name(MX), 1, 1, 1, &sha256(b"another key"));
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    peer.wait_for_delivery();
    peer.wait_for_tls_session();
    assert_eq!(lab.dane_checks("unusable"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_tlsa_data_matches_nothing() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    let name = peer.tlsa_name(MX);
    dns.add_tlsa(&name, 3, 1, 1, &[0xde, 0xad]); // a digest too short
    dns.add_tlsa(&name, 3, 0, 0, b"not a certificate");
    dns.add_tlsa(&name, 2, 1, 0, b"not a public key");
    dns.add_tlsa(&name, 3, 7, 9, &[0; 32]); // unknown selector and matching type
    dns.add_tlsa(&name, 200, 1, 1, &[0; 32]); // unknown usage
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(
        reply.contains("matches none of its TLSA records"),
        "{reply}"
    );
    peer.assert_nothing_received();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_tlsa_record_is_a_temporary_failure() {
    let peer = Peer::start();
    let dns = signed_dns(&peer);
    // Shorter than the usage, selector and matching fields: the answer cannot be read.
    dns.add_undecodable_tlsa(&peer.tlsa_name(MX), &[3, 1]);
    let lab = lab(&dns, &peer, "");
    let (committed, reply) = lab.attempt().await;
    assert_eq!(committed, KEPT, "{reply}");
    assert!(reply.starts_with("451 4.4.3 "), "{reply}");
    peer.assert_nothing_received();
}
