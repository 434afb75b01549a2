//! Enqueue: what one transaction makes durable, and what a failed body or a bad envelope
//! leaves behind (nothing).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrymail_queue_scheduler::MAX_RECIPIENTS;
use ferrymail_rpc::queue::{
    BodyError, BodyPart, BodyStream, BodyType, DsnReturn, MAX_PREPEND, Notify, NotifyOn, Priority,
    QueueError, QueueId, QueueService, QueueStats, Recipient, RecipientState,
};
use ferrymail_store::blob::{GcReport, MAX_SMALL_BLOB};
use futures::StreamExt;

use crate::support::{
    EXPIRE, body, broken_body, dump, enqueue, envelope, open, parsed, sample, unix_now,
};

#[tokio::test]
async fn enqueue_then_get_shows_every_recipient_pending_and_the_body_readable() {
    let t = open();
    let mut env = envelope(
        "alice@example.org",
        &["bob@example.net", "carol@example.net", "dave@example.com"],
    );
    env.recipients[1].notify = Notify::On(NotifyOn::new(false, true, true).unwrap());
    env.recipients[1].orcpt = Some("rfc822;carol@example.net".into());
    env.ret = Some(DsnReturn::Headers);
    env.envid = Some("ENV-1".into());
    env.priority = Priority::new(3).unwrap();
    env.body_type = BodyType::EightBitMime;
    env.client_ip = Some("192.0.2.7".parse().unwrap());
    env.trace_parent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let data = sample(300_000);
    let before = unix_now();
    let id = t
        .queue
        .enqueue(env.clone(), body(&data, 7_000))
        .await
        .unwrap();
    let after = unix_now();
    assert_eq!(id.as_str().len(), 26);

    let detail = t.queue.get(&id).await.unwrap();
    assert_eq!(detail.summary.queue_id, id);
    assert_eq!(detail.summary.sender, "alice@example.org");
    assert_eq!(detail.summary.recipients, 3);
    assert_eq!(detail.summary.size, 300_000);
    assert_eq!(detail.summary.priority, Priority::new(3).unwrap());
    assert!((before..=after).contains(&detail.summary.arrival));
    assert_eq!(detail.summary.next_attempt, Some(detail.summary.arrival));
    let addresses: Vec<_> = detail
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(
        addresses,
        ["bob@example.net", "carol@example.net", "dave@example.com"]
    );
    for recipient in &detail.recipients {
        assert_eq!(recipient.state, RecipientState::Pending);
        assert_eq!(recipient.attempts, 0);
        assert_eq!(recipient.next_attempt, Some(detail.summary.arrival));
        assert_eq!(recipient.last_reply, None);
    }

    // The stored form keeps the whole envelope, DSN parameters included.
    let stored = t.queue.load(&parsed(&id)).await.unwrap();
    let record = &stored.record;
    assert_eq!(record.envelope.recipients, Vec::<Recipient>::new());
    let kept: Vec<Recipient> = stored
        .recipients
        .iter()
        .map(|r| r.recipient.clone())
        .collect();
    assert_eq!(kept, env.recipients);
    let mut expected = env.clone();
    expected.recipients.clear();
    assert_eq!(record.envelope, expected);
    assert_eq!(
        record.expiry_ms - record.arrival_ms,
        EXPIRE.as_millis() as u64
    );
    assert_eq!(record.arrival_ms, parsed(&id).unix_millis());

    // The body is readable through the blob store, whole.
    assert_eq!(t.queue.blobs().read(&record.blob).await.unwrap(), data);

    let stats = t.queue.stats().await.unwrap();
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.bytes, 300_000);
    assert_eq!(stats.recipients.pending, 3);
    assert_eq!(stats.oldest_arrival, Some(detail.summary.arrival));
}

#[tokio::test]
async fn bodies_on_both_sides_of_the_small_bound_are_stored_whole_with_their_headers() {
    let t = open();
    let headers = b"Authentication-Results: mx.test; dkim=pass\r\n".to_vec();
    for len in [1, MAX_SMALL_BLOB, MAX_SMALL_BLOB + 1, 3 * MAX_SMALL_BLOB] {
        let data = sample(len);
        let last = Ok(BodyPart::Prepend(Bytes::from(headers.clone())));
        let with_headers: BodyStream =
            Box::pin(body(&data, 10_000).chain(futures::stream::iter([last])));
        let id = t
            .queue
            .enqueue(envelope("a@example.org", &["b@example.net"]), with_headers)
            .await
            .unwrap();
        let record = t.queue.load(&parsed(&id)).await.unwrap().record;
        assert_eq!(record.prepend, headers, "{len}");
        assert_eq!(record.size, (len + headers.len()) as u64, "{len}");
        assert!(
            t.queue.blobs().read(&record.blob).await.unwrap() == data,
            "{len}"
        );
    }
    // Every body is referenced by its message, none left pending for collection.
    let report = t
        .queue
        .blobs()
        .collect_garbage(Duration::ZERO, SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report, GcReport::default());
}

