//! The [`QueueService`] contract.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use super::{
    BodyError, BulkReport, BulkRequest, DestinationScope, Destinations, Envelope, ListPage,
    ListRequest, MessageDetail, QueueError, QueueId, QueueStats, Resumed,
};

/// A message body, read as it arrives. An `Err` item means the body will never be complete.
///
/// Chunks come in order; at most one [`BodyPart::Prepend`] and one [`BodyPart::Dmarc`] may
/// follow the last chunk, and no chunk may follow them.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<BodyPart, BodyError>> + Send>>;

/// Largest [`BodyPart::Prepend`]: header fields, not a second body.
pub const MAX_PREPEND: usize = 32 * 1024;

/// One item of a [`BodyStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyPart {
    /// The next bytes of the body.
    Chunk(Bytes),
    /// Header fields known only once the whole body was read (`Authentication-Results`,
    /// `DKIM-Signature`), to be placed before the body; at most [`MAX_PREPEND`] bytes, each
    /// field ending in CRLF.
    Prepend(Bytes),
    /// The message's DMARC evaluation, for the aggregate report of its author domain; known,
    /// as the prepended headers are, only once the whole body was read. It follows the last
    /// chunk, before or after the prepended headers, at most once.
    Dmarc(Box<super::DmarcEvaluation>),
}

impl From<Bytes> for BodyPart {
    fn from(chunk: Bytes) -> Self {
        Self::Chunk(chunk)
    }
}

/// The mail queue.
#[async_trait]
pub trait QueueService: Send + Sync + 'static {
    /// Queues a message, returning once it is durable.
    ///
    /// If `body` yields an error, the enqueue is abandoned, nothing is committed, and the error
    /// is returned (as [`QueueError::Body`] unless something failed first).
    async fn enqueue(&self, envelope: Envelope, body: BodyStream) -> Result<QueueId, QueueError>;

    /// One page of queued messages.
    async fn list(&self, request: ListRequest) -> Result<ListPage, QueueError>;

    /// One message with the state of each recipient.
    async fn get(&self, queue_id: &QueueId) -> Result<MessageDetail, QueueError>;

    /// Schedules `recipients` (all of the message's when empty) for immediate delivery; returns
    /// how many were rescheduled.
    async fn retry(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError>;

    /// Cancels delivery to `recipients` (all of the message's when empty); returns how many were
    /// cancelled.
    async fn cancel(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError>;

    /// Cancels as [`QueueService::cancel`] does, and sends the sender a failure notice for
    /// the cancelled recipients whose NOTIFY allows it. Not every queue can: by default it
    /// answers that it cannot.
    async fn cancel_with_notice(
        &self,
        queue_id: &QueueId,
        recipients: &[String],
    ) -> Result<u32, QueueError> {
        let _ = recipients;
        Err(QueueError::Unavailable(format!(
            "cannot notify the sender of {queue_id} here"
        )))
    }

    /// Totals over the whole queue.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    // Destinations: pause, resume, suspended. Not every queue can pause: by default they
    // answer that they cannot.

    /// Pauses delivery to `scope` for every scheduler; `false` when it already was.
    async fn pause(&self, scope: DestinationScope) -> Result<bool, QueueError> {
        Err(QueueError::Unavailable(format!(
            "cannot pause {scope} here"
        )))
    }

    /// Resumes delivery to `scope`, making the recipients a pause deferred due at once.
    async fn resume(&self, scope: DestinationScope) -> Result<Resumed, QueueError> {
        Err(QueueError::Unavailable(format!(
            "cannot resume {scope} here"
        )))
    }

    /// What is paused, and which destinations are suspended after failed connections.
    async fn destinations(&self) -> Result<Destinations, QueueError> {
        Err(QueueError::Unavailable(
            "no destinations to tell of here".into(),
        ))
    }
    /// Puts a message on hold: no scheduler attempts it until it is released, and it does not
    /// expire meanwhile. Returns false when it was already held.
    async fn hold(&self, queue_id: &QueueId) -> Result<bool, QueueError>;

    /// Releases a held message; returns false when it was not held.
    async fn release(&self, queue_id: &QueueId) -> Result<bool, QueueError>;

    /// Applies a bulk action to the messages its filter selects, up to its limit; the report's
    /// cursor goes on from where it stopped.
    async fn bulk(&self, request: BulkRequest) -> Result<BulkReport, QueueError>;

    /// The queued messages whose `Message-ID` header is `message_id` (angle brackets and ASCII
    /// case do not matter), oldest first; `NotFound` when there is none.
    async fn find_by_message_id(&self, message_id: &str) -> Result<Vec<QueueId>, QueueError>;

    /// Counts the DMARC evaluation of a message refused before it was queued, for its
    /// domain's aggregate report. Not every queue keeps reports: by default it answers that
    /// it cannot.
    async fn record_dmarc(&self, evaluation: super::DmarcEvaluation) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(format!(
            "no DMARC reports of {} kept here",
            evaluation.policy_domain
        )))
    }
}
