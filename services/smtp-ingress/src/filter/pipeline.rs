//! Running a session's filters in order at each stage, and what they decided about the
//! transaction.

use ferrymail_config::model::stage_rules::Stage;

use super::message_edit::EditableMessage;
use super::{Action, Filter, FilterRequest, Modification, SessionFacts, TransactionFacts, Verdict};
use crate::Shared;
use crate::metrics::IngressMetrics;
use crate::session::Reply;
use crate::settings::Settings;

/// The filters of one session, in the order they are asked: milters by id, then MTA hooks
/// by id.
pub(crate) fn session_filters(shared: &Shared, settings: &Settings) -> Vec<Box<dyn Filter>> {
    let mut filters = crate::milter::session_milters(settings);
    filters.extend(crate::hook::session_hooks(shared, settings));
    filters
}

/// What becomes of the open transaction's message once it is received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Queued for delivery.
    #[default]
    Deliver,
    /// Answered as accepted, and dropped.
    Discard,
    /// Queued on hold, for this reason.
    Quarantine(String),
}

/// What the filters decided at a stage before the message.
#[derive(Debug)]
pub(crate) enum StageOutcome {
    /// Go on, applying these envelope modifications in order.
    Proceed(Vec<Modification>),
    /// Answer this instead.
    Refuse(Reply),
    /// At RCPT: answer as if accepted, without adding the recipient.
    DropRecipient,
}

/// What the filters decided about a received message.
#[derive(Debug)]
pub(crate) enum DataOutcome {
    /// Queue (or discard, or quarantine, as [`Filters::fate`] says) the message as edited,
    /// with the envelope changed by these modifications in order.
    Proceed {
        message: Vec<u8>,
        envelope: Vec<Modification>,
    },
    /// Answer this instead; nothing is queued.
    Refuse(Reply),
}

/// A session's filters and their decisions about the open transaction.
pub(crate) struct Filters {
    filters: Vec<Box<dyn Filter>>,
    /// Per filter: it said `accept` for this transaction and is not asked again until the
    /// next one.
    accepted: Vec<bool>,
    /// Per filter: it said `discard` or `accept` at connect or EHLO, which holds for the session.
    session_fate: Fate,
    /// The open transaction's fate.
    fate: Fate,
    metrics: IngressMetrics,
}

impl Filters {
    /// `filters`, none of which has been asked anything yet.
    pub(crate) fn new(filters: Vec<Box<dyn Filter>>, metrics: IngressMetrics) -> Self {
        let accepted = vec![false; filters.len()];
        Self {
            filters,
            accepted,
            session_fate: Fate::Deliver,
            fate: Fate::Deliver,
            metrics,
        }
    }

    /// Asks filter `i` and counts its answer.
    async fn ask(&mut self, i: usize, request: &FilterRequest<'_>) -> Verdict {
        let verdict = self.filters[i].check(request).await;
        let action = match verdict.action {
            Action::Continue => "continue",
            Action::Accept => "accept",
            Action::Reject(_) => "reject",
            Action::TempFail(_) => "tempfail",
            Action::Discard => "discard",
            Action::Quarantine(_) => "quarantine",
        };
        let filter = self.filters[i].name();
        self.metrics
            .filter_action(filter, request.stage.as_str(), action);
        verdict
    }

    /// Whether any filter is asked at `stage`: when none is, the session pays nothing.
    pub(crate) fn wants(&self, stage: Stage) -> bool {
        self.filters.iter().any(|f| f.wants(stage))
    }

    /// The open transaction's fate.
    pub(crate) fn fate(&self) -> &Fate {
        &self.fate
    }

    /// Asks the filters about a stage before the message; the first refusal ends the
    /// round. Header and body modifications are not honoured before the message.
    pub(crate) async fn check(&mut self, request: &FilterRequest<'_>) -> StageOutcome {
        let mut envelope = Vec::new();
        for i in 0..self.filters.len() {
            if self.accepted[i] || !self.filters[i].wants(request.stage) {
                continue;
            }
            let verdict = self.ask(i, request).await;
            let name = self.filters[i].name().to_owned();
            match verdict.action {
                Action::Continue => {}
                Action::Accept => self.accepted[i] = true,
                Action::Reject(reply) | Action::TempFail(reply) => {
                    log_refusal(&name, request.stage, &reply);
                    return StageOutcome::Refuse(reply);
                }
                Action::Discard if request.stage == Stage::Rcpt => {
                    tracing::info!(filter = name, "recipient discarded by a filter");
                    return StageOutcome::DropRecipient;
                }
                Action::Discard => self.set_fate(request.stage, Fate::Discard, &name),
                Action::Quarantine(reason) => {
                    self.set_fate(request.stage, Fate::Quarantine(reason), &name);
                }
            }
            for modification in verdict.modifications {
                if is_envelope(&modification) && request.stage != Stage::Connect {
                    envelope.push(modification);
                } else {
                    tracing::debug!(filter = name, stage = ?request.stage, ?modification, "modification ignored before the message");
                }
            }
        }
        StageOutcome::Proceed(envelope)
    }

