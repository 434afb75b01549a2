//! MTA-STS (RFC 8461) on MX delivery: policies served over real HTTPS (an in-process
//! hyper/rustls server with a test CA), records from a fake DNS server, and real SMTP peers:
//! smtp-sink (no TLS) and Postfix offering STARTTLS with a test certificate.
//!
//! RFC 8461 fetches policies on port 443, which tests cannot bind: the scheduler's
//! `mta_sts_port` (an internal option, not a configuration key) points it at the test
//! server, and `extra_roots` makes it trust the test CA, for the policy host and for
//! STARTTLS alike.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_e2e::{FakeDns, HttpsServer, Postfix, SmtpSink, SmtpSinkOptions, TestCertificates};
use ferrymail_queue_scheduler::{
    Committed, MessageId, Queue, QueueMetrics, Scheduler, SchedulerOptions,
};
use ferrymail_rpc::queue::{QueueService, RecipientState};
use ferrymail_store::{Store, StoreOptions};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{RETRY, enqueue, notices, options};

const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

/// A policy in `mode` allowing `mx`, cacheable for a day.
fn policy(mode: &str, mx: &[&str]) -> String {
    let mx: String = mx.iter().map(|m| format!("mx: {m}\r\n")).collect();
    format!("version: STSv1\r\nmode: {mode}\r\n{mx}max_age: 86400\r\n")
}

/// Everything a test runs against: DNS, the policy server and its certificates.
struct World {
    dns: FakeDns,
    https: HttpsServer,
    certs: TestCertificates,
    _dir: tempfile::TempDir,
}

impl World {
    /// A world whose test certificate is valid for `names`.
    fn new(names: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let certs = TestCertificates::generate_for(dir.path(), names);
        let https = HttpsServer::start(&certs);
        World {
            dns: FakeDns::start(),
            https,
            certs,
            _dir: dir,
        }
    }

    /// `domain` receives at `mx` (127.0.0.1) and publishes MTA-STS record `id` with
    /// `policy` served from `mta-sts.<domain>`.
    fn publish(&self, domain: &str, mx: &str, id: &str, policy: &str) {
        self.dns.add_mx(domain, 10, mx);
        self.dns.add_a(mx, LOCALHOST);
        publish_record(&self.dns, domain, id);
        self.serve(domain, 200, policy);
    }

    fn serve(&self, domain: &str, status: u16, body: &str) {
        self.https.serve(
            &format!("mta-sts.{domain}"),
            POLICY_PATH,
            status,
            body.to_owned(),
        );
    }

    /// Policy fetches from `mta-sts.<domain>` so far.
    fn fetches(&self, domain: &str) -> usize {
        self.https.requests(&format!("mta-sts.{domain}"))
    }

    fn scheduler_options(&self) -> SchedulerOptions {
        let ca = CertificateDer::from_pem_file(&self.certs.ca_pem).unwrap();
        SchedulerOptions {
            extra_roots: vec![ca],
            mta_sts_port: self.https.address().port(),
            ..options("one")
        }
    }
}

/// example.net, received at mx.example.net (an smtp-sink), with record id 1 and a policy
/// in `mode` naming only mail.example.net: while an enforced one applies, every attempt
/// fails with `451 4.7.5`; without it, the mail goes to the sink.
fn world_naming_another_mx(mode: &str) -> (World, SmtpSink) {
    world_with_policy(mode, &["mail.example.net"])
}

/// example.net, received at mx.example.net (an smtp-sink), with record id 1 and a policy in
/// `mode` allowing `mx`.
fn world_with_policy(mode: &str, mx: &[&str]) -> (World, SmtpSink) {
    let world = World::new(&["mta-sts.example.net"]);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    world.publish("example.net", "mx.example.net", "1", &policy(mode, mx));
    (world, sink)
}

/// `_mta-sts.<domain>` with `id`, and the policy host's address.
fn publish_record(dns: &FakeDns, domain: &str, id: &str) {
    dns.add_txt(&format!("_mta-sts.{domain}"), &format!("v=STSv1; id={id};"));
    dns.add_a(&format!("mta-sts.{domain}"), LOCALHOST);
}

