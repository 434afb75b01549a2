//! Enqueue: the message made durable in one transaction, the body with it when it is small.
//!
//! A body of at most [`MAX_SMALL_BLOB`] bytes (most mail) is held until it ends and written in
//! the message's own transaction: one commit per message. A larger one is streamed into a blob
//! first, and until the message's transaction commits nothing names that blob: a body that
//! fails mid-stream is deleted by the blob write itself, and a blob left by a process that
//! died, or by a commit that failed, stays unreferenced and is collected after the grace
//! period. A message is therefore either whole (record, recipients, due entry, counters and
//! body) or absent.
//!
//! The transaction may run again after a commit whose result was unknown, with the same
//! message: the record of its enqueue (`model::enqueued`) tells that run the message was
//! written already, whatever became of it since, and it writes nothing, not even the lease.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use ferrymail_rpc::queue::{
    BodyError, BodyPart, BodyStream, DmarcEvaluation, Envelope, MAX_PREPEND, QueueError,
};
use ferrymail_store::StoreError;
use ferrymail_store::blob::{BlobError, MAX_SMALL_BLOB, SmallBlob};
use ferrymail_telemetry::traceparent;
use futures::{StreamExt, stream};
use tracing::Span;
use tracing::field::{Empty, display};

use crate::claim::Claim;
use crate::envelope_check;
use crate::held_body::HeldBody;
use crate::message_id_header;
use crate::model::due_index::DueEntry;
use crate::model::lease::{self, Lease};
use crate::model::new_message::{Body, NewMessage, Written};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::quota::{self, QuotaExceeded};
use crate::model::report_rows::{self, PreparedRow};
use crate::proposed_id;
use crate::service::Queue;
use crate::store_failure::from_blob;

/// A body as received, and the headers to deliver before it.
struct ReceivedBody {
    body: Body,
    prepend: Option<Bytes>,
    /// The message's DMARC evaluation, for the aggregate report.
    dmarc: Option<Box<DmarcEvaluation>>,
    /// Its `Message-ID`, normalized, when its header section has one.
    message_id: Option<String>,
}

impl Queue {
    /// Queues `envelope` with `body`, arriving at `now`; returns once the message is durable.
    ///
    /// A message that comes without a trace context gets this enqueue's, so its delivery
    /// attempts still share one trace.
    #[tracing::instrument(name = "queue.enqueue", skip_all, fields(queue_id = Empty))]
    pub(crate) async fn enqueue_message(
        &self,
        mut envelope: Envelope,
        body: BodyStream,
        now: SystemTime,
    ) -> Result<MessageId, QueueError> {
        envelope_check::check(&envelope)?;
        let id = proposed_id::message_id(envelope.queue_id.take().as_ref(), now)?;
        if envelope.trace_parent.is_none() {
            envelope.trace_parent = traceparent(&Span::current());
        }
        let received = self.receive_body(body).await?;
        let now_s = id.unix_millis() / 1000;
        let dmarc = received
            .dmarc
            .as_deref()
            .and_then(|evaluation| self.dmarc_row(evaluation, now_s))
            .map(Arc::new);
        let expire_ms = u64::try_from(self.expire().as_millis()).unwrap_or(u64::MAX);
        let charges = quota::charges(&self.quotas.load(), &envelope);
        let message = Arc::new(
            NewMessage::new(id, envelope, received.body, received.prepend, expire_ms)
                .charged(charges)
                .with_message_id(received.message_id),
        );
        let (id, size) = (message.id(), message.size());
        let entry = message.due_entry();
        let due_now = !message.held() && entry.due_ms <= id.unix_millis();
        // Claimed for this process's scheduler in the same transaction: its first attempt
        // then needs no claim of its own (see `handoff`).
        let claimant = due_now.then(|| self.handoff.claimant()).flatten();
        let owner = claimant.map(|claimant| {
            let lease_ms = u64::try_from(claimant.lease.as_millis()).unwrap_or(u64::MAX);
            let expiry_ms = unix_millis(SystemTime::now()).saturating_add(lease_ms);
            (claimant.owner, expiry_ms)
        });
        Span::current().record("queue_id", display(id));
        let lease = self.write_new(message.clone(), owner, dmarc).await?;
        tracing::debug!(queue_id = %id, size, "message queued");
        self.metrics.enqueued();
        match lease {
            Some(lease) => self.hand_over(entry, lease, &message).await,
            None if due_now => self.push_fresh(entry),
            None => {}
        }
        Ok(id)
    }

