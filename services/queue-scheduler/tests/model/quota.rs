//! Queue quotas: a full group refuses the enqueue (nothing stored), the others go on, and a
//! message leaving the queue gives its share back.

use std::sync::Arc;

use ferrymail_rpc::queue::{QueueError, QueueService};
use ferrymail_store::StoreOptions;

use crate::support::{body, dump, enqueue, envelope, open_configured};

const PER_DOMAIN: &str = r#"
[queue.quota.per-domain]
key = ["sender-domain"]
messages = 2
[queue.quota.bytes]
size = 1000
"#;

#[tokio::test]
async fn a_full_group_refuses_and_a_removed_message_makes_room() {
    let t = open_configured(
        StoreOptions {
            run_closures_twice: true,
            ..StoreOptions::default()
        },
        PER_DOMAIN,
    );
    let first = enqueue(&t.queue, envelope("a@one.example", &["x@r.example"]), b"1").await;
    enqueue(&t.queue, envelope("b@ONE.example", &["x@r.example"]), b"2").await;
    let before = dump(&t.store).await;
    let refused = t
        .queue
        .enqueue(envelope("c@one.example", &["x@r.example"]), body(b"3", 1))
        .await;
    match refused {
        Err(QueueError::QuotaExceeded(why)) => assert!(why.contains("per-domain"), "{why}"),
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    assert_eq!(
        dump(&t.store).await,
        before,
        "a refused message leaves nothing"
    );
    // Another group still has room.
    enqueue(&t.queue, envelope("a@two.example", &["x@r.example"]), b"4").await;
    // A message that leaves the queue gives its share back.
    t.queue.cancel(&first, &[]).await.unwrap();
    enqueue(&t.queue, envelope("c@one.example", &["x@r.example"]), b"5").await;
}

#[tokio::test]
async fn the_byte_limit_counts_every_message() {
    let t = open_configured(StoreOptions::default(), PER_DOMAIN);
    enqueue(
        &t.queue,
        envelope("a@one.example", &["x@r.example"]),
        &[b'x'; 600],
    )
    .await;
    let refused = t
        .queue
        .enqueue(
            envelope("a@two.example", &["x@r.example"]),
            body(&[b'y'; 401], 100),
        )
        .await;
    assert!(
        matches!(&refused, Err(QueueError::QuotaExceeded(why)) if why.contains("bytes")),
        "{refused:?}"
    );
    enqueue(
        &t.queue,
        envelope("a@two.example", &["x@r.example"]),
        &[b'y'; 400],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_never_exceed_a_quota() {
    let t = open_configured(
        StoreOptions::default(),
        "[queue.quota.global]\nmessages = 3\n",
    );
    let attempts = (0..12).map(|n| {
        let queue = Arc::clone(&t.queue);
        tokio::spawn(async move {
            queue
                .enqueue(
                    envelope(&format!("s{n}@example.org"), &["x@r.example"]),
                    body(b"hello", 2),
                )
                .await
        })
    });
    let mut accepted = 0;
    for outcome in futures::future::join_all(attempts).await {
        match outcome.unwrap() {
            Ok(_) => accepted += 1,
            Err(QueueError::QuotaExceeded(_)) => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(accepted, 3);
    assert_eq!(t.queue.stats().await.unwrap().messages, 3);
}

const PARTNERS: &str = r#"
[directory.local]
type = "lmtp"
address = "127.0.0.1"
lookup.domains = ["example.org"]
lookup.partners = ["partner.example"]
[queue.quota.partner-senders]
match = { if = "sender-domain", in-list = "local/partners" }
key = ["sender"]
messages = 1
[queue.quota.to-partners]
match = { if = "rcpt-domain", in-list = "local/partners" }
key = ["rcpt"]
messages = 1
"#;

#[tokio::test]
async fn match_limits_only_the_messages_it_names() {
    let t = open_configured(StoreOptions::default(), PARTNERS);
    // Senders outside the list are not counted, however many messages they send.
    for n in 0..3 {
        enqueue(
            &t.queue,
            envelope("a@other.example", &["x@example.org"]),
            &[n],
        )
        .await;
    }
    enqueue(
        &t.queue,
        envelope("a@partner.example", &["x@example.org"]),
        b"1",
    )
    .await;
    let refused = t
        .queue
        .enqueue(
            envelope("a@Partner.Example", &["y@example.org"]),
            body(b"2", 1),
        )
        .await;
    assert!(
        matches!(&refused, Err(QueueError::QuotaExceeded(why)) if why.contains("partner-senders")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_recipient_match_charges_only_the_recipients_it_names() {
    let t = open_configured(StoreOptions::default(), PARTNERS);
    // Only bob@partner.example is charged: the other recipient's group stays free.
    enqueue(
        &t.queue,
        envelope("a@other.example", &["bob@partner.example", "x@example.org"]),
        b"1",
    )
    .await;
    enqueue(
        &t.queue,
        envelope("a@other.example", &["x@example.org"]),
        b"2",
    )
    .await;
    let refused = t
        .queue
        .enqueue(
            envelope("a@other.example", &["x@example.org", "bob@partner.example"]),
            body(b"3", 1),
        )
        .await;
    assert!(
        matches!(&refused, Err(QueueError::QuotaExceeded(why)) if why.contains("to-partners")),
        "{refused:?}"
    );
}