/// A configuration delivering by MX on `port`, asking `dns`, with `extra` appended.
fn config(dns: &FakeDns, port: u16, extra: &str) -> ferrymail_config::Config {
    let text = format!(
        "[server]\nhostname = \"queue.test\"\n[queue.outbound]\nmx-port = {port}\n\
         [queue.outbound.timeouts]\nconnect = \"10s\"\ngreeting = \"10s\"\nmta-sts = \"10s\"\n\
         [queue.schedule]\nretry = [\"1m\", \"5m\"]\nexpire = \"1d\"\n{}\n{extra}\n",
        dns.resolver_config()
    );
    ferrymail_config::load_str("test.toml", &text).unwrap()
}

struct Lab {
    queue: Arc<Queue>,
    scheduler: Arc<Scheduler>,
    metrics: QueueMetrics,
    _dir: tempfile::TempDir,
}

fn lab(world: &World, config: &ferrymail_config::Config) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let metrics = QueueMetrics::unregistered();
    let queue = Arc::new(Queue::with_metrics(store, &config.queue, metrics.clone()));
    let scheduler = Arc::new(Scheduler::new(
        queue.clone(),
        config,
        world.scheduler_options(),
    ));
    Lab {
        queue,
        scheduler,
        metrics,
        _dir: dir,
    }
}

