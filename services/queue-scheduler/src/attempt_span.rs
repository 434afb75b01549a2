//! The span of one delivery attempt, in the message's own trace.
//!
//! An attempt is a child of the context stored with the message at enqueue (its
//! `trace_parent`), not a link: every attempt, by whichever scheduler and however late, lands
//! in the one trace of the message, next to its SMTP session and RCPT lookups. A message queued
//! without a context (trace export was off when it arrived) gets a new trace per attempt.

use ferrymail_telemetry::{set_stored_parent, trace_id};
use tracing::Span;
use tracing::field::Empty;

use crate::claim::Claim;

/// The span of the attempt of `claim` by scheduler `owner`; it carries `queue_id` and, when
/// exported, `trace_id`, so every log line of the attempt names both.
pub(crate) fn attempt_span(claim: &Claim, owner: &str) -> Span {
    let record = &claim.message.record;
    let span = tracing::info_span!(
        "queue.attempt",
        queue_id = %record.id,
        scheduler = owner,
        trace_id = Empty,
    );
    set_stored_parent(&span, record.envelope.trace_parent.as_deref());
    if let Some(id) = trace_id(&span) {
        span.record("trace_id", id);
    }
    span
}
