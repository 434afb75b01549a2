//! MX delivery against smtp-sink, with a fake DNS server answering MX and A queries: the MX
//! port is pointed at the sink with `queue.outbound.mx-port`.

use std::time::{Duration, SystemTime};

use ferrymail_config::model::outbound::IpStrategy;
use ferrymail_e2e::{FakeDns, SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Committed, MessageId, Outcome};
use ferrymail_rpc::queue::{QueueService, QueueStats, RecipientState};
use tokio_util::sync::CancellationToken;

use super::{RETRY, enqueue, lab, notices, wait_for_stats};

/// A configuration delivering everything by MX (the default next hop) to port `port`,
/// asking `dns`.
fn config(dns: &FakeDns, port: u16, extra: &str) -> ferrymail_config::Config {
    let text = format!(
        r#"
[server]
hostname = "queue.test"
[queue.outbound]
mx-port = {port}
[queue.outbound.timeouts]
connect = "10s"
greeting = "10s"
[queue.schedule]
retry = ["1m", "5m"]
expire = "1d"
{resolver}
{extra}
"#,
        resolver = dns.resolver_config()
    );
    ferrymail_config::load_str("test.toml", &text).unwrap()
}

/// [`config`] with `queue.outbound.ip-strategy = strategy`.
fn with_strategy(dns: &FakeDns, port: u16, strategy: &str) -> ferrymail_config::Config {
    let mut config = config(dns, port, "");
    config.queue.outbound.ip_strategy = match strategy {
        "ipv6_only" => IpStrategy::Ipv6Only,
        "ipv6_then_ipv4" => IpStrategy::Ipv6ThenIpv4,
        other => panic!("no strategy {other}"),
    };
    config
}

