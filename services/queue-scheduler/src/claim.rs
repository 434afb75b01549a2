//! A message claimed for delivery: the lease taken, and what the claim read.

use crate::held_body::HeldBody;
use crate::model::lease::Lease;
use crate::model::stored_message::StoredMessage;

/// A message claimed for delivery, as the claim read it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The lease taken.
    pub lease: Lease,
    /// The message and its recipients at claim time.
    pub message: StoredMessage,
    /// The body, when the enqueue that claimed the message handed it over in memory.
    pub(crate) held: Option<HeldBody>,
}