    /// Writes `message` in a transaction of its own, claimed for `owner` until the expiry
    /// given with it, if any; returns the lease taken. Run again with the same message (a
    /// retry after a commit whose result was unknown), it writes nothing and takes no lease:
    /// the message may have been delivered, or claimed by another scheduler, since.
    pub(crate) async fn write_new(
        &self,
        message: Arc<NewMessage>,
        owner: Option<(String, u64)>,
        dmarc: Option<Arc<PreparedRow>>,
    ) -> Result<Option<Lease>, QueueError> {
        let (keys, blobs, id) = (self.keys.clone(), self.blobs.clone(), message.id());
        let (lease, recorded) = self
            .store
            .transact(move |tx| {
                let (message, keys, blobs) = (message.clone(), keys.clone(), blobs.clone());
                let (owner, dmarc) = (owner.clone(), dmarc.clone());
                Box::pin(async move {
                    if message.write(tx, &keys, &blobs).await? == Written::Before {
                        return Ok((None, None));
                    }
                    let recorded = match &dmarc {
                        Some(row) => {
                            Some((row.clone(), report_rows::record(tx, &keys, row).await?))
                        }
                        None => None,
                    };
                    let lease = owner
                        .map(|(owner, expiry_ms)| {
                            lease::claim_new(tx, &keys, &id, &owner, expiry_ms)
                        })
                        .transpose()?;
                    Ok((lease, recorded))
                })
            })
            .await
            .map_err(enqueue_failure)?;
        if let Some((row, recorded)) = recorded {
            self.note_recorded(&row, recorded);
        }
        Ok(lease)
    }

    /// Hands the message just enqueued, claimed under `lease`, to the scheduler it was
    /// claimed for; releases the lease if that scheduler stopped meanwhile.
    async fn hand_over(&self, entry: DueEntry, lease: Lease, message: &NewMessage) {
        let claim = Box::new(Claim {
            lease,
            message: message.stored(),
            held: HeldBody::of(message),
        });
        if let Err(claim) = self.handoff.push_claimed(entry, claim) {
            let id = claim.message.record.id;
            self.release_claims(vec![(id, claim.lease)]).await;
            self.push_fresh(entry);
        }
    }

    /// Reads `body`: held whole when it is small, otherwise streamed into a new blob.
    async fn receive_body(&self, mut body: BodyStream) -> Result<ReceivedBody, QueueError> {
        let mut trailer = Trailer::default();
        let mut held = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = next_chunk(&mut body, &mut trailer).await {
            let chunk = chunk.map_err(abandoned)?;
            size += chunk.len() as u64;
            held.push(chunk);
            if size > MAX_SMALL_BLOB as u64 {
                let message_id = message_id_header::message_id(&held);
                let mut received = self.stream_body(held, body).await?;
                received.message_id = message_id;
                return Ok(received);
            }
        }
        let small = SmallBlob::new(held).ok_or_else(|| {
            QueueError::Internal("a body within the small-blob bound was refused".to_owned())
        })?;
        Ok(ReceivedBody {
            message_id: message_id_header::message_id(small.chunks()),
            body: Body::Small(small),
            prepend: trailer.prepend,
            dmarc: trailer.dmarc,
        })
    }

    /// Streams `held`, then the rest of `body`, into a new blob.
    async fn stream_body(
        &self,
        held: Vec<Bytes>,
        body: BodyStream,
    ) -> Result<ReceivedBody, QueueError> {
        let mut trailer = Trailer::default();
        let mut size = 0u64;
        let rest = stream::unfold((body, &mut trailer), |(mut body, trailer)| async move {
            let item = next_chunk(&mut body, trailer).await?;
            Some((item, (body, trailer)))
        });
        let counted = stream::iter(held.into_iter().map(Ok))
            .chain(rest)
            .inspect(|piece| {
                if let Ok(piece) = piece {
                    size += piece.len() as u64;
                }
            });
        match self.blobs.write(counted).await {
            Ok(blob) => Ok(ReceivedBody {
                body: Body::Streamed { blob, size },
                prepend: trailer.prepend,
                dmarc: trailer.dmarc,
                message_id: None,
            }),
            Err(BlobError::Body(error)) => {
                // The blob write deleted what it had stored; nothing else was written.
                let error = match error.downcast::<BodyError>() {
                    Ok(body) => *body,
                    Err(other) => BodyError::new(other.to_string()),
                };
                Err(abandoned(error))
            }
            Err(error) => Err(from_blob("enqueue", error)),
        }
    }
}

