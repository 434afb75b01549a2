//! Hold and release: a held message leaves the due index until released, whatever else an
//! administrator does to it meanwhile, and each call has the same effect under retried
//! closures.

use std::time::{Duration, SystemTime};

use ferrymail_queue_scheduler::Queue;
use ferrymail_rpc::queue::{QueueError, QueueId, QueueService};
use ferrymail_store::StoreOptions;

use crate::support::{TestQueue, enqueue, envelope, open, open_with, parsed};

/// Whether message `id` is in the due index an hour from now.
async fn is_due(queue: &Queue, id: &QueueId) -> bool {
    let later = SystemTime::now() + Duration::from_secs(3600);
    let shard = parsed(id).shard();
    let due = queue.due(shard, later, 1000).await.unwrap();
    due.iter().any(|entry| entry.queue_id == parsed(id))
}

async fn hold_scenario(t: &TestQueue) {
    let q = &t.queue;
    let id = enqueue(
        q,
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        b"m",
    )
    .await;
    assert!(is_due(q, &id).await);

    assert!(q.hold(&id).await.unwrap(), "held now");
    assert!(!q.hold(&id).await.unwrap(), "already held");
    assert!(!is_due(q, &id).await, "out of the due index");
    assert!(q.get(&id).await.unwrap().summary.held);

    // Retry and a partial cancel change recipients, not the hold.
    assert_eq!(q.retry(&id, &[]).await.unwrap(), 2);
    assert_eq!(q.cancel(&id, &["b@example.net".into()]).await.unwrap(), 1);
    assert!(!is_due(q, &id).await, "still held");
    let detail = q.get(&id).await.unwrap();
    assert!(detail.summary.held);
    assert_eq!(detail.summary.next_attempt, None);
    assert!(
        detail.recipients[1].next_attempt.is_some(),
        "its schedule is kept"
    );

    assert!(q.release(&id).await.unwrap(), "released now");
    assert!(!q.release(&id).await.unwrap(), "not held any more");
    assert!(is_due(q, &id).await, "due again");
    let detail = q.get(&id).await.unwrap();
    assert!(!detail.summary.held);
    assert!(detail.summary.next_attempt.is_some());
}

#[tokio::test]
async fn a_held_message_is_not_due_until_released() {
    hold_scenario(&open()).await;
}

#[tokio::test]
async fn hold_and_release_under_retried_closures() {
    hold_scenario(&open_with(StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    }))
    .await;
}

#[tokio::test]
async fn a_quarantined_message_is_enqueued_held_until_released() {
    let t = open();
    let q = &t.queue;
    let mut quarantined = envelope("a@example.org", &["b@example.net"]);
    quarantined.quarantine = Some("a filter found a virus".into());
    let id = enqueue(q, quarantined, b"m").await;
    assert!(!is_due(q, &id).await, "never due while held");
    let detail = q.get(&id).await.unwrap();
    assert!(detail.summary.held);
    assert_eq!(detail.summary.next_attempt, None);
    assert!(q.release(&id).await.unwrap());
    assert!(is_due(q, &id).await, "due once released");
}

#[tokio::test]
async fn holding_an_unknown_or_malformed_id_is_refused_clearly() {
    let t = open();
    let id = enqueue(
        &t.queue,
        envelope("a@example.org", &["b@example.net"]),
        b"m",
    )
    .await;
    assert_eq!(t.queue.cancel(&id, &[]).await.unwrap(), 1);
    for outcome in [t.queue.hold(&id).await, t.queue.release(&id).await] {
        assert!(
            matches!(outcome, Err(QueueError::NotFound(_))),
            "{outcome:?}"
        );
    }
    let garbage = QueueId::new("not-an-id");
    let outcome = t.queue.hold(&garbage).await;
    assert!(
        matches!(outcome, Err(QueueError::InvalidArgument(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn cancelling_a_held_message_removes_it() {
    let t = open();
    let id = enqueue(
        &t.queue,
        envelope("a@example.org", &["b@example.net"]),
        b"m",
    )
    .await;
    assert!(t.queue.hold(&id).await.unwrap());
    assert_eq!(t.queue.cancel(&id, &[]).await.unwrap(), 1);
    assert!(matches!(
        t.queue.get(&id).await,
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(t.queue.stats().await.unwrap().messages, 0);
}