    /// Asks the filters about the received `message`, each seeing it as the ones before it
    /// left it. `transaction` is the envelope so far; the request's own is replaced.
    pub(crate) async fn check_message(
        &mut self,
        session: &SessionFacts,
        transaction: &TransactionFacts,
        message: Vec<u8>,
    ) -> DataOutcome {
        let mut transaction = transaction.clone();
        let mut message = message;
        let mut envelope = Vec::new();
        for i in 0..self.filters.len() {
            if self.accepted[i] || !self.filters[i].wants(Stage::Data) {
                continue;
            }
            let request = FilterRequest {
                stage: Stage::Data,
                session,
                transaction: Some(&transaction),
                recipient: None,
                message: Some(&message),
            };
            let verdict = self.ask(i, &request).await;
            let name = self.filters[i].name().to_owned();
            match verdict.action {
                Action::Continue | Action::Accept => {}
                Action::Reject(reply) | Action::TempFail(reply) => {
                    log_refusal(&name, Stage::Data, &reply);
                    return DataOutcome::Refuse(reply);
                }
                Action::Discard => {
                    self.set_fate(Stage::Data, Fate::Discard, &name);
                    // Nothing later filters say can bring the message back.
                    break;
                }
                Action::Quarantine(reason) => {
                    self.set_fate(Stage::Data, Fate::Quarantine(reason), &name);
                }
            }
            if verdict.modifications.is_empty() {
                continue;
            }
            match edit(message, &verdict.modifications) {
                Ok(edited) => message = edited,
                Err(error) => {
                    tracing::warn!(filter = name, %error, "a filter asked for an impossible modification; answering 451");
                    return DataOutcome::Refuse(filter_failure());
                }
            }
            for modification in verdict.modifications {
                if is_envelope(&modification) {
                    apply_to_facts(&mut transaction, &modification);
                    envelope.push(modification);
                }
            }
        }
        DataOutcome::Proceed { message, envelope }
    }

    /// The transaction ended, with or without a message: milters forget it, and the next
    /// one starts with every filter asked again.
    pub(crate) async fn end_transaction(&mut self, aborted: bool) {
        if aborted {
            for filter in &mut self.filters {
                filter.abort().await;
            }
        }
        self.accepted.fill(false);
        self.fate = self.session_fate.clone();
    }

    /// The session ends.
    pub(crate) async fn close(&mut self) {
        for filter in &mut self.filters {
            filter.close().await;
        }
    }

    fn set_fate(&mut self, stage: Stage, fate: Fate, filter: &str) {
        tracing::info!(filter, ?stage, ?fate, "a filter decided the message's fate");
        // A later quarantine does not bring a discarded message back.
        if self.fate != Fate::Discard {
            self.fate = fate.clone();
        }
        if matches!(stage, Stage::Connect | Stage::Ehlo) && self.session_fate != Fate::Discard {
            self.session_fate = fate;
        }
    }
}

/// The reply to a filter that could not be obeyed: a `4xx`, since the fault is not the
/// client's.
pub(crate) fn filter_failure() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "Temporary failure in message filtering, try again later",
    )
}

fn log_refusal(filter: &str, stage: Stage, reply: &Reply) {
    tracing::info!(filter, ?stage, reply = %reply.0.trim_end(), "refused by a filter");
}

fn is_envelope(modification: &Modification) -> bool {
    matches!(
        modification,
        Modification::ChangeSender { .. }
            | Modification::AddRecipient { .. }
            | Modification::DeleteRecipient { .. }
    )
}

/// `message` with the header and body modifications applied, all or none.
fn edit(
    message: Vec<u8>,
    modifications: &[Modification],
) -> Result<Vec<u8>, super::message_edit::EditError> {
    if modifications.iter().all(is_envelope) {
        return Ok(message);
    }
    let mut editable = EditableMessage::parse(&message);
    for modification in modifications {
        editable.apply(modification)?;
    }
    Ok(editable.into_bytes())
}

/// Keeps the facts later filters see in step with an envelope modification.
fn apply_to_facts(facts: &mut TransactionFacts, modification: &Modification) {
    match modification {
        Modification::ChangeSender { address } => facts.sender = address.clone(),
        Modification::AddRecipient { address }
            if !facts
                .recipients
                .iter()
                .any(|r| r.eq_ignore_ascii_case(address)) =>
        {
            facts.recipients.push(address.clone());
        }
        Modification::DeleteRecipient { address } => {
            facts
                .recipients
                .retain(|r| !r.eq_ignore_ascii_case(address));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
