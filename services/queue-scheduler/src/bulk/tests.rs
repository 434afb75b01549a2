//! Bulk actions on the embedded store, every transaction closure run twice: each filter
//! criterion, dry runs, batches and cursors, and the filters refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrymail_rpc::queue::{
    BodyError, BodyStream, BulkAction, BulkFilter, BulkReport, BulkRequest, Envelope, Priority,
    QueueError, QueueId, QueueService, Recipient, RecipientState,
};
use ferrymail_store::{Store, StoreOptions};

use super::*;
use crate::model::due_index::{entry_time, move_entry};

struct Fixture {
    queue: Queue,
    _dir: tempfile::TempDir,
}

fn open() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    };
    let store = Store::open_embedded(dir.path(), options).unwrap();
    let config = ferrymail_config::load_str("t.toml", "[server]\nhostname = \"h\"\n").unwrap();
    Fixture {
        queue: Queue::new(store, &config.queue),
        _dir: dir,
    }
}

fn body() -> BodyStream {
    Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from_static(b"Subject: s\r\n\r\nbody\r\n").into(),
    )]))
}

async fn enqueue(queue: &Queue, sender: &str, recipients: &[&str], priority: i32) -> QueueId {
    let envelope = Envelope {
        sender: sender.into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        priority: Priority::new(priority).unwrap(),
        helo: "client.test".into(),
        ..Envelope::default()
    };
    queue.enqueue(envelope, body()).await.unwrap()
}

/// Records a temporary failure with `reply` for recipient `index` of `id`, due in an hour.
async fn fail_temporarily(queue: &Queue, id: &QueueId, index: usize, reply: &str) {
    let (keys, id, reply) = (
        queue.keys.clone(),
        MessageId::from_wire(id).unwrap(),
        reply.to_owned(),
    );
    let later = unix_millis(SystemTime::now() + Duration::from_secs(3600));
    queue
        .store
        .transact(move |tx| {
            let (keys, reply) = (keys.clone(), reply.clone());
            Box::pin(async move {
                let mut message = StoredMessage::read(tx, &keys, &id).await?.unwrap();
                let recipient = &mut message.recipients[index];
                let mut delta = crate::model::counters::CounterDelta::default();
                delta.transition(recipient.state, RecipientState::TempFailed);
                recipient.state = RecipientState::TempFailed;
                recipient.attempts += 1;
                recipient.due_ms = Some(later);
                recipient.last_reply = Some(reply);
                tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
                let due = entry_time(&message.record, &message.recipients);
                move_entry(tx, &keys, &mut message.record, due)?;
                tx.set(&keys.message(&id), &message.record.encode())?;
                delta.apply(tx, &keys, id.shard())?;
                Ok::<_, StoreError>(())
            })
        })
        .await
        .unwrap();
}

fn request(action: BulkAction, filter: BulkFilter) -> BulkRequest {
    BulkRequest {
        action,
        filter,
        dry_run: true,
        cursor: None,
        batch_size: 0,
        limit: 0,
    }
}

/// How many messages a dry run of `filter` at `now` selects.
async fn count(queue: &Queue, filter: BulkFilter, now: SystemTime) -> u64 {
    let report = queue
        .run_bulk(request(BulkAction::Hold, filter), now)
        .await
        .unwrap();
    assert_eq!(report.messages_changed, 0, "a dry run changes nothing");
    report.matched
}

