//! Rule lists evaluated during a session (`session.rcpt.relay`, `session.<stage>.reject`):
//! the first branch whose variable is in its list decides, through the `Directory` service.

use ferrymail_config::model::rules::{ListRef, Rules, Variable};
use ferrymail_config::model::stage_rules::{Decision, Stage};
use ferrymail_rpc::directory::Verdict;

use super::Session;
use super::reply::Reply;
use crate::address::split_address;

/// A list named by a rule could not be asked; the client is told to try again later.
#[derive(Debug)]
pub(crate) struct ListUnavailable;

/// What a rule list decided, and which list made it so (`None`: the `else` value).
pub(crate) struct Outcome<'r, T> {
    pub(crate) value: &'r T,
    pub(crate) list: Option<&'r ListRef>,
}

/// Values a rule may test that come with the command being answered and are not part of the
/// session's state yet; the rest come from the session.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CommandValues<'a> {
    pub(crate) helo: Option<&'a str>,
    pub(crate) sender: Option<&'a str>,
    pub(crate) rcpt: Option<&'a str>,
    pub(crate) rcpt_domain: Option<&'a str>,
}

impl Session {
    /// Evaluates `rules` for this session and command.
    pub(crate) async fn evaluate<'r, T>(
        &self,
        rules: &'r Rules<T>,
        values: CommandValues<'_>,
    ) -> Result<Outcome<'r, T>, ListUnavailable> {
        for branch in &rules.branches {
            let value = self.variable(branch.variable, values);
            // An empty value (null sender, no AUTH) is in no list; a remote list would
            // otherwise be asked about an address that does not exist.
            if value.is_empty() {
                continue;
            }
            let list = branch.list.to_string();
            match self.shared.directory.in_list(&list, &value).await {
                Ok(answer) if answer.verdict == Verdict::Yes => {
                    return Ok(Outcome {
                        value: &branch.then,
                        list: Some(&branch.list),
                    });
                }
                Ok(answer) if answer.verdict == Verdict::No => {}
                Ok(_) => {
                    tracing::warn!(%list, "a rule's list answered with a temporary failure");
                    return Err(ListUnavailable);
                }
                Err(error) => {
                    tracing::warn!(%error, %list, "a rule's list could not be asked");
                    return Err(ListUnavailable);
                }
            }
        }
        Ok(Outcome {
            value: &rules.otherwise,
            list: None,
        })
    }

    /// Queues a refusal; after a 421 the server closes the connection (RFC 5321 §3.8).
    fn refuse(&mut self, reply: Reply) {
        if reply.0.starts_with("421") {
            self.closing = true;
        }
        self.reply(reply);
    }

    /// The value of a rule variable now.
    pub(super) fn variable(&self, variable: Variable, values: CommandValues<'_>) -> String {
        let sender = values
            .sender
            .or_else(|| self.transaction.as_ref().map(|t| t.sender.as_str()))
            .unwrap_or_default();
        match variable {
            Variable::RemoteIp => self.peer.ip().to_string(),
            Variable::HeloDomain => values
                .helo
                .or(self.helo.as_deref())
                .unwrap_or_default()
                .to_string(),
            Variable::Sender => sender.to_string(),
            Variable::SenderDomain => split_address(sender).map(|(_, d)| d).unwrap_or_default(),
            Variable::Rcpt => values.rcpt.unwrap_or_default().to_string(),
            Variable::RcptDomain => values.rcpt_domain.unwrap_or_default().to_string(),
            Variable::AuthenticatedAs => self.authenticated.clone().unwrap_or_default(),
            Variable::Listener => self.listener.id.clone(),
        }
    }

    /// Applies `session.<stage>.reject` to the command being answered (at `Connect`, to the
    /// connection); `true` when it is refused, the reply queued.
    pub(crate) async fn refused_by_rule(
        &mut self,
        stage: Stage,
        values: CommandValues<'_>,
    ) -> bool {
        let settings = self.settings.clone();
        let outcome = match self.evaluate(settings.reject.get(stage), values).await {
            Ok(outcome) => outcome,
            Err(ListUnavailable) => {
                self.shared.metrics.rejected("temporary");
                // Only 220, 421 and 554 may open a session (RFC 5321 §3.1).
                let code = if stage == Stage::Connect { 421 } else { 451 };
                self.refuse(Reply::new(
                    code,
                    "4.4.3",
                    "Directory unavailable, try again later",
                ));
                return true;
            }
        };
        let Decision::Reject(reply) = outcome.value else {
            return false;
        };
        self.shared.metrics.rejected("rule");
        tracing::info!(
            stage = stage.as_str(),
            client = %self.peer.ip(),
            listener = %self.listener.id,
            list = outcome.list.map(ToString::to_string),
            reply = %reply,
            "refused by session.{stage}.reject"
        );
        let code = if stage == Stage::Connect && reply.is_temporary() {
            421
        } else {
            reply.code
        };
        self.refuse(Reply::new(code, &reply.enhanced, &reply.text));
        if stage != Stage::Connect && reply.is_temporary() {
            // A refused command counts against session.errors.total, a 4xx one too
            // (`reply` counts only 5xx).
            self.errors += 1;
        }
        true
    }
}
