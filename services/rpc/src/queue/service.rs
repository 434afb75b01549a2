//! The [`QueueService`] contract.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use super::{
    BodyError, Envelope, ListPage, ListRequest, MessageDetail, QueueError, QueueId, QueueStats,
};

/// A message body, read as it arrives. An `Err` item means the body will never be complete.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

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

    /// Totals over the whole queue.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}
