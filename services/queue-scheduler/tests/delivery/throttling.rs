//! Throttles hold deliveries back across schedulers: a concurrency limit counts the deliveries
//! of every scheduler sharing the store, a rate limit every start, and a held-back recipient
//! keeps its attempts and waits for the limit, not for the retry schedule.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Committed, MessageId, Queue, Scheduler};
use ferrymail_rpc::queue::{QueueService, RecipientState};
use ferrymail_store::{Store, StoreOptions};

use crate::{config_text, enqueue, options};

fn config(port: u16, throttle: &str) -> ferrymail_config::Config {
    let text = format!("{}{throttle}", config_text(port, "smtp"));
    ferrymail_config::load_str("test.toml", &text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrency_limit_counts_the_deliveries_of_every_scheduler() {
    // Deliveries take a second, so the two attempts overlap.
    let sink = SmtpSink::start(SmtpSinkOptions {
        data_delay: Some(1),
        ..SmtpSinkOptions::default()
    });
    let config = config(
        sink.address().port(),
        "[queue.throttle.relay]\nkey = [\"remote\"]\nconcurrency = 1\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let scheduler = |owner: &str| {
        let queue = Arc::new(Queue::new(store.clone(), &config.queue));
        Arc::new(Scheduler::new(queue, &config, options(owner)))
    };
    let (one, two) = (scheduler("one"), scheduler("two"));
    let first = enqueue(one.queue(), &["a@example.net"]).await;
    let second = enqueue(one.queue(), &["b@example.net"]).await;
    let now = SystemTime::now();
    let (a, b) = tokio::join!(one.attempt(&first, now), two.attempt(&second, now));
    let mut results = [a.unwrap().unwrap(), b.unwrap().unwrap()];
    results.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        results,
        [Committed::Kept { live: 1 }, Committed::Removed],
        "one delivered, the other held back"
    );
    for id in [&first, &second] {
        let Ok(detail) = one.queue().get(&id.to_wire()).await else {
            continue;
        };
        let recipient = &detail.recipients[0];
        assert_eq!(recipient.state, RecipientState::Pending, "{recipient:?}");
        assert_eq!(recipient.attempts, 0, "being held back is not an attempt");
        assert!(recipient.last_reply.is_none(), "{recipient:?}");
        let next = recipient.next_attempt.unwrap();
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (now_s + 1..=now_s + 3).contains(&next),
            "due again shortly: {next} vs {now_s}"
        );
    }
    // smtp-sink counts a message just after its reply: wait for the count to catch up.
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(sink.received(), 1);
}

/// One scheduler on a fresh store, and what attempting each message once came to.
struct Run {
    queue: Arc<Queue>,
    scheduler: Scheduler,
    ids: Vec<MessageId>,
    results: Vec<Committed>,
    /// When the attempts were made (after every enqueue, so that all were due).
    now: SystemTime,
    _dir: tempfile::TempDir,
}

/// Enqueues one message per recipient of `recipients`, then attempts each once, in order, with
/// one scheduler delivering as `config` says.
async fn attempt_each(config: &ferrymail_config::Config, recipients: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store, &config.queue));
    let scheduler = Scheduler::new(queue.clone(), config, options("one"));
    let mut ids = Vec::new();
    for rcpt in recipients {
        ids.push(enqueue(&queue, &[rcpt]).await);
    }
    let now = SystemTime::now();
    let mut results = Vec::new();
    for id in &ids {
        results.push(scheduler.attempt(id, now).await.unwrap().unwrap());
    }
    Run {
        queue,
        scheduler,
        ids,
        results,
        now,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_defers_the_rest_to_the_next_window() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = config(
        sink.address().port(),
        "[queue.throttle.per-domain]\nkey = [\"rcpt-domain\"]\nrate = \"2/1h\"\n",
    );
    let Run {
        queue,
        scheduler,
        ids,
        results,
        now,
        _dir,
    } = attempt_each(
        &config,
        &[
            "a@slow.example",
            "b@slow.example",
            "c@slow.example",
            "d@other.example",
        ],
    )
    .await;
    assert_eq!(
        results,
        [
            Committed::Removed,
            Committed::Removed,
            Committed::Kept { live: 1 },
            Committed::Removed
        ],
        "the third of slow.example waits; other.example has its own window"
    );
    let third = queue.get(&ids[2].to_wire()).await.unwrap();
    let next = third.recipients[0].next_attempt.unwrap();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now_s + 3590..=now_s + 3601).contains(&next),
        "due when the window ends: {next} vs {now_s}"
    );
    // When the window has passed, it goes.
    let later = now + Duration::from_secs(3601);
    assert_eq!(
        scheduler.attempt(&ids[2], later).await.unwrap(),
        Some(Committed::Removed)
    );
    // smtp-sink counts a message just after its reply: wait for the count to catch up.
    tokio::task::block_in_place(|| sink.wait_for_messages(4));
    assert_eq!(sink.received(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttle_with_match_holds_back_only_the_deliveries_it_names() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = config(
        sink.address().port(),
        r#"
[directory.lists]
type = "lmtp"
address = "127.0.0.1"
lookup.slow = ["slow.example"]
[queue.throttle.slow-domains]
match = { if = "rcpt-domain", in-list = "lists/slow" }
rate = "1/1h"
"#,
    );
    let run = attempt_each(
        &config,
        &[
            "a@slow.example",
            "b@SLOW.example",
            "c@other.example",
            "d@other.example",
        ],
    )
    .await;
    assert_eq!(
        run.results,
        [
            Committed::Removed,
            Committed::Kept { live: 1 },
            Committed::Removed,
            Committed::Removed
        ],
        "the second delivery to slow.example waits; other.example is not throttled"
    );
    tokio::task::block_in_place(|| sink.wait_for_messages(3));
    assert_eq!(sink.received(), 3);
}
