//! The queue's stored model: where it lives in the key space (`keys`), the record that a
//! message was enqueued, kept after it is gone (`enqueued`), the records of a message and its
//! recipients (`record`, `stored_message`, `new_message`, `removal`), the due-time index (`due_index`), delivery leases with their fencing tokens (`lease`), the
//! counters (`counters`), quotas and throttles counted in the store (`quota`, `throttle`,
//! with the conditions of their `match` in `condition`), the schedulers' membership
//! (`membership`), paused and dead destinations (`paused`, `dead_destination`) and the MTA-STS policies remembered beside the queue
//! (`mta_sts_policies`), and the outbox of delivery events with its sender lease
//! (`event_outbox`). Each depends only on the store and the files above it here;
//! nothing in the model knows the behaviour that uses it.

pub(crate) mod condition;
pub(crate) mod counters;
pub(crate) mod dead_destination;
pub(crate) mod due_index;
pub(crate) mod enqueued;
pub(crate) mod event_outbox;
pub(crate) mod keys;
pub(crate) mod lease;
pub(crate) mod membership;
pub(crate) mod message_id_index;
pub(crate) mod mta_sts_policies;
pub(crate) mod new_message;
pub(crate) mod paused;
pub(crate) mod queue_id;
pub(crate) mod quota;
pub(crate) mod record;
pub(crate) mod removal;
pub(crate) mod report_rows;
pub(crate) mod stored_message;
pub(crate) mod throttle;
