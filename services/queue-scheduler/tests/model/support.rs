//! A queue on a fresh embedded store, and the envelopes and bodies tests give it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrymail_queue_scheduler::{MessageId, Queue};
use ferrymail_rpc::queue::{
    BodyError, BodyPart, BodyStream, Envelope, ListRequest, QueueId, QueueService, QueueStats,
    Recipient, RecipientCounts, RecipientState,
};
use ferrymail_store::{KeyRange, KeyValue, Store, StoreOptions};
use futures::TryStreamExt;

/// A queue on its own embedded store, removed with it.
pub struct TestQueue {
    pub queue: Arc<Queue>,
    pub store: Store,
    _dir: tempfile::TempDir,
}

/// A queue on a fresh store with default options.
pub fn open() -> TestQueue {
    open_with(StoreOptions::default())
}

/// A queue on a fresh store opened with `options`.
pub fn open_with(options: StoreOptions) -> TestQueue {
    open_configured(options, "")
}

/// A queue on a fresh store opened with `options`, `extra` added to the configuration.
pub fn open_configured(options: StoreOptions, extra: &str) -> TestQueue {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), options).unwrap();
    let text =
        format!("[server]\nhostname = \"queue.test\"\n[queue.schedule]\nexpire = \"2d\"\n{extra}");
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let queue = Arc::new(Queue::new(store.clone(), &config.queue));
    TestQueue {
        queue,
        store,
        _dir: dir,
    }
}

/// How long `queue.schedule.expire` is in [`open`]'s configuration.
pub const EXPIRE: Duration = Duration::from_secs(2 * 24 * 3600);

/// An envelope from `sender` to `recipients`.
pub fn envelope(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
        helo: "client.test".into(),
        ..Envelope::default()
    }
}

/// `data` as a body arriving in pieces of `piece` bytes.
pub fn body(data: &[u8], piece: usize) -> BodyStream {
    let pieces: Vec<Result<BodyPart, BodyError>> = data
        .chunks(piece.max(1))
        .map(|p| Ok(Bytes::copy_from_slice(p).into()))
        .collect();
    Box::pin(futures::stream::iter(pieces))
}

/// `good` bytes of body, then the error of a client that went away.
pub fn broken_body(good: usize) -> BodyStream {
    let mut pieces: Vec<Result<BodyPart, BodyError>> = sample(good)
        .chunks(10_000)
        .map(|p| Ok(Bytes::copy_from_slice(p).into()))
        .collect();
    pieces.push(Err(BodyError::new("the client went away")));
    Box::pin(futures::stream::iter(pieces))
}

/// `len` bytes that differ from position to position.
pub fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Queues `envelope` with `data` and returns the id.
pub async fn enqueue(queue: &Queue, envelope: Envelope, data: &[u8]) -> QueueId {
    queue.enqueue(envelope, body(data, 4096)).await.unwrap()
}

/// Every key and value of the store.
pub async fn dump(store: &Store) -> Vec<KeyValue> {
    store
        .scan(KeyRange::prefix(store.root().bytes()), 1000)
        .try_collect()
        .await
        .unwrap()
}

/// The current time in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The parsed form of a wire id.
pub fn parsed(id: &QueueId) -> MessageId {
    MessageId::from_wire(id).unwrap()
}

/// Totals computed by reading every message: what the counters must say.
pub async fn recount(queue: &Queue) -> QueueStats {
    let mut stats = QueueStats::default();
    let mut token = None;
    loop {
        let page = queue
            .list(ListRequest {
                page_size: 1000,
                page_token: token,
                ..ListRequest::default()
            })
            .await
            .unwrap();
        for summary in &page.messages {
            stats.messages += 1;
            stats.bytes += summary.size;
            stats.oldest_arrival = Some(
                stats
                    .oldest_arrival
                    .map_or(summary.arrival, |o: u64| o.min(summary.arrival)),
            );
            let detail = queue.get(&summary.queue_id).await.unwrap();
            for recipient in detail.recipients {
                count(&mut stats.recipients, recipient.state);
            }
        }
        token = page.next_page_token;
        if token.is_none() {
            return stats;
        }
    }
}

fn count(counts: &mut RecipientCounts, state: RecipientState) {
    *match state {
        RecipientState::Pending => &mut counts.pending,
        RecipientState::Delivered => &mut counts.delivered,
        RecipientState::TempFailed => &mut counts.temp_failed,
        RecipientState::PermFailed => &mut counts.perm_failed,
        RecipientState::Cancelled => &mut counts.cancelled,
    } += 1;
}