#[tokio::test]
async fn every_criterion_selects_what_it_says() {
    let f = open();
    let q = &f.queue;
    let a = enqueue(
        q,
        "Alice@Example.org",
        &["bob@example.net", "carol@other.test"],
        0,
    )
    .await;
    let _b = enqueue(q, "dave@sub.example.org", &["erin@example.net"], 5).await;
    let _c = enqueue(q, "", &["frank@third.test"], -2).await;
    fail_temporarily(q, &a, 1, "452 4.2.2 Mailbox FULL").await;
    let now = SystemTime::now();
    let filter = |f: fn(&mut BulkFilter)| {
        let mut filter = BulkFilter::default();
        f(&mut filter);
        filter
    };
    let cases: [(BulkFilter, u64); 11] = [
        (filter(|f| f.sender = Some("alice".into())), 1),
        (filter(|f| f.sender = Some("example.org".into())), 2),
        (filter(|f| f.sender_domain = Some("@EXAMPLE.org".into())), 1),
        (filter(|f| f.recipient = Some("Erin@example.net".into())), 1),
        (
            filter(|f| f.recipient_domain = Some("example.net".into())),
            2,
        ),
        (filter(|f| f.state = Some(RecipientState::TempFailed)), 1),
        (filter(|f| f.state = Some(RecipientState::Pending)), 3),
        (filter(|f| f.last_reply = Some("mailbox full".into())), 1),
        (filter(|f| f.priority = Some(Priority::new(5).unwrap())), 1),
        (filter(|f| f.older_than = Some(3600)), 0),
        // Recipient criteria hold for one recipient together: carol failed, bob did not.
        (
            filter(|f| {
                f.recipient = Some("bob@example.net".into());
                f.state = Some(RecipientState::TempFailed);
            }),
            0,
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(count(q, filter.clone(), now).await, expected, "{filter:?}");
    }
    let aged = filter(|f| f.older_than = Some(3600));
    assert_eq!(count(q, aged, now + Duration::from_secs(7200)).await, 3);
}

#[tokio::test]
async fn retry_and_cancel_act_on_the_selected_recipients_only() {
    let f = open();
    let q = &f.queue;
    let id = enqueue(q, "a@example.org", &["b@example.net", "c@other.test"], 0).await;
    fail_temporarily(q, &id, 0, "451 later").await;
    fail_temporarily(q, &id, 1, "451 later").await;
    let domain = BulkFilter {
        recipient_domain: Some("example.net".into()),
        ..BulkFilter::default()
    };
    let retry = BulkRequest {
        dry_run: false,
        ..request(BulkAction::Retry, domain.clone())
    };
    let report = q.run_bulk(retry, SystemTime::now()).await.unwrap();
    assert_eq!((report.matched, report.recipients_changed), (1, 1));
    let detail = q.get(&id).await.unwrap();
    assert!(detail.recipients[0].next_attempt < detail.recipients[1].next_attempt);

    let cancel = BulkRequest {
        dry_run: false,
        ..request(BulkAction::CancelSilently, domain)
    };
    let report = q.run_bulk(cancel, SystemTime::now()).await.unwrap();
    assert_eq!((report.messages_changed, report.recipients_changed), (1, 1));
    let states: Vec<_> = q
        .get(&id)
        .await
        .unwrap()
        .recipients
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(
        states,
        [RecipientState::Cancelled, RecipientState::TempFailed]
    );
}

#[tokio::test]
async fn a_large_selection_goes_in_batches_and_resumes_from_its_cursor() {
    let f = open();
    let q = &f.queue;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(enqueue(q, &format!("s{i}@example.org"), &["r@example.net"], 0).await);
    }
    // The queue is walked in id order; ids of one millisecond are not in enqueue order.
    ids.sort();
    let sender = BulkFilter {
        sender_domain: Some("example.org".into()),
        ..BulkFilter::default()
    };
    let hold = |cursor: Option<String>| BulkRequest {
        dry_run: false,
        cursor,
        batch_size: 2,
        limit: 5,
        ..request(BulkAction::Hold, sender.clone())
    };
    let first = q.run_bulk(hold(None), SystemTime::now()).await.unwrap();
    assert_eq!((first.examined, first.messages_changed), (5, 5));
    assert_eq!(first.cursor.as_deref(), Some(ids[4].as_str()));
    let rest = q
        .run_bulk(hold(first.cursor), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        rest,
        BulkReport {
            examined: 2,
            matched: 2,
            messages_changed: 2,
            recipients_changed: 0,
            cursor: None,
        }
    );
    for id in &ids {
        assert!(q.get(id).await.unwrap().summary.held);
    }
    // Held already: matched again, changed no more.
    let again = q.run_bulk(hold(None), SystemTime::now()).await.unwrap();
    assert_eq!((again.matched, again.messages_changed), (5, 0));
    let release = BulkRequest {
        dry_run: false,
        limit: 0,
        ..request(BulkAction::Release, sender)
    };
    let released = q.run_bulk(release, SystemTime::now()).await.unwrap();
    assert_eq!(released.messages_changed, 7);
    assert!(!q.get(&ids[6]).await.unwrap().summary.held);
}

