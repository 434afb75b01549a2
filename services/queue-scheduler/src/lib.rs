//! queue-scheduler: the durable queue shared by every scheduler, and outbound delivery.
//!
//! [`Queue`] keeps the queue in the store and implements the `Queue` contract
//! ([`ferrymail_rpc::queue::QueueService`]): enqueue with a streamed body, list, get, retry,
//! cancel, hold, release, bulk actions by filter (`bulk`) and stats. The key layout is described in the (private) `keys` module, the records'
//! encoding in `record`, both next to the code that writes them.
//!
//! [`Scheduler`] delivers: it claims due messages under leases with fencing tokens, routes
//! each recipient by `queue.outbound.next-hop`, relays over SMTP or LMTP or delivers to the
//! recipient domains' MX hosts, records the results and reports failures and delays to the
//! sender (`dsn`). Enqueue enforces the queue quotas (`quota`). Schedulers divide the
//! due-index shards through heartbeats (`membership`) and obey shared throttles (`throttle`),
//! pauses an administrator sets (`destinations`) and dead relays and MX addresses
//! (`destination_gate`, kept in the store so that every scheduler skips the same ones).
//! MX delivery applies the MTA-STS policies and DANE TLSA records of recipient domains. A
//! message enqueued through a process with a running scheduler is handed to it at once
//! (`handoff`). Delivery results, holds and cancels are pushed to webhooks as delivery
//! events through an outbox written in the same transactions (`events`).

mod aggregate_report;
mod attempt_span;
mod body_collection;
mod bulk;
mod cancel;
mod claim;
mod claim_release;
mod content;
mod delivery_result;
mod destination_gate;
mod destinations;
mod dmarc_report;
mod dsn;
mod enqueue;
mod envelope_check;
mod events;
mod failure_backoff;
mod find_message_id;
mod handoff;
mod held_body;
mod hold;
mod index_reads;
mod list;
mod message_change;
mod message_id_header;
mod metrics;
mod model;
mod proposed_id;
mod retry;
mod route;
mod scheduler;
mod service;
mod store_failure;
mod tls_report;

pub use body_collection::{COLLECT_EVERY, COLLECT_GRACE, collect_bodies};
pub use bulk::{DEFAULT_BULK_BATCH, DEFAULT_BULK_LIMIT, MAX_BULK_BATCH};
pub use claim::Claim;
pub use delivery_result::Committed;
pub use envelope_check::{MAX_RECIPIENTS, MAX_TEXT};
pub use ferrymail_outbound::Outcome;
pub use ferrymail_outbound::mta_sts::POLICY_PORT as MTA_STS_PORT;
pub use list::{DEFAULT_PAGE_SIZE, EXAMINE_LIMIT, MAX_PAGE_SIZE};
pub use metrics::QueueMetrics;
pub use model::due_index::DueEntry;
pub use model::lease::Lease;
pub use model::membership::assign as assign_shards;
pub use model::queue_id::SHARDS;
pub use model::queue_id::{InvalidQueueId, MessageId};
pub use model::record::{CorruptRecord, MessageRecord, RecipientRecord};
pub use model::stored_message::StoredMessage;
pub use route::{Route, Router};
pub use scheduler::{Scheduler, SchedulerOptions};
pub use service::Queue;
