//! queue-scheduler: the durable queue shared by every scheduler, and outbound delivery.
//!
//! It will own the queue in the store, serve the `Queue` gRPC service and deliver over
//! SMTP/LMTP with retries, bounces and throttles. None of that is built yet: the role
//! starts, serves its admin endpoints and says so.

/// What this role cannot do yet; shown at start-up and in `/readyz`.
pub const NOT_BUILT: &str =
    "queueing and delivery are not implemented yet; the Queue service answers UNIMPLEMENTED";
