//! A queue id the client proposes (the ingress, which names it in `Received`) is the id the
//! message gets; enqueued again under it, the message is not queued twice.

use std::time::SystemTime;

use ferrymail_rpc::queue::{QueueError, QueueId, QueueService};
use ferrymail_store::StoreOptions;

use crate::support::{body, envelope, open_with};

#[tokio::test]
async fn the_proposed_id_is_taken_once() {
    let t = open_with(StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    });
    let proposed = QueueId::generate(SystemTime::now());
    let mut named = envelope("a@example.org", &["b@example.net"]);
    named.queue_id = Some(proposed.clone());
    let id = t
        .queue
        .enqueue(named.clone(), body(b"hello", 5))
        .await
        .unwrap();
    assert_eq!(id, proposed);
    let again = t.queue.enqueue(named, body(b"hello", 5)).await.unwrap();
    assert_eq!(again, proposed);
    assert_eq!(t.queue.stats().await.unwrap().messages, 1, "queued once");

    let mut garbage = envelope("a@example.org", &["b@example.net"]);
    garbage.queue_id = Some(QueueId::new("not-an-id"));
    let outcome = t.queue.enqueue(garbage, body(b"x", 1)).await;
    assert!(
        matches!(outcome, Err(QueueError::InvalidArgument(_))),
        "{outcome:?}"
    );
}
