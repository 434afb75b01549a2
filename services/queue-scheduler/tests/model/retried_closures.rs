//! Under the store's run-closures-twice mode (every transaction closure runs once more, the
//! first run discarded), every operation has the same effect as once.

use ferrymail_rpc::queue::{ListRequest, QueueService, QueueStats, RecipientState};
use ferrymail_store::StoreOptions;

use crate::support::{
    TestQueue, body, broken_body, enqueue, envelope, open, open_with, recount, unix_now,
};

/// What a fixed sequence of operations leaves, ids aside.
#[derive(Debug, PartialEq)]
struct Outcome {
    stats: QueueStats,
    messages: Vec<(String, u32, u64, Vec<RecipientState>)>,
    counts: Vec<u32>,
}

async fn scenario(t: &TestQueue) -> Outcome {
    let q = &t.queue;
    let a = enqueue(
        q,
        envelope("a@example.org", &["1@x.example", "2@x.example"]),
        &[1; 70_000],
    )
    .await;
    let mut held = envelope(
        "b@example.org",
        &["3@y.example", "4@y.example", "5@y.example"],
    );
    held.hold_until = Some(unix_now() + 3600);
    let b = q
        .enqueue(held, body(&[2; 2_000_000], 65_536))
        .await
        .unwrap();
    let c = enqueue(q, envelope("c@example.org", &["6@z.example"]), b"c").await;
    assert!(
        q.enqueue(
            envelope("d@example.org", &["7@z.example"]),
            broken_body(1_500_000)
        )
        .await
        .is_err()
    );
    let counts = vec![
        q.cancel(&a, &["1@x.example".into()]).await.unwrap(),
        q.retry(&b, &["4@y.example".into()]).await.unwrap(),
        q.cancel(&b, &["3@y.example".into(), "5@y.example".into()])
            .await
            .unwrap(),
        q.retry(&b, &[]).await.unwrap(),
        q.cancel(&c, &[]).await.unwrap(),
    ];
    let page = q.list(ListRequest::default()).await.unwrap();
    let mut messages = Vec::new();
    for summary in page.messages {
        let detail = q.get(&summary.queue_id).await.unwrap();
        messages.push((
            summary.sender,
            summary.recipients,
            summary.size,
            detail.recipients.iter().map(|r| r.state).collect(),
        ));
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(stats, recount(q).await);
    Outcome {
        // Arrival times differ between the runs.
        stats: QueueStats {
            oldest_arrival: None,
            ..stats
        },
        messages,
        counts,
    }
}

#[tokio::test]
async fn running_closures_twice_gives_the_same_results() {
    let once = scenario(&open()).await;
    let twice = scenario(&open_with(StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    }))
    .await;
    assert_eq!(once, twice);
    assert_eq!(once.counts, [1, 1, 2, 1, 1]);
    assert_eq!(once.stats.messages, 2);
    assert_eq!(once.stats.recipients.pending, 2);
    assert_eq!(once.stats.recipients.cancelled, 3);
}
