//! Filters consulted at the SMTP stages — milters and MTA hooks: what a filter is told
//! ([`FilterRequest`]), what it may answer ([`Verdict`]), and the session's side of running
//! them in order ([`pipeline`]) and applying their message edits ([`message_edit`]).
//!
//! A filter never fails from the session's point of view: a filter that is down, slow or
//! answers garbage turns that into a [`Verdict`] itself, as its `tempfail-on-error` says
//! (a `4xx` or [`Action::Continue`]), so a broken filter can never cause a `5xx`.
//! A verdict is whole: a filter that breaks after sending some modifications returns none
//! of them, so a message is never accepted half edited.

pub(crate) mod message_edit;
pub(crate) mod pipeline;
mod request;
mod verdict;

use futures::future::BoxFuture;

use ferrymail_config::model::stage_rules::Stage;

pub(crate) use request::{FilterRequest, SessionFacts, TransactionFacts};
pub(crate) use verdict::{Action, Modification, Verdict};

/// One configured filter, for one SMTP session (a milter keeps its connection for the
/// session; an MTA hook is stateless).
pub(crate) trait Filter: Send + Sync {
    /// `milter.<id>` or `hook.<id>`, for logs and metrics.
    fn name(&self) -> &str;

    /// Whether the filter is consulted at `stage` (its configured `stages`).
    fn wants(&self, stage: Stage) -> bool;

    /// Asks the filter about the stage `request` has reached. At [`Stage::Data`] the whole
    /// message has been received and is in the request.
    fn check<'a>(&'a mut self, request: &'a FilterRequest<'a>) -> BoxFuture<'a, Verdict>;

    /// The transaction ended without a message being accepted (RSET, a refusal, a new
    /// MAIL after a discard): a milter is told to abort.
    fn abort(&mut self) -> BoxFuture<'_, ()>;

    /// The session ends.
    fn close(&mut self) -> BoxFuture<'_, ()>;
}
