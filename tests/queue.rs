//! The `queue-scheduler` role serves the `Queue` service over gRPC from its store: a message
//! enqueued with a streamed body can be listed, inspected and cancelled, and what is queued
//! survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use ferrymail_e2e::Ferrymail;
use ferrymail_rpc::queue::{
    BodyError, BodyPart, BodyStream, Envelope, GrpcQueue, ListFilter, ListRequest, Priority,
    QueueError, QueueId, QueueService, Recipient, RecipientState,
};

fn config(store: &std::path::Path) -> String {
    format!(
        r#"
[server]
hostname = "queue.test"
shutdown-timeout = "5s"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
[store.local]
type = "embedded"
path = "{}"
[storage]
data = "local"
"#,
        store.display()
    )
}

fn client(process: &mut Ferrymail) -> GrpcQueue {
    let grpc = process.address("grpc");
    GrpcQueue::connect(&format!("http://{grpc}")).unwrap()
}

/// `data` in pieces of `piece` bytes, as a body the client streams.
fn body(data: Vec<u8>, piece: usize) -> BodyStream {
    let pieces: Vec<Result<BodyPart, BodyError>> = data
        .chunks(piece)
        .map(|p| Ok(Bytes::copy_from_slice(p).into()))
        .collect();
    Box::pin(futures::stream::iter(pieces))
}

fn envelope(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        priority: Priority::new(2).unwrap(),
        helo: "client.test".into(),
        // Held for an hour, so that the messages stay pending rather than being delivered
        // (by MX, the default next hop) while the test looks at them.
        hold_until: Some(an_hour_from_now()),
        ..Envelope::default()
    }
}

fn an_hour_from_now() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_secs() + 3600
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_queued_over_grpc_and_survive_a_restart() {
    let store = tempfile::tempdir().unwrap();
    let config = config(&store.path().join("queue"));
    let mut process = Ferrymail::start("queue-scheduler", &config);
    let queue = client(&mut process);

    // 200 KB, streamed in 16 KB pieces.
    let data: Vec<u8> = (0..200_000).map(|i| (i % 251) as u8).collect();
    let kept = queue
        .enqueue(
            envelope(
                "alice@example.org",
                &["bob@example.net", "carol@example.net"],
            ),
            body(data.clone(), 16 * 1024),
        )
        .await
        .unwrap();
    let detail = queue.get(&kept).await.unwrap();
    assert_eq!(detail.summary.queue_id, kept);
    assert_eq!(detail.summary.size, 200_000);
    assert_eq!(detail.summary.sender, "alice@example.org");
    assert_eq!(detail.summary.priority, Priority::new(2).unwrap());
    assert_eq!(detail.recipients.len(), 2);
    assert!(
        detail
            .recipients
            .iter()
            .all(|r| r.state == RecipientState::Pending)
    );

    let doomed = queue
        .enqueue(
            envelope("mallory@example.com", &["dave@example.net"]),
            body(b"cancel me".to_vec(), 4),
        )
        .await
        .unwrap();
    let listed = queue.list(ListRequest::default()).await.unwrap();
    let ids: Vec<&QueueId> = listed.messages.iter().map(|m| &m.queue_id).collect();
    assert_eq!(ids, [&kept, &doomed]);
    let filtered = queue
        .list(ListRequest {
            filter: ListFilter {
                sender: Some("mallory".into()),
                ..ListFilter::default()
            },
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.messages.len(), 1);
    assert_eq!(filtered.messages[0].queue_id, doomed);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.messages, 2);
    assert_eq!(stats.bytes, 200_009);
    assert_eq!(stats.recipients.pending, 3);

    assert_eq!(queue.cancel(&doomed, &[]).await.unwrap(), 1);
    assert!(matches!(
        queue.get(&doomed).await,
        Err(QueueError::NotFound(_))
    ));
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.bytes, 200_000);
    assert_eq!(stats.recipients.pending, 2);
    assert_eq!(
        stats.recipients.cancelled, 0,
        "the cancelled message left the queue"
    );

    // Bad requests get clear errors and the role keeps serving.
    let garbage = queue.get(&QueueId::new("not-a-queue-id")).await;
    assert!(
        matches!(garbage, Err(QueueError::InvalidArgument(_))),
        "{garbage:?}"
    );
    let nobody = queue
        .enqueue(envelope("a@example.org", &[]), body(b"x".to_vec(), 1))
        .await;
    assert!(
        matches!(nobody, Err(QueueError::InvalidArgument(_))),
        "{nobody:?}"
    );

    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");

    let mut process = Ferrymail::start("queue-scheduler", &config);
    let queue = client(&mut process);
    let detail = queue.get(&kept).await.unwrap();
    assert_eq!(detail.summary.size, 200_000);
    assert_eq!(detail.recipients.len(), 2);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.messages, stats.bytes), (1, 200_000));
    assert_eq!(stats.oldest_arrival, Some(detail.summary.arrival));
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_body_queues_nothing() {
    let store = tempfile::tempdir().unwrap();
    let mut process = Ferrymail::start("queue-scheduler", &config(&store.path().join("queue")));
    let queue = client(&mut process);
    let mut pieces: Vec<Result<BodyPart, BodyError>> = (0..40)
        .map(|_| Ok(Bytes::from(vec![b'x'; 32 * 1024]).into()))
        .collect();
    pieces.push(Err(BodyError::new("the client went away")));
    let failed = queue
        .enqueue(
            envelope("a@example.org", &["b@example.net"]),
            Box::pin(futures::stream::iter(pieces)),
        )
        .await;
    assert!(matches!(failed, Err(QueueError::Body(_))), "{failed:?}");
    // A message that arrives whole afterwards is the only one queued.
    let id = queue
        .enqueue(
            envelope("a@example.org", &["b@example.net"]),
            body(b"ok".to_vec(), 1),
        )
        .await
        .unwrap();
    let listed = queue.list(ListRequest::default()).await.unwrap();
    assert_eq!(listed.messages.len(), 1);
    assert_eq!(listed.messages[0].queue_id, id);
    assert_eq!(queue.stats().await.unwrap().messages, 1);
}
