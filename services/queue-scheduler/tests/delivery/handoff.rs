//! A message enqueued while a scheduler runs on the same queue is claimed for it by the
//! enqueue itself; a claimed message left waiting is read again when it starts, and what the
//! scheduler did not start when it stops is released for the others at once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Committed, Queue, Scheduler, SchedulerOptions};
use ferrymail_rpc::queue::QueueService;
use ferrymail_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::{config, enqueue, options};

/// A queue with a scheduler that delivers one message at a time, to a relay that answers
/// DATA after a second: a second message enqueued meanwhile waits.
struct Slow {
    sink: SmtpSink,
    config: ferrymail_config::Config,
    store: Store,
    queue: Arc<Queue>,
    scheduler: Arc<Scheduler>,
    _dir: tempfile::TempDir,
}

fn slow() -> Slow {
    let sink = SmtpSink::start(SmtpSinkOptions {
        data_delay: Some(1),
        ..SmtpSinkOptions::default()
    });
    let config = config(sink.address().port(), "smtp");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store.clone(), &config.queue));
    let one_at_a_time = SchedulerOptions {
        max_in_flight: 1,
        ..options("one")
    };
    let scheduler = Arc::new(Scheduler::new(queue.clone(), &config, one_at_a_time));
    Slow {
        sink,
        config,
        store,
        queue,
        scheduler,
        _dir: dir,
    }
}

/// Waits until `scheduler` runs (it has taken its shards).
async fn running(scheduler: &Scheduler) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while scheduler.shards().is_empty() {
        assert!(Instant::now() < deadline, "the scheduler never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enqueue_claims_for_the_running_scheduler_which_releases_what_it_did_not_start() {
    let lab = slow();
    // Another pod's scheduler on the same store.
    let other_queue = Arc::new(Queue::new(lab.store.clone(), &lab.config.queue));
    let other = Scheduler::new(other_queue, &lab.config, options("two"));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));
    running(&lab.scheduler).await;

    enqueue(&lab.queue, &["a@example.net"]).await;
    let waiting = enqueue(&lab.queue, &["b@example.net"]).await;
    // Not started (the first delivery takes a second), yet already held by its enqueue's claim.
    assert!(
        other
            .claim(&waiting, SystemTime::now())
            .await
            .unwrap()
            .is_none(),
        "claimed by its enqueue"
    );

    stop.cancel();
    worker.await.unwrap();
    // Released when the scheduler stopped, not left until the lease expires.
    let now = SystemTime::now();
    let claim = other.claim(&waiting, now).await.unwrap().expect("released");
    assert_eq!(claim.lease.token, 2, "the enqueue's claim came first");
    let outcomes = other.deliver(&claim, now).await;
    let committed = other.commit(&claim, outcomes, now).await.unwrap();
    assert_eq!(committed, Committed::Removed);
    tokio::task::block_in_place(|| lab.sink.wait_for_messages(2));
    assert_eq!(lab.sink.received(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_message_left_waiting_is_read_again_when_it_starts() {
    let lab = slow();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(lab.scheduler.clone().run(stop.clone()));
    running(&lab.scheduler).await;

    enqueue(&lab.queue, &["a@example.net"]).await;
    let cancelled = enqueue(&lab.queue, &["b@example.net"]).await;
    enqueue(&lab.queue, &["c@example.net"]).await;
    // While both wait, an administrator cancels one; the other's body is read from the store.
    let count = lab.queue.cancel(&cancelled.to_wire(), &[]).await.unwrap();
    assert_eq!(count, 1);
    tokio::task::block_in_place(|| lab.sink.wait_for_messages(2));
    stop.cancel();
    worker.await.unwrap();

    let messages = lab.sink.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let to = |address: &str| messages.iter().any(|m| m.contains(address));
    assert!(to("a@example.net") && to("c@example.net"), "{messages:?}");
    assert!(!to("b@example.net"), "the cancelled message was delivered");
    assert!(
        messages
            .iter()
            .all(|m| m.contains("\n.a line that starts with a dot\n")),
        "{messages:?}"
    );
}