/// The last reply recorded for recipient `index` of message `id`.
async fn last_reply(
    queue: &ferrymail_queue_scheduler::Queue,
    id: &MessageId,
    index: usize,
) -> String {
    let detail = queue.get(&id.to_wire()).await.unwrap();
    detail.recipients[index]
        .last_reply
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn recipients_of_a_domain_go_to_its_mx_in_one_transaction() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    let lab = lab(&config(&dns, sink.address().port(), ""));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));

    enqueue(&lab.queue, &["bob@example.net", "Carol@EXAMPLE.net"]).await;
    wait_for_stats(&lab.queue, "an empty queue", |s| {
        *s == QueueStats::default()
    })
    .await;
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(sink.received(), 1, "both recipients in one transaction");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_mx_is_passed_over_for_the_next_one() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    // Nothing listens on 127.0.0.2 at the sink's port: the connection is refused.
    dns.add_mx("example.net", 10, "mx1.example.net");
    dns.add_a("mx1.example.net", "127.0.0.2".parse().unwrap());
    dns.add_mx("example.net", 20, "mx2.example.net");
    dns.add_a("mx2.example.net", "127.0.0.1".parse().unwrap());
    assert!(
        std::net::TcpStream::connect(("127.0.0.2", sink.address().port())).is_err(),
        "the first host must refuse"
    );
    let lab = lab(&config(&dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let committed = lab.scheduler.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(committed, Some(Committed::Removed));
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let asked: Vec<String> = dns.queries().into_iter().map(|(name, _)| name).collect();
    let first = asked.iter().position(|n| n == "mx1.example.net");
    let second = asked.iter().position(|n| n == "mx2.example.net");
    assert!(
        first.is_some() && first < second,
        "the preferred host first: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_without_mx_receives_at_its_own_address() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_a("implicit.test", "127.0.0.1".parse().unwrap());
    let lab = lab(&config(&dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@implicit.test"]).await;
    let committed = lab.scheduler.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(committed, Some(Committed::Removed));
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_null_mx_bounces_and_the_report_reaches_the_sender_by_mx() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("null.test", 0, ".");
    // The sender's domain (example.net, see `enqueue`) receives the report.
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    let lab = lab(&config(&dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["nobody@null.test"]).await;
    let now = SystemTime::now();
    let claim = lab.scheduler.claim(&id, now).await.unwrap().unwrap();
    let outcomes = lab.scheduler.deliver(&claim, now).await;
    assert!(
        matches!(&outcomes[..], [(0, Outcome::PermFailed(reply))] if reply.starts_with("556 5.1.10 ")),
        "{outcomes:?}"
    );
    lab.scheduler.commit(&claim, outcomes, now).await.unwrap();
    let reports = notices(&lab.queue).await;
    assert_eq!(reports.len(), 1, "one report: {reports:?}");
    assert!(reports[0].1.contains("Status: 5.1.10"), "{}", reports[0].1);

    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));
    wait_for_stats(&lab.queue, "the report delivered", |s| {
        *s == QueueStats::default()
    })
    .await;
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert!(
        sink.messages()[0].contains("Status: 5.1.10"),
        "the report: {:?}",
        sink.messages()
    );
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_that_does_not_exist_fails_permanently() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    let lab = lab(&config(&dns, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@nowhere.test"]).await;
    let now = SystemTime::now();
    let claim = lab.scheduler.claim(&id, now).await.unwrap().unwrap();
    let outcomes = lab.scheduler.deliver(&claim, now).await;
    assert!(
        matches!(&outcomes[..], [(0, Outcome::PermFailed(reply))] if reply.starts_with("550 5.1.2 ")),
        "{outcomes:?}"
    );
    assert_eq!(sink.received(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dns_failure_is_temporary_and_retried() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let broken = FakeDns::start();
    broken.fail("example.net");
    let lab = lab(&config(&broken, sink.address().port(), ""));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let first = lab.scheduler.attempt(&id, now).await.unwrap();
    assert_eq!(first, Some(Committed::Kept { live: 1 }));
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::TempFailed);
    let reply = last_reply(&lab.queue, &id, 0).await;
    assert!(reply.starts_with("451 4.4.3 "), "{reply}");
    assert!(
        notices(&lab.queue).await.is_empty(),
        "a DNS failure never bounces"
    );

    // DNS answers again (another server, applied as a reload): the retry delivers.
    let working = FakeDns::start();
    working.add_mx("example.net", 10, "mx.example.net");
    working.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    lab.scheduler
        .apply(&config(&working, sink.address().port(), ""));
    let later = now + RETRY + Duration::from_secs(1);
    let second = lab.scheduler.attempt(&id, later).await.unwrap();
    assert_eq!(second, Some(Committed::Removed));
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn required_starttls_not_offered_fails_temporarily() {
    // smtp-sink offers no STARTTLS.
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    let extra = "[queue.outbound.tls]\nstarttls = \"require\"\n";
    let lab = lab(&config(&dns, sink.address().port(), extra));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let committed = lab.scheduler.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(committed, Some(Committed::Kept { live: 1 }));
    let reply = last_reply(&lab.queue, &id, 0).await;
    assert!(
        reply.contains("mx.example.net[127.0.0.1]") && reply.contains("STARTTLS is required"),
        "{reply}"
    );
    assert_eq!(sink.received(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ip_strategy_chooses_the_addresses_tried() {
    // The sink listens on 127.0.0.1 only: [::1] refuses (or is unreachable).
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    dns.add_aaaa("mx.example.net", "::1".parse().unwrap());
    let port = sink.address().port();

    let v6_only = lab(&with_strategy(&dns, port, "ipv6_only"));
    let id = enqueue(&v6_only.queue, &["bob@example.net"]).await;
    let committed = v6_only
        .scheduler
        .attempt(&id, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        committed,
        Some(Committed::Kept { live: 1 }),
        "IPv4 never tried"
    );
    let reply = last_reply(&v6_only.queue, &id, 0).await;
    assert!(
        reply.contains("[::1]") && !reply.contains("127.0.0.1"),
        "only the IPv6 address tried: {reply}"
    );

    let v6_first = lab(&with_strategy(&dns, port, "ipv6_then_ipv4"));
    let id = enqueue(&v6_first.queue, &["bob@example.net"]).await;
    let committed = v6_first
        .scheduler
        .attempt(&id, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(committed, Some(Committed::Removed), "IPv4 after IPv6");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(sink.received(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn mx_sessions_are_kept_for_the_next_message_to_the_same_host() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dns = FakeDns::start();
    for domain in ["example.net", "example.org"] {
        dns.add_mx(domain, 10, "mx.shared.test");
    }
    dns.add_a("mx.shared.test", "127.0.0.1".parse().unwrap());
    // The harness's readiness probe is a session of its own: wait until it is counted.
    let probes = sessions_ended_at_least(&sink, 1).await;
    let lab = lab(&config(&dns, sink.address().port(), ""));
    // Two domains served by one host: one session carries all three messages.
    for rcpt in ["a@example.net", "b@example.org", "c@example.net"] {
        let id = enqueue(&lab.queue, &[rcpt]).await;
        let committed = lab.scheduler.attempt(&id, SystemTime::now()).await.unwrap();
        assert_eq!(committed, Some(Committed::Removed), "{rcpt}");
    }
    tokio::task::block_in_place(|| sink.wait_for_messages(3));
    assert_eq!(sink.received(), 3);
    assert_eq!(
        sink.sessions_ended(),
        probes,
        "the session is still open, kept for the next message"
    );
    // A reload drops kept sessions (they carry the old settings).
    lab.scheduler
        .apply(&config(&dns, sink.address().port(), ""));
    sessions_ended_at_least(&sink, probes + 1).await;
}

/// Waits until smtp-sink has counted `count` ended sessions; returns its count.
async fn sessions_ended_at_least(sink: &SmtpSink, count: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.sessions_ended() < count {
        assert!(std::time::Instant::now() < deadline, "sessions never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sink.sessions_ended()
}