#[tokio::test]
async fn bodies_that_break_the_order_of_their_parts_commit_nothing() {
    let t = open();
    let before = dump(&t.store).await;
    for len in [10, 2 * MAX_SMALL_BLOB] {
        let headers = || Ok(BodyPart::Prepend(Bytes::from_static(b"X-A: 1\r\n")));
        let cases: [Vec<Result<BodyPart, BodyError>>; 3] = [
            vec![headers(), Ok(Bytes::from(sample(len)).into())],
            vec![Ok(Bytes::from(sample(len)).into()), headers(), headers()],
            vec![
                Ok(Bytes::from(sample(len)).into()),
                Ok(BodyPart::Prepend(Bytes::from(vec![b'h'; MAX_PREPEND + 1]))),
            ],
        ];
        for parts in cases {
            let outcome = t
                .queue
                .enqueue(
                    envelope("a@example.org", &["b@example.net"]),
                    Box::pin(futures::stream::iter(parts)),
                )
                .await;
            assert!(matches!(outcome, Err(QueueError::Body(_))), "{outcome:?}");
        }
    }
    assert_eq!(t.queue.stats().await.unwrap(), QueueStats::default());
    assert_eq!(dump(&t.store).await, before, "nothing is left behind");
}

#[tokio::test]
async fn an_empty_body_is_a_message_too() {
    let t = open();
    let id = enqueue(&t.queue, envelope("", &["postmaster"]), b"").await;
    let stored = t.queue.load(&parsed(&id)).await.unwrap();
    assert_eq!(stored.record.size, 0);
    assert_eq!(
        t.queue.blobs().read(&stored.record.blob).await.unwrap(),
        b""
    );
}

#[tokio::test]
async fn a_body_that_fails_mid_stream_commits_nothing() {
    let t = open();
    enqueue(
        &t.queue,
        envelope("a@example.org", &["b@example.net"]),
        b"kept",
    )
    .await;
    let before = dump(&t.store).await;
    let stats = t.queue.stats().await.unwrap();

    // 2.5 MB arrive (several blob transactions commit) before the client goes away.
    let failed = t
        .queue
        .enqueue(
            envelope("a@example.org", &["c@example.net"]),
            broken_body(2_500_000),
        )
        .await;
    match failed {
        Err(QueueError::Body(error)) => assert_eq!(error.reason(), "the client went away"),
        other => panic!("expected a body error, got {other:?}"),
    }
    assert_eq!(t.queue.stats().await.unwrap(), stats);
    assert_eq!(
        dump(&t.store).await,
        before,
        "nothing of the failed message remains"
    );
    let page = t.queue.list(Default::default()).await.unwrap();
    assert_eq!(page.messages.len(), 1);
}

#[tokio::test]
async fn bad_envelopes_are_refused_before_anything_is_stored() {
    let t = open();
    let many: Vec<String> = (0..=MAX_RECIPIENTS)
        .map(|i| format!("u{i}@example.net"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for bad in [
        envelope("a@example.org", &[]),
        envelope("a@example.org", &["b@example.net\r\nDATA"]),
        envelope("a@example.org", &["b\0@example.net"]),
        envelope("a@example.org\n", &["b@example.net"]),
        envelope("a@example.org", &[""]),
        envelope("a@example.org", &many),
    ] {
        let refused = t.queue.enqueue(bad.clone(), body(b"x", 1)).await;
        assert!(
            matches!(refused, Err(QueueError::InvalidArgument(_))),
            "{bad:?}: {refused:?}"
        );
    }
    assert!(dump(&t.store).await.is_empty());
    assert_eq!(t.queue.stats().await.unwrap(), QueueStats::default());
}

#[tokio::test]
async fn queue_ids_from_the_wire_are_checked() {
    let t = open();
    for garbage in [
        "",
        "nonsense",
        "01J9ZK3M5Q8W2XGJ4R6T0B7C1U",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
    ] {
        let id = QueueId::new(garbage);
        assert!(matches!(
            t.queue.get(&id).await,
            Err(QueueError::InvalidArgument(_))
        ));
        assert!(matches!(
            t.queue.retry(&id, &[]).await,
            Err(QueueError::InvalidArgument(_))
        ));
        assert!(matches!(
            t.queue.cancel(&id, &[]).await,
            Err(QueueError::InvalidArgument(_))
        ));
    }
    // Well formed, but no such message.
    let unknown = QueueId::new("01J9ZK3M5Q8W2XGJ4R6T0B7C1D");
    assert!(matches!(
        t.queue.get(&unknown).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        t.queue.retry(&unknown, &[]).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        t.queue.cancel(&unknown, &[]).await,
        Err(QueueError::NotFound(_))
    ));
    // Lower case names the same message.
    let id = enqueue(
        &t.queue,
        envelope("a@example.org", &["b@example.net"]),
        b"x",
    )
    .await;
    let lower = QueueId::new(id.as_str().to_lowercase());
    assert_eq!(t.queue.get(&lower).await.unwrap().summary.queue_id, id);
}
