//! Where a session runs message authentication: SPF at EHLO and MAIL FROM, DKIM, ARC and
//! DMARC (or DKIM signing) at the end of DATA, and the ARC seal of forwarded mail.

use ferrymail_config::model::message_auth::{VerifyMode, VerifyRule};
use ferrymail_rpc::queue::DmarcEvaluation;
use mail_auth::{ArcOutput, AuthenticatedMessage, SpfOutput};

use super::report_evaluation::{Checked, evaluation};
use super::results_header::{Report, results_field, results_value};
use super::verify::{self, Modes};
use super::{HashedMessage, MAX_COPY, MAX_HEADER, MessageCopy, PendingMessage, WholeCopy};
use crate::address::split_address;
use crate::session::Reply;
use crate::session::rules::{CommandValues, ListUnavailable};
use crate::session::{Session, Transaction};

/// Most DKIM signatures (and malformed DKIM-Signature fields) of one message that are
/// checked and reported: each costs a DNS lookup and a line of the header, and a hostile
/// message may carry thousands. Genuine mail carries one to three.
const MAX_SIGNATURES: usize = 10;

/// Keeps the first [`MAX_SIGNATURES`] signatures and signature errors of a message.
fn limit_signatures(mut message: AuthenticatedMessage<'_>) -> AuthenticatedMessage<'_> {
    message.dkim_headers.truncate(MAX_SIGNATURES);
    message.errors.truncate(MAX_SIGNATURES);
    message
}

/// What authentication adds to an accepted message.
pub(crate) struct Authenticated {
    /// Header fields to place before it.
    pub(crate) headers: Vec<u8>,
    /// Its DMARC evaluation, when its author domain asked for aggregate reports and this
    /// server sends them.
    pub(crate) dmarc: Option<DmarcEvaluation>,
}

/// The answer when a rule list choosing a mode cannot be asked.
fn list_unavailable() -> Reply {
    Reply::new(451, "4.4.3", "Directory unavailable, try again later")
}

impl Session {
    /// The mode a verification setting chooses for this session and command.
    async fn verify_mode(
        &self,
        rule: &VerifyRule,
        values: CommandValues<'_>,
    ) -> Result<VerifyMode, Reply> {
        match self.evaluate(&rule.0, values).await {
            Ok(outcome) => Ok(*outcome.value),
            Err(ListUnavailable) => Err(list_unavailable()),
        }
    }

    /// SPF of the HELO name (`auth.spf.verify.ehlo`): the result is kept for the
    /// `Authentication-Results` header; under `strict`, a failure is the reply to EHLO.
    pub(crate) async fn spf_at_helo(&mut self, helo: &str) -> Option<Reply> {
        self.spf_helo = None;
        let settings = self.settings.clone();
        let values = CommandValues {
            helo: Some(helo),
            ..CommandValues::default()
        };
        let mode = match self.verify_mode(&settings.auth.spf_ehlo, values).await {
            Ok(mode) if mode.verifies() => mode,
            Ok(_) => return None,
            Err(reply) => return Some(reply),
        };
        let dns = self.shared.authenticator().dns.clone();
        let spf = verify::spf_helo(&dns, self.peer.ip(), helo, &settings.hostname).await?;
        let refusal = verify::spf_refusal(mode, &spf);
        self.spf_helo = Some(spf);
        refusal
    }

    /// SPF of MAIL FROM (`auth.spf.verify.mail-from`) for unauthenticated clients: the result
    /// for the transaction, or under `strict` the refusal of MAIL FROM.
    pub(crate) async fn spf_at_mail(&self, sender: &str) -> Result<Option<SpfOutput>, Reply> {
        if self.authenticated.is_some() {
            return Ok(None);
        }
        let values = CommandValues {
            sender: Some(sender),
            ..CommandValues::default()
        };
        let mode = self
            .verify_mode(&self.settings.auth.spf_mail_from, values)
            .await?;
        if !mode.verifies() {
            return Ok(None);
        }
        let dns = self.shared.authenticator().dns.clone();
        let helo = self.helo.as_deref().unwrap_or_default();
        let spf =
            verify::spf_mail_from(&dns, self.peer.ip(), helo, &self.settings.hostname, sender)
                .await;
        match verify::spf_refusal(mode, &spf) {
            Some(refusal) => Err(refusal),
            None => Ok(Some(spf)),
        }
    }

    /// What the end of this transaction's message needs kept of it: the whole message when
    /// it may be signed (authenticated), the header section and body hashes when it is
    /// verified (unauthenticated), both when it is forwarded and may be sealed, or nothing.
    pub(crate) async fn message_copy(&self, transaction: &Transaction) -> MessageCopy {
        let auth = &self.settings.auth;
        if self.authenticated.is_some() {
            let signs = auth.dkim_sign.is_some() || !self.shared.authenticator().signers.is_empty();
            return if signs {
                MessageCopy::Whole(WholeCopy::default())
            } else {
                MessageCopy::NotKept
            };
        }
        let verifies = [&auth.dkim_verify, &auth.arc_verify, &auth.dmarc_verify]
            .iter()
            .any(|rule| rule.0.outcomes().any(|mode| mode.verifies()));
        let may_seal = auth.arc_seal.0.outcomes().any(|seal| seal.0.is_some());
        let hashed = || HashedMessage::new(auth.dkim_strict);
        if may_seal && self.forwards(&transaction.recipients).await {
            MessageCopy::Sealable(hashed(), WholeCopy::default())
        } else if verifies {
            MessageCopy::Hashed(hashed())
        } else {
            MessageCopy::NotKept
        }
    }

    /// The header fields to add before a complete message — `Authentication-Results` for
    /// verified mail, `DKIM-Signature` for signed mail — or the refusal `strict` asks for.
    pub(crate) async fn authenticate_message(
        &self,
        pending: &PendingMessage,
    ) -> Result<Authenticated, Reply> {
        if self.authenticated.is_some() {
            return Ok(Authenticated {
                headers: self.sign(pending).await?.into_bytes(),
                dmarc: None,
            });
        }
        self.verify(pending).await
    }

    /// The modes of the end-of-DATA checks for this transaction.
    async fn data_modes(&self, sender: &str) -> Result<Modes, Reply> {
        let auth = &self.settings.auth;
        let values = CommandValues {
            sender: Some(sender),
            ..CommandValues::default()
        };
        Ok(Modes {
            dkim: self.verify_mode(&auth.dkim_verify, values).await?,
            arc: self.verify_mode(&auth.arc_verify, values).await?,
            dmarc: self.verify_mode(&auth.dmarc_verify, values).await?,
        })
    }

    /// Verifies an unauthenticated client's message: its `Authentication-Results` header,
    /// and the DMARC evaluation for the author domain's aggregate report.
    async fn verify(&self, pending: &PendingMessage) -> Result<Authenticated, Reply> {
        let modes = self.data_modes(&pending.sender).await?;
        let helo = self.helo.as_deref().unwrap_or_default();
        let mail_from_domain = split_address(&pending.sender)
            .map(|(_, domain)| domain)
            .unwrap_or_else(|| helo.to_ascii_lowercase());
        let no_spf = SpfOutput::default();
        let spf = pending.spf_mail_from.as_ref().unwrap_or(&no_spf);
        let copy = match &pending.copy {
            MessageCopy::Hashed(hashed) | MessageCopy::Sealable(hashed, _) => Some(hashed),
            MessageCopy::NotKept | MessageCopy::Whole(_) => None,
        };
        let kept = copy.filter(|hashed| !hashed.too_large());
        let message = kept
            .and_then(HashedMessage::authenticated)
            .map(limit_signatures);
        let dns = self.shared.authenticator().dns.clone();
        let outcome = match (&message, kept) {
            (Some(message), _) => {
                Some(verify::verify_message(&dns, message, modes, spf, &mail_from_domain).await)
            }
            // A message without a header section has nothing to verify: no signature, no
            // author domain.
            (None, Some(_)) => Some(verify::Outcome {
                dkim: Vec::new(),
                arc: None,
                dmarc: None,
            }),
            (None, None) => None,
        };
        let refusal = outcome
            .as_ref()
            .and_then(|o| verify::message_refusal(modes, o));
        let refused_by_dmarc = refusal.is_some()
            && outcome
                .as_ref()
                .is_some_and(|o| verify::dmarc_rejects(modes, o));
        let dmarc = outcome
            .as_ref()
            .filter(|_| self.settings.dmarc_reports)
            .and_then(|o| {
                let checked = Checked {
                    dmarc: o.dmarc.as_ref()?,
                    dkim: &o.dkim,
                    spf,
                    mail_from_domain: &mail_from_domain,
                    client_ip: self.peer.ip(),
                    refused: refused_by_dmarc,
                };
                evaluation(&checked)
            });
        if let Some(refusal) = refusal {
            if refused_by_dmarc && let Some(evaluation) = dmarc {
                self.record_refused(evaluation);
            }
            return Err(refusal);
        }
        if pending.copy.too_large() {
            tracing::info!(client = %self.peer.ip(), limit = MAX_HEADER, "header section larger than the verification bound: DKIM, ARC and DMARC not checked");
        }
        let header_from = message.as_ref().map(|m| m.from()).unwrap_or_default();
        let results = results_value(&Report {
            hostname: &self.settings.hostname,
            client_ip: self.peer.ip(),
            helo,
            sender: &pending.sender,
            spf_helo: self.spf_helo.as_ref(),
            spf_mail_from: pending.spf_mail_from.as_ref(),
            modes,
            outcome: outcome.as_ref(),
            header_from,
        });
        let arc = outcome.as_ref().and_then(|o| o.arc.as_ref());
        let seal = self
            .arc_seal(pending, message.as_ref(), arc, &results)
            .await?;
        Ok(Authenticated {
            headers: (seal + &results_field(&results)).into_bytes(),
            dmarc,
        })
    }

    /// Has the queue count the DMARC evaluation of a message refused under its domain's
    /// `p=reject`: the refusal is not held up for it, and a failure is logged.
    fn record_refused(&self, evaluation: DmarcEvaluation) {
        let queue = self.shared.queue.clone();
        tokio::spawn(async move {
            let domain = evaluation.policy_domain.clone();
            if let Err(error) = queue.record_dmarc(evaluation).await {
                tracing::warn!(%domain, %error, "the DMARC evaluation of a refused message was not recorded for the aggregate report");
            }
        });
    }

    /// The ARC set sealing a forwarded message with the signature `auth.arc.seal` names
    /// (empty when it is not sealed): `message` is the message as verified, `arc` its ARC
    /// result when `auth.arc.verify` asked for it, `results` this server's results.
    async fn arc_seal(
        &self,
        pending: &PendingMessage,
        message: Option<&AuthenticatedMessage<'_>>,
        arc: Option<&ArcOutput<'_>>,
        results: &str,
    ) -> Result<String, Reply> {
        let MessageCopy::Sealable(_, whole) = &pending.copy else {
            return Ok(String::new());
        };
        let values = CommandValues {
            sender: Some(&pending.sender),
            ..CommandValues::default()
        };
        let id = match self.evaluate(&self.settings.auth.arc_seal.0, values).await {
            Ok(outcome) => outcome.value.0.clone(),
            Err(ListUnavailable) => return Err(list_unavailable()),
        };
        let Some(id) = id else {
            return Ok(String::new());
        };
        let client = self.peer.ip();
        let Some(raw) = whole.whole() else {
            tracing::warn!(%client, limit = MAX_COPY, signature = %id, "forwarded message larger than the sealing bound: sent without an ARC seal");
            return Ok(String::new());
        };
        let Some(message) = message else {
            tracing::info!(%client, signature = %id, "forwarded message without a header section that could be verified: sent without an ARC seal");
            return Ok(String::new());
        };
        let authenticator = self.shared.authenticator();
        // The chain is verified for the seal's cv= even when its result is not recorded.
        let verified;
        let arc = match arc {
            Some(arc) => arc,
            None => {
                verified = authenticator.dns.verify_arc(message).await;
                &verified
            }
        };
        let Some(sealer) = authenticator.sealers.named(&id) else {
            return Ok(String::new());
        };
        match sealer.seal(raw, results, arc) {
            Ok(set) => Ok(set),
            Err(reason) => {
                tracing::info!(%client, signature = %sealer.id, %reason, "forwarded message sent without an ARC seal");
                Ok(String::new())
            }
        }
    }

    /// Signs an authenticated client's message with the signatures `auth.dkim.sign` chooses.
    async fn sign(&self, pending: &PendingMessage) -> Result<String, Reply> {
        let authenticator = self.shared.authenticator();
        let ids = match &self.settings.auth.dkim_sign {
            Some(rule) => {
                let values = CommandValues {
                    sender: Some(&pending.sender),
                    ..CommandValues::default()
                };
                match self.evaluate(&rule.0, values).await {
                    Ok(outcome) => Some(outcome.value.0.clone()),
                    Err(ListUnavailable) => return Err(list_unavailable()),
                }
            }
            None => None,
        };
        let signers = match &ids {
            Some(ids) => authenticator.signers.named(ids),
            None => split_address(&pending.sender)
                .map(|(_, domain)| authenticator.signers.for_domain(&domain))
                .unwrap_or_default(),
        };
        if signers.is_empty() {
            return Ok(String::new());
        }
        let whole = match &pending.copy {
            MessageCopy::Whole(copy) => copy.whole(),
            MessageCopy::NotKept | MessageCopy::Hashed(_) | MessageCopy::Sealable(..) => None,
        };
        let Some(raw) = whole else {
            tracing::warn!(client = %self.peer.ip(), limit = MAX_COPY, "message larger than the signing bound: sent unsigned");
            return Ok(String::new());
        };
        let mut headers = String::new();
        for signer in signers {
            match signer.sign(raw) {
                Ok(header) => headers.push_str(&header),
                Err(error) => {
                    tracing::warn!(signature = %signer.id, %error, "DKIM signing failed; the message goes without this signature")
                }
            }
        }
        Ok(headers)
    }
}
