//! The outbox on the embedded store, every transaction closure run twice: nothing without a
//! webhook, events written with holds and cancels, the bound, removal, and the sender lease.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use ferrymail_config::model::webhook::{EventOutbox, Webhook};
use ferrymail_rpc::queue::{BodyError, BodyStream, Envelope, QueueId, QueueService, Recipient};
use ferrymail_store::{Store, StoreOptions};
use serde_json::Value;

use crate::model::event_outbox::{self, EventId, SenderTerms};
use crate::service::Queue;

struct Fixture {
    queue: Queue,
    _dir: tempfile::TempDir,
}

fn open(max_size: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    };
    let store = Store::open_embedded(dir.path(), options).unwrap();
    let mut config = ferrymail_config::load_str("t.toml", "[server]\nhostname = \"h\"\n")
        .unwrap()
        .queue;
    config.events = EventOutbox {
        max_size,
        ..EventOutbox::default()
    };
    Fixture {
        queue: Queue::new(store, &config),
        _dir: dir,
    }
}

fn webhooks(events: &[&str]) -> BTreeMap<String, Webhook> {
    let text = format!(
        "[server]\nhostname = \"h\"\n[webhook.hook]\nurl = \"http://127.0.0.1:9/\"\nevents = {events:?}\n"
    );
    ferrymail_config::load_str("t.toml", &text)
        .unwrap()
        .webhooks
}

async fn enqueue(queue: &Queue, recipients: &[&str]) -> QueueId {
    let envelope = Envelope {
        sender: "s@example.org".into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        helo: "client.test".into(),
        // Not due for an hour: nothing here delivers it.
        hold_until: Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600,
        ),
        ..Envelope::default()
    };
    let body: BodyStream = Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from_static(b"Subject: s\r\n\r\nbody\r\n").into(),
    )]));
    queue.enqueue(envelope, body).await.unwrap()
}

/// The events waiting for `hook`, and its count.
async fn outbox(queue: &Queue) -> (Vec<Value>, u64) {
    let keys = queue.keys.clone();
    queue
        .store
        .transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let events = event_outbox::oldest(tx, &keys, "hook", 100).await?;
                let depth = event_outbox::depth(tx, &keys, "hook").await?;
                let events = events
                    .iter()
                    .map(|(_, body)| serde_json::from_slice(body).unwrap())
                    .collect();
                Ok((events, depth))
            })
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn without_a_webhook_nothing_is_written() {
    let fixture = open(100);
    let id = enqueue(&fixture.queue, &["a@example.net"]).await;
    assert!(fixture.queue.hold(&id).await.unwrap());
    assert_eq!(fixture.queue.cancel(&id, &[]).await.unwrap(), 1);
    assert_eq!(outbox(&fixture.queue).await, (Vec::new(), 0));
}

#[tokio::test]
async fn holds_and_cancels_write_one_event_per_recipient_in_the_same_transaction() {
    let fixture = open(100);
    let queue = &fixture.queue;
    queue.set_webhooks(&webhooks(&["queue.held", "queue.cancelled"]));
    let id = enqueue(queue, &["a@example.net", "b@example.net"]).await;
    assert!(queue.hold(&id).await.unwrap());
    // Not asked for by the webhook: not written.
    assert!(queue.release(&id).await.unwrap());
    assert_eq!(
        queue.cancel(&id, &["b@example.net".into()]).await.unwrap(),
        1
    );
    let (events, depth) = outbox(queue).await;
    assert_eq!(depth, 3);
    // Events of one millisecond have no order among them.
    let mut kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["data"]["recipient"].as_str().unwrap(),
            )
        })
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("queue.cancelled", "b@example.net"),
            ("queue.held", "a@example.net"),
            ("queue.held", "b@example.net"),
        ]
    );
    assert!(events.iter().all(|e| e["data"]["queueId"] == id.as_str()));
}

#[tokio::test]
async fn a_full_outbox_drops_new_events_and_counts_them() {
    let fixture = open(3);
    let queue = &fixture.queue;
    queue.set_webhooks(&webhooks(&["*"]));
    let id = enqueue(queue, &["a@example.net", "b@example.net"]).await;
    assert!(queue.hold(&id).await.unwrap());
    assert!(queue.release(&id).await.unwrap());
    assert!(queue.hold(&id).await.unwrap());
    let (events, depth) = outbox(queue).await;
    assert_eq!((events.len(), depth), (3, 3));
    assert_eq!(queue.metrics.events_dropped_count("hook"), 3);
}

#[tokio::test]
async fn removal_counts_only_the_events_still_there() {
    let fixture = open(100);
    let queue = &fixture.queue;
    queue.set_webhooks(&webhooks(&["*"]));
    let id = enqueue(queue, &["a@example.net", "b@example.net"]).await;
    assert!(queue.hold(&id).await.unwrap());
    let keys = queue.keys.clone();
    let ids: Vec<EventId> = queue
        .store
        .transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let events = event_outbox::oldest(tx, &keys, "hook", 10).await?;
                Ok(events.into_iter().map(|(id, _)| id).collect())
            })
        })
        .await
        .unwrap();
    let remove = |ids: Vec<EventId>| {
        let keys = queue.keys.clone();
        queue.store.transact(move |tx| {
            let (keys, ids) = (keys.clone(), ids.clone());
            Box::pin(async move { event_outbox::remove(tx, &keys, "hook", &ids).await })
        })
    };
    assert_eq!(remove(ids[..1].to_vec()).await.unwrap(), 1);
    // A second sender removing the same events does not count them again.
    assert_eq!(remove(ids.clone()).await.unwrap(), 1);
    assert_eq!(outbox(queue).await, (Vec::new(), 0));
}

#[tokio::test]
async fn the_sender_lease_is_one_scheduler_s_until_it_runs_out() {
    let fixture = open(100);
    let queue = &fixture.queue;
    let take = |owner: &str, now_ms: u64| {
        let terms = SenderTerms {
            owner: owner.to_owned(),
            now_ms,
            expiry_ms: now_ms + 1_000,
            skew_ms: 100,
        };
        let keys = queue.keys.clone();
        queue.store.transact(move |tx| {
            let (keys, terms) = (keys.clone(), terms.clone());
            Box::pin(
                async move { event_outbox::take_sender_lease(tx, &keys, "hook", &terms).await },
            )
        })
    };
    let a = take("a", 10_000).await.unwrap().unwrap();
    assert_eq!(a.token, 1);
    assert!(take("b", 10_500).await.unwrap().is_none());
    // Its holder extends it under the same token.
    let a = take("a", 10_900).await.unwrap().unwrap();
    assert_eq!((a.token, a.expiry_ms), (1, 11_900));
    // Past its end, but within the skew: still nobody else's.
    assert!(take("b", 11_950).await.unwrap().is_none());
    let b = take("b", 12_100).await.unwrap().unwrap();
    assert_eq!(b.token, 2);
    // The old holder finds it taken, and its release leaves the new one in place.
    assert!(take("a", 12_200).await.unwrap().is_none());
    let release = |token: u64| {
        let keys = queue.keys.clone();
        queue.store.transact(move |tx| {
            let keys = keys.clone();
            Box::pin(
                async move { event_outbox::release_sender_lease(tx, &keys, "hook", token).await },
            )
        })
    };
    release(1).await.unwrap();
    assert!(take("a", 12_300).await.unwrap().is_none());
    release(2).await.unwrap();
    assert_eq!(take("a", 12_400).await.unwrap().unwrap().token, 3);
}
