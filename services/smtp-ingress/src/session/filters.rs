//! The session's side of milters and MTA hooks: what they are told at each stage, and their
//! envelope changes applied to the transaction.

use std::net::{Ipv4Addr, SocketAddr};

use ferrymail_config::model::stage_rules::Stage;
use ferrymail_rpc::queue::{Notify, Recipient};

use super::reply::Reply;
use super::{Session, Transaction};
use crate::address::envelope_address;
use crate::filter::pipeline::{StageOutcome, filter_failure};
use crate::filter::{FilterRequest, Modification, SessionFacts, TransactionFacts};

/// What the filters said about a command before the message.
pub(crate) enum Filtered {
    /// Go on: the command is accepted (envelope changes, if any, are applied).
    Go,
    /// Answer this instead.
    Refused(Reply),
    /// At RCPT: answer as if accepted, without adding the recipient.
    Dropped,
}

impl Session {
    /// What filters are told about the session now.
    pub(crate) fn session_facts(&self) -> SessionFacts {
        SessionFacts {
            client: self.peer,
            local: self
                .stream
                .local_addr()
                .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            client_name: None,
            hostname: self.settings.hostname.clone(),
            listener: self.listener.id.clone(),
            lmtp: self.listener.lmtp,
            helo: self.helo.clone(),
            tls: self.stream.tls_parameters(),
            authenticated_as: self.authenticated.clone(),
            auth_mechanism: None,
        }
    }

    /// Asks the filters about `stage` (before the message), `recipient` at RCPT. Unless they
    /// refuse, the recipient is added to the open transaction, then their envelope changes
    /// are applied.
    pub(crate) async fn filter(&mut self, stage: Stage, recipient: Option<Recipient>) -> Filtered {
        let asked = self.filters.as_deref().is_some_and(|f| f.wants(stage));
        let outcome = if asked {
            self.ask_filters(stage, recipient.as_ref()).await
        } else {
            StageOutcome::Proceed(Vec::new())
        };
        let changes = match outcome {
            StageOutcome::Refuse(reply) => {
                self.shared.metrics.rejected("filter");
                return Filtered::Refused(reply);
            }
            StageOutcome::DropRecipient => return Filtered::Dropped,
            StageOutcome::Proceed(changes) => changes,
        };
        if let Some(recipient) = recipient {
            self.add_recipient(recipient);
        }
        match self.transaction.as_mut() {
            Some(transaction) if !changes.is_empty() => {
                match change_envelope(transaction, &changes) {
                    Ok(()) => Filtered::Go,
                    Err(reply) => Filtered::Refused(reply),
                }
            }
            _ => Filtered::Go,
        }
    }

    async fn ask_filters(&mut self, stage: Stage, recipient: Option<&Recipient>) -> StageOutcome {
        let session = self.session_facts();
        let transaction = self
            .transaction
            .as_ref()
            .map(|t| transaction_facts(t, None));
        let params = recipient.map(rcpt_parameters).unwrap_or_default();
        let request = FilterRequest {
            stage,
            session: &session,
            transaction: transaction.as_ref(),
            recipient: recipient.map(|r| (r.address.as_str(), params.as_slice())),
            message: None,
        };
        match self.filters.as_deref_mut() {
            Some(filters) => filters.check(&request).await,
            None => StageOutcome::Proceed(Vec::new()),
        }
    }

    /// Adds `recipient` to the open transaction, unless it is there already.
    pub(crate) fn add_recipient(&mut self, recipient: Recipient) {
        if let Some(transaction) = self.transaction.as_mut()
            && !transaction
                .recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(&recipient.address))
        {
            transaction.recipients.push(recipient);
        }
    }

    /// The transaction ended (`aborted` without a message): filters forget it.
    pub(crate) async fn end_filtered_transaction(&mut self, aborted: bool) {
        if let Some(filters) = self.filters.as_deref_mut() {
            filters.end_transaction(aborted).await;
        }
    }
}

/// What filters are told about `transaction`.
pub(crate) fn transaction_facts(
    transaction: &Transaction,
    queue_id: Option<String>,
) -> TransactionFacts {
    TransactionFacts {
        sender: transaction.sender.clone(),
        sender_params: transaction.params.as_parameters(),
        recipients: transaction
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect(),
        queue_id,
    }
}

