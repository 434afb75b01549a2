//! Three schedulers share one queue; one is aborted in the middle of its deliveries, without
//! any cleanup, as a pod killed by the kernel would be. Every message reaches the relay; one
//! reaches it twice only if its scheduler died between the relay's `250` and the commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Queue, SHARDS, Scheduler, SchedulerOptions};
use ferrymail_rpc::queue::{BodyError, Envelope, QueueService, QueueStats, Recipient};
use ferrymail_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::config_text;

const MESSAGES: usize = 90;

fn sharing(owner: &str) -> SchedulerOptions {
    SchedulerOptions {
        owner: owner.into(),
        lease: Duration::from_secs(3),
        poll: Duration::from_millis(100),
        heartbeat: Duration::from_millis(200),
        ..SchedulerOptions::new("queue.test")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_schedulers_share_the_queue_and_survive_one_dying_mid_delivery() {
    // Every delivery holds its connection for a second, so the one that dies has some under way.
    let sink = SmtpSink::start(SmtpSinkOptions {
        data_delay: Some(1),
        ..SmtpSinkOptions::default()
    });
    let text =
        config_text(sink.address().port(), "smtp").replace("concurrency = 2", "concurrency = 10");
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    // Each scheduler has its own `Queue`, as each pod does; the messages are enqueued through
    // a fourth, so that no scheduler is handed them directly and the shards must be shared.
    let schedulers: Vec<Arc<Scheduler>> = ["a", "b", "c"]
        .iter()
        .map(|owner| {
            let queue = Arc::new(Queue::new(store.clone(), &config.queue));
            Arc::new(Scheduler::new(queue, &config, sharing(owner)))
        })
        .collect();
    let stop = CancellationToken::new();
    let mut runs: Vec<_> = schedulers
        .iter()
        .map(|s| tokio::spawn(s.clone().run(stop.clone())))
        .collect();
    wait_until("the shards to be split three ways", || {
        let counts: Vec<usize> = schedulers.iter().map(|s| s.shards().len()).collect();
        counts.iter().all(|&n| n > 0) && counts.iter().sum::<usize>() == usize::from(SHARDS)
    })
    .await;

    let intake = Queue::new(store.clone(), &config.queue);
    for n in 0..MESSAGES {
        let envelope = Envelope {
            sender: "sender@example.net".into(),
            recipients: vec![Recipient::new(format!("rcpt{n}@example.net"))],
            helo: "client.test".into(),
            ..Envelope::default()
        };
        let body = format!("Message-ID: <{n}@sharing.test>\r\nSubject: {n}\r\n\r\nbody {n}\r\n");
        let body = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
            Bytes::from(body).into(),
        )]));
        intake.enqueue(envelope, body).await.unwrap();
    }
    // Kill "b" while its deliveries wait for the relay's DATA reply (a second each): its tasks
    // are dropped mid-session, its heartbeat and leases are left to expire.
    tokio::time::sleep(Duration::from_millis(300)).await;
    runs.remove(1).abort();
    wait_until("the survivors to take b's shards", || {
        schedulers[0].shards().len() + schedulers[2].shards().len() == usize::from(SHARDS)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if intake.stats().await.unwrap() == QueueStats::default() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue does not drain: {:?}",
            intake.stats().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    for run in runs {
        run.await.unwrap();
    }

    let takeovers: u64 = [&schedulers[0], &schedulers[2]]
        .iter()
        .map(|s| s.queue().metrics().lease_takeovers())
        .sum();
    assert!(
        takeovers > 0,
        "b died holding no lease: the test proved nothing"
    );
    eprintln!("leases taken over from the dead scheduler: {takeovers}");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for message in sink.messages() {
        let id = message
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("no Message-ID in {message}"))
            .trim()
            .to_owned();
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), MESSAGES, "every message reached the relay");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    // Only what "b" had in flight can arrive twice: its deliveries whose 250 came before the
    // abort but whose commit did not.
    eprintln!("duplicates after killing one scheduler mid-delivery: {duplicates}");
    assert!(
        duplicates <= 10,
        "{duplicates} duplicates: more than b had in flight"
    );
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
