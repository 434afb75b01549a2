//! The queue model on the embedded store: enqueue, the due index, the admin calls and their
//! counters, under retried closures and under concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

mod admin;
mod concurrency;
mod due_index;
mod enqueue;
mod hold;
mod message_id;
mod pauses;
mod proposed_id;
mod quota;
mod retried_closures;