impl Lab {
    /// One attempt of `id` at `at`; what the queue kept, and recipient 0's last reply.
    async fn attempt(&self, id: &MessageId, at: SystemTime) -> (Option<Committed>, String) {
        let committed = self.scheduler.attempt(id, at).await.unwrap();
        let reply = match self.queue.get(&id.to_wire()).await {
            Ok(detail) => detail.recipients[0].last_reply.clone().unwrap_or_default(),
            Err(_) => String::new(),
        };
        (committed, reply)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enforced_policy_delivers_to_its_mx_over_verified_tls() {
    let world = World::new(&["mx.example.net", "mta-sts.example.net"]);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let postfix = Postfix::start_with_tls(sink.address(), &world.certs);
    world.publish(
        "example.net",
        "mx.example.net",
        "20261122",
        &policy("enforce", &["mx.example.net"]),
    );
    let lab = lab(&world, &config(&world.dns, postfix.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let (committed, reply) = lab.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert!(
        postfix.log().contains("TLS connection established from"),
        "delivered over TLS: {}",
        postfix.log()
    );
    assert_eq!(world.fetches("example.net"), 1);
    assert_eq!(lab.metrics.mta_sts_checks("enforce"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enforced_policy_refuses_an_mx_it_does_not_name() {
    let (world, sink) = world_with_policy("enforce", &["mail.example.net", "*.mail.example.net"]);
    let lab = lab(&world, &config(&world.dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let (committed, reply) = lab.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    assert!(
        reply.starts_with("451 4.7.5 ")
            && reply.contains("MTA-STS")
            && reply.contains("mail.example.net, *.mail.example.net"),
        "{reply}"
    );
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::TempFailed);
    assert!(notices(&lab.queue).await.is_empty(), "never a bounce");
    assert_eq!(sink.received(), 0);
    assert_eq!(lab.metrics.mta_sts_checks("enforce_mismatch"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enforced_policy_refuses_a_certificate_not_valid_for_the_mx() {
    // The certificate names mx.example.net; the MX is other.example.net, which the policy
    // allows. allow-invalid-certs does not weaken an enforced policy.
    let world = World::new(&["mx.example.net", "mta-sts.example.net"]);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let postfix = Postfix::start_with_tls(sink.address(), &world.certs);
    world.publish(
        "example.net",
        "other.example.net",
        "1",
        &policy("enforce", &["*.example.net"]),
    );
    let extra = "[queue.outbound.tls]\nallow-invalid-certs = true\n";
    let lab = lab(&world, &config(&world.dns, postfix.address().port(), extra));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let (committed, reply) = lab.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    assert!(
        reply.contains("other.example.net[127.0.0.1]") && reply.contains("TLS"),
        "{reply}"
    );
    assert!(notices(&lab.queue).await.is_empty(), "never a bounce");
    assert_eq!(postfix.queued(), 0);
    assert_eq!(sink.received(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_testing_policy_delivers_as_usual_and_counts_what_it_would_refuse() {
    let (world, sink) = world_naming_another_mx("testing");
    let lab = lab(&world, &config(&world.dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let (committed, reply) = lab.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(lab.metrics.mta_sts_checks("testing"), 1);
    assert_eq!(lab.metrics.mta_sts_checks("testing_mismatch"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_policy_applies_when_a_new_fetch_fails() {
    let (world, sink) = world_naming_another_mx("enforce");
    let lab = lab(&world, &config(&world.dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let (committed, first) = lab.attempt(&id, now).await;
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    assert!(first.starts_with("451 4.7.5 "), "{first}");

    // A new record id asks for a new fetch, which fails: the cached policy still applies.
    // (The new record comes from another DNS server, applied as a reload.)
    world.serve("example.net", 500, "internal error\n");
    let renewed = FakeDns::start();
    renewed.add_mx("example.net", 10, "mx.example.net");
    renewed.add_a("mx.example.net", LOCALHOST);
    publish_record(&renewed, "example.net", "2");
    lab.scheduler
        .apply(&config(&renewed, sink.address().port(), ""));
    let later = now + RETRY + Duration::from_secs(1);
    let (committed, second) = lab.attempt(&id, later).await;
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    assert_eq!(world.fetches("example.net"), 2, "the new id was fetched");
    assert!(
        second.starts_with("451 4.7.5 ") && second.contains("mail.example.net"),
        "the cached policy: {second}"
    );
    assert_eq!(sink.received(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_one_scheduler_fetched_applies_in_another_sharing_the_store() {
    let (world, sink) = world_naming_another_mx("enforce");
    let config = config(&world.dns, sink.address().port(), "");
    let lab = lab(&world, &config);
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let (_, first) = lab.attempt(&id, now).await;
    assert!(first.starts_with("451 4.7.5 "), "{first}");
    assert_eq!(world.fetches("example.net"), 1);

    // Another scheduler on the same store (another pod, or this one restarted, with nothing
    // in memory), while the policy host fails: the policy the first one fetched applies,
    // and is not fetched again while the record id is unchanged.
    world.serve("example.net", 500, "internal error\n");
    let other = Scheduler::new(lab.queue.clone(), &config, world.scheduler_options());
    let later = now + RETRY + Duration::from_secs(1);
    let committed = other.attempt(&id, later).await.unwrap();
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    let second = detail.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(
        second.starts_with("451 4.7.5 ") && second.contains("mail.example.net"),
        "the remembered policy: {second}"
    );
    assert_eq!(world.fetches("example.net"), 1, "fetched once for both");
    assert_eq!(sink.received(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_record_id_fetches_the_policy_again() {
    let (world, sink) = world_naming_another_mx("enforce");
    let lab = lab(&world, &config(&world.dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let (committed, _) = lab.attempt(&id, now).await;
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));

    // The domain changes its policy but not yet its record: the cached one still applies.
    world.serve(
        "example.net",
        200,
        &policy("testing", &["mail.example.net"]),
    );
    let later = now + RETRY + Duration::from_secs(1);
    let (committed, reply) = lab.attempt(&id, later).await;
    assert_eq!(committed, Some(Committed::Kept { live: 1 }), "{reply}");
    assert_eq!(world.fetches("example.net"), 1, "cached while the id stays");

    // A new id: the new policy is fetched and applies.
    let renewed = FakeDns::start();
    renewed.add_mx("example.net", 10, "mx.example.net");
    renewed.add_a("mx.example.net", LOCALHOST);
    publish_record(&renewed, "example.net", "2");
    lab.scheduler
        .apply(&config(&renewed, sink.address().port(), ""));
    let (committed, reply) = lab.attempt(&id, later + Duration::from_secs(3600)).await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    assert_eq!(world.fetches("example.net"), 2);
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn require_defers_domains_without_an_enforced_policy() {
    let world = World::new(&["mta-sts.example.net", "mta-sts.testing.test"]);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    world.dns.add_mx("example.net", 10, "mx.example.net");
    world.dns.add_a("mx.example.net", LOCALHOST);
    world.publish(
        "testing.test",
        "mx.testing.test",
        "1",
        &policy("testing", &["mx.testing.test"]),
    );
    let extra = "[queue.outbound.tls]\nmta-sts = \"require\"\n";
    let lab = lab(&world, &config(&world.dns, sink.address().port(), extra));
    for (recipient, why) in [
        ("bob@example.net", "example.net publishes no MTA-STS policy"),
        ("bob@testing.test", "is in testing mode"),
    ] {
        let id = enqueue(&lab.queue, &[recipient]).await;
        let (committed, reply) = lab.attempt(&id, SystemTime::now()).await;
        assert_eq!(committed, Some(Committed::Kept { live: 1 }), "{reply}");
        assert!(
            reply.starts_with("451 4.7.5 MTA-STS is required") && reply.contains(why),
            "{reply}"
        );
    }
    assert!(notices(&lab.queue).await.is_empty(), "never a bounce");
    assert_eq!(sink.received(), 0);
    assert_eq!(lab.metrics.mta_sts_checks("absent"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unavailable_policy_is_skipped_in_optional_and_defers_in_require() {
    // One domain's policy host answers 503, the other's record lookup fails (SERVFAIL).
    let (world, sink) = world_naming_another_mx("enforce");
    world.serve("example.net", 503, "unavailable\n");
    world.dns.add_mx("servfail.test", 10, "mx.example.net");
    world.dns.fail("_mta-sts.servfail.test");

    let require = "[queue.outbound.tls]\nmta-sts = \"require\"\n";
    let strict = lab(&world, &config(&world.dns, sink.address().port(), require));
    for (recipient, why) in [
        ("bob@example.net", "503"),
        ("bob@servfail.test", "_mta-sts.servfail.test"),
    ] {
        let id = enqueue(&strict.queue, &[recipient]).await;
        let (committed, reply) = strict.attempt(&id, SystemTime::now()).await;
        assert_eq!(committed, Some(Committed::Kept { live: 1 }), "{reply}");
        assert!(
            reply.starts_with("451 4.7.5 ") && reply.contains("unavailable") && reply.contains(why),
            "{reply}"
        );
    }
    assert_eq!(sink.received(), 0);

    let lenient = lab(&world, &config(&world.dns, sink.address().port(), ""));
    let id = enqueue(&lenient.queue, &["bob@example.net", "carol@servfail.test"]).await;
    let (committed, reply) = lenient.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    tokio::task::block_in_place(|| sink.wait_for_messages(2));
    assert_eq!(lenient.metrics.mta_sts_checks("unavailable"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_never_looks_for_a_policy() {
    let (world, sink) = world_naming_another_mx("enforce");
    let extra = "[queue.outbound.tls]\nmta-sts = \"disable\"\n";
    let lab = lab(&world, &config(&world.dns, sink.address().port(), extra));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let (committed, reply) = lab.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(world.fetches("example.net"), 0);
    let asked: Vec<String> = world.dns.queries().into_iter().map(|(n, _)| n).collect();
    assert!(
        !asked.iter().any(|name| name.starts_with("_mta-sts.")),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_policies_leave_the_domain_without_one() {
    // Each would refuse the domain's MX if it were taken for an enforced policy.
    let valid = policy("enforce", &["mail.example.net"]);
    let padding = "extension: ".to_owned() + &"x".repeat(100) + "\r\n";
    let huge = valid.clone() + &padding.repeat(700);
    let cases: [(&str, u16, String); 6] = [
        (
            "noversion.test",
            200,
            valid.replace("version: STSv1\r\n", ""),
        ),
        ("badmode.test", 200, valid.replace("enforce", "strict")),
        ("badage.test", 200, valid.replace("86400", "a day")),
        ("longage.test", 200, valid.replace("86400", "99999999999")),
        ("huge.test", 200, huge),
        ("redirect.test", 301, String::new()),
    ];
    let names: Vec<String> = cases
        .iter()
        .map(|(domain, _, _)| format!("mta-sts.{domain}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let world = World::new(&names);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    for (domain, status, body) in &cases {
        world.publish(domain, &format!("mx.{domain}"), "1", body);
        world.serve(domain, *status, body);
    }
    let lenient = lab(&world, &config(&world.dns, sink.address().port(), ""));
    let recipients: Vec<String> = cases.iter().map(|(d, _, _)| format!("bob@{d}")).collect();
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let id = enqueue(&lenient.queue, &recipients).await;
    let (committed, reply) = lenient.attempt(&id, SystemTime::now()).await;
    assert_eq!(committed, Some(Committed::Removed), "{reply}");
    tokio::task::block_in_place(|| sink.wait_for_messages(cases.len()));
    for (domain, _, _) in &cases {
        assert_eq!(world.fetches(domain), 1, "{domain} was asked once");
    }
    assert_eq!(
        lenient.metrics.mta_sts_checks("unavailable"),
        cases.len() as u64
    );

    // Under `require`, each is a temporary failure that says why.
    let require = "[queue.outbound.tls]\nmta-sts = \"require\"\n";
    let strict = lab(&world, &config(&world.dns, sink.address().port(), require));
    for (recipient, why) in [
        ("bob@noversion.test", "version: STSv1"),
        ("bob@badmode.test", "strict"),
        ("bob@badage.test", "max_age"),
        ("bob@huge.test", "larger than 65536 bytes"),
        ("bob@redirect.test", "301"),
    ] {
        let id = enqueue(&strict.queue, &[recipient]).await;
        let (committed, reply) = strict.attempt(&id, SystemTime::now()).await;
        assert_eq!(committed, Some(Committed::Kept { live: 1 }), "{reply}");
        assert!(
            reply.starts_with("451 4.7.5 ") && reply.contains(why),
            "{reply}"
        );
    }
}

/// The keys of every MTA-STS policy the store remembers.
async fn stored_policies(store: &Store) -> Vec<Vec<u8>> {
    let (begin, end) = store.root().range();
    let everything = ferrymail_store::KeyRange::new(begin, end);
    let pairs = store
        .transact(|tx| {
            let everything = everything.clone();
            Box::pin(async move { tx.get_all(&everything, 1000).await })
        })
        .await
        .unwrap();
    pairs
        .into_iter()
        .map(|pair| pair.key)
        .filter(|key| key.windows(7).any(|w| w == b"mta-sts"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_scheduler_forgets_expired_policies_of_domains_not_mailed_again() {
    let world = World::new(&["mta-sts.example.net"]);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let short_lived = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.net\r\nmax_age: 1\r\n";
    world.publish("example.net", "mx.example.net", "1", short_lived);
    let config = config(&world.dns, sink.address().port(), "");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::with_metrics(
        store.clone(),
        &config.queue,
        QueueMetrics::unregistered(),
    ));
    let options = SchedulerOptions {
        heartbeat: Duration::from_millis(100),
        ..world.scheduler_options()
    };
    let scheduler = Arc::new(Scheduler::new(queue.clone(), &config, options));
    let id = enqueue(&queue, &["bob@example.net"]).await;
    scheduler.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(
        stored_policies(&store).await.len(),
        1,
        "the policy is remembered"
    );

    // No message to example.net is attempted again (the next try is a minute away): only the
    // sweep on the heartbeats can forget the policy once its second has passed.
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(scheduler.clone().run(stop.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stored_policies(&store).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired policy is still stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    running.await.unwrap();
    assert_eq!(world.fetches("example.net"), 1);
}
