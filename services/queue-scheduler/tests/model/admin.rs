//! The admin calls: list with filters and paging, retry, cancel, and the counters behind stats.

use std::collections::HashSet;
use std::time::SystemTime;

use ferrymail_rpc::queue::{
    ListFilter, ListRequest, QueueError, QueueId, QueueService, QueueStats, RecipientCounts,
    RecipientState,
};
use ferrymail_store::blob::BlobError;

use crate::support::{enqueue, envelope, open, parsed, recount, unix_now};

async fn list_all(
    queue: &ferrymail_queue_scheduler::Queue,
    page_size: u32,
    filter: ListFilter,
) -> (Vec<QueueId>, usize) {
    let (mut ids, mut pages, mut token) = (Vec::new(), 0, None);
    loop {
        let page = queue
            .list(ListRequest {
                page_size,
                page_token: token,
                filter: filter.clone(),
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.messages.len() <= page_size as usize);
        ids.extend(page.messages.into_iter().map(|m| m.queue_id));
        token = page.next_page_token;
        if token.is_none() {
            return (ids, pages);
        }
    }
}

#[tokio::test]
async fn list_pages_through_the_queue_oldest_first() {
    let t = open();
    let mut queued = Vec::new();
    for i in 0..25 {
        let sender = if i % 2 == 0 {
            "alice@example.org"
        } else {
            "bob@example.org"
        };
        queued.push(enqueue(&t.queue, envelope(sender, &["x@example.net"]), b"m").await);
    }
    let (ids, pages) = list_all(&t.queue, 10, ListFilter::default()).await;
    assert_eq!(pages, 3);
    let mut sorted = queued.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "every message once, in id (arrival) order");

    let first = t
        .queue
        .list(ListRequest {
            page_size: 10,
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(first.messages.len(), 10);
    let summary = &first.messages[0];
    assert_eq!(summary.recipients, 1);
    assert_eq!(summary.size, 1);
    assert_eq!(summary.next_attempt, Some(summary.arrival));

    // The default page size covers these 25; a huge one is capped, not refused.
    let all = t.queue.list(ListRequest::default()).await.unwrap();
    assert_eq!((all.messages.len(), all.next_page_token), (25, None));
    let capped = t
        .queue
        .list(ListRequest {
            page_size: u32::MAX,
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.messages.len(), 25);

    for token in ["garbage", "", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ"] {
        let refused = t
            .queue
            .list(ListRequest {
                page_token: Some(token.into()),
                ..ListRequest::default()
            })
            .await;
        assert!(
            matches!(refused, Err(QueueError::InvalidArgument(_))),
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn list_filters_by_sender_domain_and_state() {
    let t = open();
    let a = enqueue(
        &t.queue,
        envelope("Alice@Example.org", &["x@example.net"]),
        b"m",
    )
    .await;
    let b = enqueue(
        &t.queue,
        envelope("bob@example.org", &["y@example.net", "z@Example.COM"]),
        b"m",
    )
    .await;
    let c = enqueue(&t.queue, envelope("", &["postmaster@example.com"]), b"m").await;
    t.queue.cancel(&b, &["y@example.net".into()]).await.unwrap();

    let by = |filter: ListFilter| {
        let queue = t.queue.clone();
        async move {
            let (ids, _) = list_all(&queue, 2, filter).await;
            ids.into_iter().collect::<HashSet<_>>()
        }
    };
    let set = |ids: &[&QueueId]| ids.iter().map(|id| (*id).clone()).collect::<HashSet<_>>();

    assert_eq!(by(ListFilter::default()).await, set(&[&a, &b, &c]));
    let sender = |s: &str| ListFilter {
        sender: Some(s.into()),
        ..ListFilter::default()
    };
    assert_eq!(by(sender("alice")).await, set(&[&a]));
    assert_eq!(by(sender("EXAMPLE.ORG")).await, set(&[&a, &b]));
    assert_eq!(by(sender("nobody")).await, set(&[]));
    let domain = |d: &str| ListFilter {
        recipient_domain: Some(d.into()),
        ..ListFilter::default()
    };
    assert_eq!(by(domain("example.com")).await, set(&[&b, &c]));
    assert_eq!(by(domain("@EXAMPLE.NET")).await, set(&[&a, &b]));
    assert_eq!(by(domain("example")).await, set(&[]), "whole domains only");
    let state = |s: RecipientState| ListFilter {
        state: Some(s),
        ..ListFilter::default()
    };
    assert_eq!(by(state(RecipientState::Cancelled)).await, set(&[&b]));
    assert_eq!(by(state(RecipientState::Pending)).await, set(&[&a, &b, &c]));
    assert_eq!(by(state(RecipientState::Delivered)).await, set(&[]));
    let combined = ListFilter {
        sender: Some("example.org".into()),
        recipient_domain: Some("example.com".into()),
        state: Some(RecipientState::Pending),
        ..ListFilter::default()
    };
    assert_eq!(by(combined).await, set(&[&b]));
}

#[tokio::test]
async fn list_filters_by_address_text_and_due_time() {
    let t = open();
    let a = enqueue(
        &t.queue,
        envelope("alice@example.org", &["x@example.net"]),
        b"m",
    )
    .await;
    let mut later = envelope("bob@example.org", &["Yves@Example.COM"]);
    let due_later = unix_now() + 86_400;
    later.hold_until = Some(due_later);
    let b = enqueue(&t.queue, later, b"m").await;
    let set = |ids: &[&QueueId]| ids.iter().map(|id| (*id).clone()).collect::<HashSet<_>>();
    let by = |filter: ListFilter| {
        let queue = t.queue.clone();
        async move {
            let (ids, _) = list_all(&queue, 2, filter).await;
            ids.into_iter().collect::<HashSet<_>>()
        }
    };

    let recipient = |r: &str| ListFilter {
        recipient: Some(r.into()),
        ..ListFilter::default()
    };
    assert_eq!(by(recipient("yves@")).await, set(&[&b]));
    assert_eq!(by(recipient("EXAMPLE")).await, set(&[&a, &b]));
    assert_eq!(by(recipient("alice")).await, set(&[]), "not the sender");
    let text = |x: &str| ListFilter {
        text: Some(x.into()),
        ..ListFilter::default()
    };
    assert_eq!(by(text("ALICE")).await, set(&[&a]), "the sender");
    assert_eq!(by(text("yves")).await, set(&[&b]), "a recipient");
    assert_eq!(by(text("nobody")).await, set(&[]));
    let window = |before: Option<u64>, after: Option<u64>| ListFilter {
        due_before: before,
        due_after: after,
        ..ListFilter::default()
    };
    let soon = unix_now() + 3_600;
    assert_eq!(by(window(Some(soon), None)).await, set(&[&a]));
    assert_eq!(by(window(None, Some(soon))).await, set(&[&b]));
    assert_eq!(by(window(Some(soon), Some(soon))).await, set(&[]));
    assert_eq!(
        by(window(Some(due_later + 1), Some(0))).await,
        set(&[&a, &b])
    );
}

#[tokio::test]
async fn retry_makes_live_recipients_due_now() {
    let t = open();
    let hold = unix_now() + 86_400;
    let mut env = envelope(
        "a@example.org",
        &["b@example.net", "c@example.net", "d@example.net"],
    );
    env.hold_until = Some(hold);
    let id = enqueue(&t.queue, env, b"held").await;
    let message = parsed(&id);

    // One named recipient (any case): that one is due now, the message with it.
    assert_eq!(
        t.queue.retry(&id, &["C@EXAMPLE.NET".into()]).await.unwrap(),
        1
    );
    let detail = t.queue.get(&id).await.unwrap();
    let now = unix_now();
    assert!(detail.recipients[1].next_attempt.unwrap() <= now);
    assert_eq!(detail.recipients[0].next_attempt, Some(hold));
    assert_eq!(detail.recipients[1].state, RecipientState::Pending);
    assert!(detail.summary.next_attempt.unwrap() <= now);
    let due = t
        .queue
        .due(message.shard(), SystemTime::now(), 1000)
        .await
        .unwrap();
    assert_eq!(due.iter().filter(|e| e.queue_id == message).count(), 1);

    // A cancelled recipient is not rescheduled; an unknown one is an error.
    t.queue
        .cancel(&id, &["d@example.net".into()])
        .await
        .unwrap();
    assert_eq!(
        t.queue.retry(&id, &["d@example.net".into()]).await.unwrap(),
        0
    );
    let unknown = t.queue.retry(&id, &["nobody@example.net".into()]).await;
    assert!(matches!(unknown, Err(QueueError::NotFound(_))));

    // All: the two live ones.
    assert_eq!(t.queue.retry(&id, &[]).await.unwrap(), 2);
    let detail = t.queue.get(&id).await.unwrap();
    assert!(detail.recipients[0].next_attempt.unwrap() <= unix_now());
    assert_eq!(detail.recipients[2].next_attempt, None);
    let stats = t.queue.stats().await.unwrap();
    assert_eq!(
        (stats.recipients.pending, stats.recipients.cancelled),
        (2, 1)
    );
    assert_eq!(stats, recount(&t.queue).await);
}

#[tokio::test]
async fn cancel_removes_a_message_once_nothing_is_left_to_deliver() {
    let t = open();
    let id = enqueue(
        &t.queue,
        envelope(
            "a@example.org",
            &["b@example.net", "c@example.net", "d@example.net"],
        ),
        &[7u8; 100_000],
    )
    .await;
    let message = parsed(&id);
    let blob = t.queue.load(&message).await.unwrap().record.blob;

    assert_eq!(
        t.queue
            .cancel(&id, &["b@example.net".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        t.queue
            .cancel(&id, &["b@example.net".into()])
            .await
            .unwrap(),
        0,
        "already"
    );
    let unknown = t.queue.cancel(&id, &["nobody@example.net".into()]).await;
    assert!(matches!(unknown, Err(QueueError::NotFound(_))));
    let detail = t.queue.get(&id).await.unwrap();
    let states: Vec<_> = detail.recipients.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RecipientState::Cancelled,
            RecipientState::Pending,
            RecipientState::Pending
        ]
    );
    assert_eq!(detail.recipients[0].next_attempt, None);
    let stats = t.queue.stats().await.unwrap();
    assert_eq!(
        stats.recipients,
        RecipientCounts {
            pending: 2,
            cancelled: 1,
            ..RecipientCounts::default()
        }
    );
    assert_eq!(t.queue.blobs().read(&blob).await.unwrap().len(), 100_000);

    // The rest: the message goes, with its due entry, counters and body.
    assert_eq!(t.queue.cancel(&id, &[]).await.unwrap(), 2);
    assert!(matches!(
        t.queue.get(&id).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        t.queue.cancel(&id, &[]).await,
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(t.queue.stats().await.unwrap(), QueueStats::default());
    let due = t
        .queue
        .due(message.shard(), SystemTime::now(), 1000)
        .await
        .unwrap();
    assert!(due.iter().all(|e| e.queue_id != message));
    assert!(matches!(
        t.queue.blobs().read(&blob).await,
        Err(BlobError::NotFound(_))
    ));
    let collected = t
        .queue
        .blobs()
        .collect_garbage(std::time::Duration::from_secs(3600), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        collected.blobs_removed, 0,
        "the removal deleted the body: nothing is left to collect"
    );
}

#[tokio::test]
async fn stats_counters_are_exact_after_a_mix_of_operations() {
    let t = open();
    let mut ids = Vec::new();
    for i in 0..30usize {
        let recipients: Vec<String> = (0..=i % 4).map(|r| format!("r{r}@d{i}.example")).collect();
        let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
        let mut env = envelope("s@example.org", &recipients);
        if i % 3 == 0 {
            env.hold_until = Some(unix_now() + 600);
        }
        ids.push(enqueue(&t.queue, env, &vec![b'x'; 1000 + i]).await);
    }
    for (i, id) in ids.iter().enumerate() {
        match i % 5 {
            0 => {
                t.queue.cancel(id, &[]).await.unwrap();
            }
            1 => {
                t.queue
                    .cancel(id, &[format!("r0@d{i}.example")])
                    .await
                    .unwrap();
            }
            2 => {
                t.queue.retry(id, &[]).await.unwrap();
            }
            3 => {
                t.queue.retry(id, &[]).await.unwrap();
                t.queue
                    .cancel(id, &[format!("r0@d{i}.example")])
                    .await
                    .unwrap();
                let again = t.queue.retry(id, &[]).await;
                if i % 4 == 0 {
                    // Its only recipient was cancelled: the message is gone.
                    assert!(matches!(again, Err(QueueError::NotFound(_))));
                } else {
                    assert_eq!(again.unwrap(), (i % 4) as u32);
                }
            }
            _ => {}
        }
    }
    let stats = t.queue.stats().await.unwrap();
    assert_eq!(stats, recount(&t.queue).await);
    // 30 queued, 6 cancelled whole; of the 6 with i % 5 == 1 the single-recipient ones
    // (i % 4 == 0) were removed by cancelling their only recipient, likewise for i % 5 == 3.
    let removed = (0..30)
        .filter(|i| i % 5 == 0 || (matches!(i % 5, 1 | 3) && i % 4 == 0))
        .count();
    assert_eq!(stats.messages, 30 - removed as u64);
    let bytes: u64 = (0..30u64)
        .filter(|i| !(i % 5 == 0 || (matches!(i % 5, 1 | 3) && i % 4 == 0)))
        .map(|i| 1000 + i)
        .sum();
    assert_eq!(stats.bytes, bytes);
    assert_eq!(stats.recipients.delivered + stats.recipients.temp_failed, 0);
}
