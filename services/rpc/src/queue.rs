//! Queue service: the durable mail queue owned by the queue-scheduler role.
//!
//! [`QueueService`] is the contract. The queue-scheduler implements it; `ferrymail all` calls
//! that implementation in-process, split roles call it through [`GrpcQueue`], and a role serving
//! it over gRPC wraps it with [`server`].

mod admin;
mod bulk;
mod bulk_wire;
mod client;
mod convert;
mod destinations;
mod dmarc_evaluation;
mod envelope;
mod error;
mod id;
mod intake;
mod server;
mod service;
mod status;
mod upload;

pub use admin::{
    ListFilter, ListPage, ListRequest, MessageDetail, MessageSummary, QueueStats, RecipientCounts,
    RecipientState, RecipientStatus,
};
pub use bulk::{BulkAction, BulkFilter, BulkReport, BulkRequest};
pub use client::GrpcQueue;
pub use destinations::{
    DestinationScope, Destinations, PausedDestination, Resumed, SuspendedDestination,
};
pub use dmarc_evaluation::{
    DISPOSITIONS, DKIM_RESULTS, DkimEvaluation, DmarcEvaluation, DmarcPolicy, MAX_DKIM_RESULTS,
    MAX_RUA, SPF_RESULTS,
};
pub use envelope::{BodyType, DsnReturn, Envelope, Notify, NotifyOn, Priority, Recipient};
pub use error::{BodyError, QueueError};
pub use id::QueueId;
pub use server::{QueueHandler, server};
pub use service::{BodyPart, BodyStream, MAX_PREPEND, QueueService};
pub use upload::MAX_CHUNK;