#[tokio::test]
async fn malformed_filters_and_cursors_are_refused() {
    let f = open();
    let q = &f.queue;
    let refused = [
        BulkFilter::default(),
        BulkFilter {
            recipient_domain: Some("a@b".into()),
            ..BulkFilter::default()
        },
        BulkFilter {
            recipient: Some("no-at-sign".into()),
            ..BulkFilter::default()
        },
        BulkFilter {
            sender: Some("line\nbreak".into()),
            ..BulkFilter::default()
        },
        BulkFilter {
            sender_domain: Some(String::new()),
            ..BulkFilter::default()
        },
    ];
    for filter in refused {
        let outcome = q
            .run_bulk(
                request(BulkAction::Retry, filter.clone()),
                SystemTime::now(),
            )
            .await;
        assert!(
            matches!(outcome, Err(QueueError::InvalidArgument(_))),
            "{filter:?}: {outcome:?}"
        );
    }
    let bad_cursor = BulkRequest {
        cursor: Some("nope".into()),
        ..request(
            BulkAction::Retry,
            BulkFilter {
                sender: Some("a".into()),
                ..BulkFilter::default()
            },
        )
    };
    let outcome = q.run_bulk(bad_cursor, SystemTime::now()).await;
    assert!(
        matches!(outcome, Err(QueueError::InvalidArgument(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_cancel_with_notice_tells_the_sender_and_a_silent_one_does_not() {
    let f = open();
    let q = &f.queue;
    let told = enqueue(q, "told@example.org", &["x@example.net"], 0).await;
    let silent = enqueue(q, "silent@example.org", &["y@example.net"], 0).await;
    let _null = enqueue(q, "", &["z@example.net"], 0).await;
    let cancel = |action, sender: &str| BulkRequest {
        dry_run: false,
        ..request(
            action,
            BulkFilter {
                sender: Some(sender.into()),
                ..BulkFilter::default()
            },
        )
    };
    let report = q
        .run_bulk(
            cancel(BulkAction::CancelWithNotice, "told@"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(report.recipients_changed, 1);
    q.run_bulk(
        cancel(BulkAction::CancelSilently, "silent@"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    for id in [&told, &silent] {
        assert!(matches!(q.get(id).await, Err(QueueError::NotFound(_))));
    }
    // Left: the message from the null sender, and one notice, from <> to told@.
    let page = q
        .list(ferrymail_rpc::queue::ListRequest::default())
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
    let notices: Vec<_> = page
        .messages
        .iter()
        .filter(|m| m.sender.is_empty())
        .collect();
    assert_eq!(notices.len(), 2);
    let mut to = Vec::new();
    for m in notices {
        let detail = q.get(&m.queue_id).await.unwrap();
        to.push(detail.recipients[0].address.clone());
    }
    to.sort();
    assert_eq!(to, ["told@example.org", "z@example.net"]);
}

#[tokio::test]
async fn the_next_hop_criterion_follows_the_routing_in_force() {
    let f = open();
    let q = &f.queue;
    let text = r#"
[server]
hostname = "h"
[remote.relay]
address = "127.0.0.1"
protocol = "smtp"
tls.implicit = false
[directory.local]
type = "lmtp"
address = "127.0.0.1"
lookup.domains = ["example.org"]
[queue.outbound]
next-hop = [
  { if = "rcpt-domain", in-list = "local/domains", then = "relay" },
  { else = "mx" },
]
"#;
    let hop = |hop: &str| BulkFilter {
        next_hop: Some(hop.into()),
        ..BulkFilter::default()
    };
    enqueue(q, "a@x.test", &["one@example.org", "two@elsewhere.test"], 0).await;
    enqueue(q, "b@x.test", &["three@elsewhere.test"], 0).await;
    let unrouted = q
        .run_bulk(request(BulkAction::Hold, hop("mx")), SystemTime::now())
        .await;
    assert!(
        matches!(unrouted, Err(QueueError::Unavailable(_))),
        "{unrouted:?}"
    );

    q.set_router(crate::route::Router::new(
        &ferrymail_config::load_str("t.toml", text).unwrap(),
    ));
    let now = SystemTime::now();
    assert_eq!(count(q, hop("relay"), now).await, 1);
    assert_eq!(count(q, hop("MX"), now).await, 2);
    assert_eq!(count(q, hop("other"), now).await, 0);
    let bad = q
        .run_bulk(request(BulkAction::Hold, hop("not a hop!")), now)
        .await;
    assert!(
        matches!(bad, Err(QueueError::InvalidArgument(_))),
        "{bad:?}"
    );
}