/// Applies the filters' envelope changes to `transaction`, all or none: an address that is
/// not one refuses the message for now (the filter is at fault, not the client).
pub(crate) fn change_envelope(
    transaction: &mut Transaction,
    changes: &[Modification],
) -> Result<(), Reply> {
    let mut valid = Vec::with_capacity(changes.len());
    for change in changes {
        let address = match change {
            Modification::ChangeSender { address } if address.is_empty() => {
                valid.push(change.clone());
                continue;
            }
            Modification::ChangeSender { address } | Modification::AddRecipient { address } => {
                address
            }
            _ => {
                valid.push(change.clone());
                continue;
            }
        };
        let Some(address) = envelope_address(address) else {
            tracing::warn!(
                address = address.as_str(),
                "a filter gave an invalid address; answering 451"
            );
            return Err(filter_failure());
        };
        valid.push(match change {
            Modification::ChangeSender { .. } => Modification::ChangeSender { address },
            _ => Modification::AddRecipient { address },
        });
    }
    for change in &valid {
        match change {
            Modification::ChangeSender { address } => transaction.sender = address.clone(),
            Modification::AddRecipient { address }
                if !transaction
                    .recipients
                    .iter()
                    .any(|r| r.address.eq_ignore_ascii_case(address)) =>
            {
                transaction.recipients.push(Recipient {
                    address: address.clone(),
                    notify: Notify::Default,
                    orcpt: None,
                });
            }
            Modification::DeleteRecipient { address } => transaction
                .recipients
                .retain(|r| !r.address.eq_ignore_ascii_case(address)),
            _ => {}
        }
    }
    Ok(())
}

/// RCPT TO's parameters as the client could have written them.
fn rcpt_parameters(recipient: &Recipient) -> Vec<String> {
    let mut out = Vec::new();
    match recipient.notify {
        Notify::Default => {}
        Notify::Never => out.push("NOTIFY=NEVER".into()),
        Notify::On(on) => {
            let names = [
                (on.success(), "SUCCESS"),
                (on.failure(), "FAILURE"),
                (on.delay(), "DELAY"),
            ];
            let list: Vec<&str> = names
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
            out.push(format!("NOTIFY={}", list.join(",")));
        }
    }
    if let Some(orcpt) = &recipient.orcpt {
        out.push(format!("ORCPT={orcpt}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn transaction() -> Transaction {
        Transaction {
            sender: "a@example.org".into(),
            recipients: vec![Recipient {
                address: "b@example.net".into(),
                notify: Notify::Never,
                orcpt: None,
            }],
            ..Transaction::default()
        }
    }

    #[test]
    fn envelope_changes_apply_in_order() {
        let mut t = transaction();
        let changes = [
            Modification::ChangeSender {
                address: String::new(),
            },
            Modification::AddRecipient {
                address: "c@example.net".into(),
            },
            Modification::AddRecipient {
                address: "C@example.net".into(),
            },
            Modification::DeleteRecipient {
                address: "B@EXAMPLE.NET".into(),
            },
        ];
        change_envelope(&mut t, &changes).unwrap();
        assert_eq!(t.sender, "");
        let addresses: Vec<&str> = t.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addresses, ["c@example.net"]);
    }

    #[test]
    fn an_invalid_address_changes_nothing_and_is_a_4xx() {
        for bad in ["no-at-sign", "a@", "@b", "a b@c"] {
            let mut t = transaction();
            let changes = [
                Modification::DeleteRecipient {
                    address: "b@example.net".into(),
                },
                Modification::AddRecipient {
                    address: bad.into(),
                },
            ];
            let reply = change_envelope(&mut t, &changes).unwrap_err();
            assert!(reply.0.starts_with("451 4.3.0"), "{bad}: {}", reply.0);
            assert_eq!(t.recipients.len(), 1, "{bad}");
        }
        let mut t = transaction();
        let bad_sender = [Modification::ChangeSender {
            address: "not an address".into(),
        }];
        assert!(change_envelope(&mut t, &bad_sender).is_err());
        assert_eq!(t.sender, "a@example.org");
    }

    #[test]
    fn recipient_parameters_are_written_as_a_client_would() {
        let recipient = Recipient {
            address: "b@example.net".into(),
            notify: Notify::On(ferrymail_rpc::queue::NotifyOn::new(true, false, true).unwrap()),
            orcpt: Some("rfc822;b@example.net".into()),
        };
        assert_eq!(
            rcpt_parameters(&recipient),
            ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;b@example.net"]
        );
    }
}
