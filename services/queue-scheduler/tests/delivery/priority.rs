//! Among due messages, higher priority (MT-PRIORITY) is delivered first — whether the message
//! was handed to this scheduler at enqueue or found in any of its shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Queue, Scheduler};
use ferrymail_rpc::queue::{BodyError, Envelope, Priority, QueueService, QueueStats, Recipient};
use ferrymail_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::{config_text, options};

async fn enqueue(queue: &Queue, priority: i32, n: usize) {
    let envelope = Envelope {
        sender: "sender@example.net".into(),
        recipients: vec![Recipient::new(format!("rcpt{n}@example.net"))],
        priority: Priority::new(priority).unwrap(),
        helo: "client.test".into(),
        ..Envelope::default()
    };
    let body = format!("Subject: priority {priority}\r\n\r\nmessage {n}\r\n");
    let body = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from(body).into(),
    )]));
    queue.enqueue(envelope, body).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn higher_priority_is_delivered_first() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let text =
        config_text(sink.address().port(), "smtp").replace("concurrency = 2", "concurrency = 1");
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store.clone(), &config.queue));
    let scheduler = Arc::new(Scheduler::new(
        queue.clone(),
        &config,
        ferrymail_queue_scheduler::SchedulerOptions {
            max_in_flight: 1,
            ..options("one")
        },
    ));
    // Half handed to this scheduler at enqueue, half through another process's queue (found
    // only in the shards), in no particular order of priority.
    let intake = Queue::new(store, &config.queue);
    let priorities = [-5, 0, 3, 9, -9, 3, 0, 7, -1, 4];
    for (n, priority) in priorities.into_iter().enumerate() {
        let via = if n % 2 == 0 { &*queue } else { &intake };
        enqueue(via, priority, n).await;
    }
    let stop = CancellationToken::new();
    let worker = tokio::spawn(scheduler.clone().run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue.stats().await.unwrap() != QueueStats::default() {
        assert!(Instant::now() < deadline, "the queue does not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    worker.await.unwrap();

    let delivered: Vec<i32> = sink
        .messages_in_order()
        .iter()
        .map(|m| {
            let line = m
                .lines()
                .find_map(|l| l.strip_prefix("Subject: priority "))
                .unwrap();
            line.trim().parse().unwrap()
        })
        .collect();
    let mut expected = priorities.to_vec();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(delivered, expected, "delivered in priority order");
}