/// The queue error for a failed enqueue transaction: a full quota, or the store's failure.
fn enqueue_failure(error: StoreError) -> QueueError {
    match error {
        StoreError::Aborted(reason) => match reason.downcast::<QuotaExceeded>() {
            Ok(full) => {
                tracing::info!(quota = %full.quota, group = %full.group, "enqueue refused: queue quota full");
                QueueError::QuotaExceeded(format!("queue.quota.{} is full", full.quota))
            }
            Err(other) => from_blob("enqueue", BlobError::from(StoreError::Aborted(other))),
        },
        other => from_blob("enqueue", BlobError::from(other)),
    }
}

/// What may follow the last chunk of a body: the prepended headers and the DMARC evaluation.
#[derive(Default)]
struct Trailer {
    prepend: Option<Bytes>,
    dmarc: Option<Box<DmarcEvaluation>>,
}

impl Trailer {
    fn started(&self) -> bool {
        self.prepend.is_some() || self.dmarc.is_some()
    }
}

/// The next chunk of `body`; what may only come last goes to `trailer`.
async fn next_chunk(
    body: &mut BodyStream,
    trailer: &mut Trailer,
) -> Option<Result<Bytes, BodyError>> {
    loop {
        let part = match body.next().await? {
            Ok(part) => part,
            Err(error) => return Some(Err(error)),
        };
        match part {
            BodyPart::Chunk(_) if trailer.started() => {
                return Some(Err(BodyError::new(
                    "body data after the end of the message",
                )));
            }
            BodyPart::Chunk(chunk) => return Some(Ok(chunk)),
            BodyPart::Prepend(_) if trailer.prepend.is_some() => {
                return Some(Err(BodyError::new("a second set of prepended headers")));
            }
            BodyPart::Dmarc(_) if trailer.dmarc.is_some() => {
                return Some(Err(BodyError::new("a second DMARC evaluation")));
            }
            BodyPart::Dmarc(evaluation) => trailer.dmarc = Some(evaluation),
            BodyPart::Prepend(headers) if headers.len() > MAX_PREPEND => {
                return Some(Err(BodyError::new(format!(
                    "{} bytes of prepended headers, more than {MAX_PREPEND}",
                    headers.len()
                ))));
            }
            BodyPart::Prepend(headers) => trailer.prepend = Some(headers),
        }
    }
}

fn abandoned(error: BodyError) -> QueueError {
    tracing::debug!(%error, "enqueue abandoned: the body stream failed");
    QueueError::Body(error)
}

#[cfg(test)]
mod tests {
    //! An enqueue whose commit went through but was reported unknown runs again with the same
    //! message: here the same write, run twice as two transactions.

    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use ferrymail_outbound::Outcome;
    use ferrymail_rpc::queue::{QueueService, QueueStats, Recipient};
    use ferrymail_store::{Store, StoreOptions};

    use super::*;
    use crate::delivery_result::Committed;
    use crate::scheduler::{Scheduler, SchedulerOptions};

    const LEASE: Duration = Duration::from_secs(30);

    struct Replay {
        queue: Arc<Queue>,
        two: Scheduler,
        message: Arc<NewMessage>,
        now: SystemTime,
        _dir: tempfile::TempDir,
    }

