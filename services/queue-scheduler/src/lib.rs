//! queue-scheduler: the durable queue shared by every scheduler, and (later) outbound delivery.
//!
//! [`Queue`] keeps the queue in the store and implements the `Queue` contract
//! ([`ferrymail_rpc::queue::QueueService`]): enqueue with a streamed body, list, get, retry,
//! cancel and stats. The key layout is described in the (private) `keys` module, the records'
//! encoding in `record`, both next to the code that writes them. Delivery, leases between
//! schedulers, routing, bounces, throttles and quotas are not built yet.

mod cancel;
mod counters;
mod due_index;
mod enqueue;
mod envelope_check;
mod keys;
mod list;
mod message_change;
mod queue_id;
mod record;
mod retry;
mod service;
mod store_failure;
mod stored_message;

pub use due_index::{DueEntry, SHARDS};
pub use envelope_check::{MAX_RECIPIENTS, MAX_TEXT};
pub use list::{DEFAULT_PAGE_SIZE, EXAMINE_LIMIT, MAX_PAGE_SIZE};
pub use queue_id::{InvalidQueueId, MessageId};
pub use record::{CorruptRecord, MessageRecord, RecipientRecord};
pub use service::Queue;
pub use stored_message::StoredMessage;

/// What this role cannot do yet; shown at start-up and in `/readyz`.
pub const NOT_BUILT: &str =
    "outbound delivery is not implemented yet; messages are queued durably but not delivered";