    /// A queue on a store that runs every transaction closure twice, a scheduler `two`, and
    /// a message to enqueue.
    fn replay() -> Replay {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            run_closures_twice: true,
            ..StoreOptions::default()
        };
        let store = Store::open_embedded(dir.path(), options).unwrap();
        let config = ferrymail_config::load_str("t.toml", "[server]\nhostname = \"h\"\n").unwrap();
        let queue = Arc::new(Queue::new(store, &config.queue));
        let two = SchedulerOptions {
            owner: "two".into(),
            lease: LEASE,
            ..SchedulerOptions::new("h")
        };
        let two = Scheduler::new(queue.clone(), &config, two);
        let now = SystemTime::now();
        let envelope = Envelope {
            sender: "a@example.org".into(),
            recipients: vec![Recipient::new("b@example.net")],
            ..Envelope::default()
        };
        let body = SmallBlob::new([Bytes::from_static(b"hello\r\n")]).unwrap();
        let id = MessageId::generate(now);
        let message = NewMessage::new(id, envelope, Body::Small(body), None, 86_400_000);
        Replay {
            queue,
            two,
            message: Arc::new(message),
            now,
            _dir: dir,
        }
    }

    impl Replay {
        /// The enqueue's write, claimed for scheduler `one` for a lease from now.
        async fn enqueue(&self) -> Option<Lease> {
            let expiry_ms = unix_millis(self.now).saturating_add(LEASE.as_millis() as u64);
            let owner = Some(("one".to_owned(), expiry_ms));
            self.queue
                .write_new(self.message.clone(), owner, None)
                .await
                .unwrap()
        }

        async fn lease(&self) -> Option<Lease> {
            let (keys, id) = (self.queue.keys.clone(), self.message.id());
            self.queue
                .store
                .transact(move |tx| {
                    let keys = keys.clone();
                    Box::pin(async move { lease::read(tx, &keys, &id).await })
                })
                .await
                .unwrap()
        }

        /// Scheduler `two` claims the message once `one`'s lease is over.
        async fn take_over(&self) -> crate::claim::Claim {
            let later = self.now + LEASE + Duration::from_secs(2);
            self.two
                .claim(&self.message.id(), later)
                .await
                .unwrap()
                .expect("the enqueue's lease is over")
        }
    }

    #[tokio::test]
    async fn run_again_it_queues_the_message_once_and_keeps_its_lease() {
        let r = replay();
        let first = r.enqueue().await.expect("claimed for one");
        assert_eq!(first.token, 1);
        assert_eq!(r.enqueue().await, None, "no second claim");
        assert_eq!(r.lease().await, Some(first));
        let stats = r.queue.stats().await.unwrap();
        assert_eq!(
            (stats.messages, stats.recipients.pending),
            (1, 1),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn run_again_after_the_message_was_delivered_it_queues_nothing() {
        let r = replay();
        r.enqueue().await.unwrap();
        let claim = r.take_over().await;
        let delivered = vec![(0, Outcome::Delivered("250 2.0.0 Ok".into()))];
        let at = r.now + LEASE + Duration::from_secs(2);
        let committed = r.two.commit(&claim, delivered, at).await.unwrap();
        assert_eq!(committed, Committed::Removed);

        assert_eq!(r.enqueue().await, None);
        assert_eq!(r.queue.stats().await.unwrap(), QueueStats::default());
        assert!(
            r.queue.load(&r.message.id()).await.is_err(),
            "not queued again"
        );
        assert_eq!(r.lease().await, None, "no lease written back");
    }

    #[tokio::test]
    async fn run_again_while_another_scheduler_holds_it_the_token_stays() {
        let r = replay();
        r.enqueue().await.unwrap();
        let claim = r.take_over().await;
        assert_eq!(claim.lease.token, 2);

        assert_eq!(r.enqueue().await, None);
        assert_eq!(r.lease().await, Some(claim.lease), "two's lease, token 2");
        let stats = r.queue.stats().await.unwrap();
        assert_eq!(
            (stats.messages, stats.recipients.pending),
            (1, 1),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn once_its_record_is_collected_a_queued_message_is_still_found() {
        let r = replay();
        let first = r.enqueue().await.unwrap();
        let after_retention = r.now + crate::model::enqueued::RETENTION + Duration::from_secs(1);
        r.queue
            .collect_enqueue_records(after_retention)
            .await
            .unwrap();
        assert_eq!(r.enqueue().await, None);
        assert_eq!(r.lease().await, Some(first));
        assert_eq!(r.queue.stats().await.unwrap().messages, 1);
    }
}
