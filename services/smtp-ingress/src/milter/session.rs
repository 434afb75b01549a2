//! A milter through one SMTP session: which steps it has been told, telling it the ones it
//! missed in protocol order, and turning any failure into the verdict `tempfail-on-error`
//! says.
//!
//! The protocol wants connect, HELO, MAIL, each RCPT, then DATA, header, body and end of
//! message, in order, on one connection. A milter asked only at some stages (the default is
//! `data`, as in Stalwart) is told the earlier steps when it is first asked — what Stalwart
//! does at DATA — with the facts known then; what it answers to them counts at that stage.

use std::sync::Arc;

use ferrymail_config::model::milter::Milter;
use ferrymail_config::model::stage_rules::Stage;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::codec::{Packet, command, strings};
use super::conversation::Conversation;
use super::error::MilterError;
use super::macros;
use super::message::Message;
use super::negotiation::step;
use super::reply::Response;
use crate::filter::{Action, Filter, FilterRequest, Verdict};
use crate::session::Reply;

/// What the milter has been told of the session and of the open transaction.
#[derive(Debug, Default)]
struct Told {
    /// The HELO name and TLS session the milter was told, if any: a client that says EHLO
    /// again after STARTTLS is told again, with the TLS macros.
    helo: Option<(String, Option<(String, String)>)>,
    mail: bool,
    /// Recipients sent in this transaction, lower-cased.
    recipients: Vec<String>,
    /// It answered "accept" at connect or HELO: it is not asked again this session.
    session_accepted: bool,
    /// It answered "accept" for this transaction: not asked again until the next one.
    transaction_accepted: bool,
}

impl Told {
    /// The transaction is over: the next one starts with MAIL.
    fn end_transaction(&mut self) {
        self.mail = false;
        self.recipients.clear();
        self.transaction_accepted = false;
    }
}

/// One milter for one SMTP session.
pub(crate) struct MilterSession {
    config: Arc<Milter>,
    name: String,
    conversation: Option<Conversation>,
    told: Told,
}

/// The outcome of the steps sent so far: go on, or stop with this answer.
type Flow = Result<Option<Response>, MilterError>;

impl MilterSession {
    /// A milter not yet connected: it connects when first asked.
    pub(crate) fn new(config: Arc<Milter>) -> Self {
        Self {
            name: format!("milter.{}", config.id),
            config,
            conversation: None,
            told: Told::default(),
        }
    }

    /// The verdict when the milter failed: a 4xx, or go on, as `tempfail-on-error` says.
    fn failed(&mut self, stage: Stage, error: &MilterError) -> Verdict {
        tracing::warn!(
            milter = %self.name,
            %stage,
            %error,
            tempfail = self.config.tempfail_on_error,
            "milter failed"
        );
        // The conversation's state is unknown now: the next question starts a new one.
        self.conversation = None;
        self.told = Told::default();
        if self.config.tempfail_on_error {
            Verdict::action(Action::TempFail(Reply::new(
                451,
                "4.3.0",
                "Mail filter temporarily unavailable, try again later",
            )))
        } else {
            Verdict::proceed()
        }
    }

    /// The open conversation, connecting and telling the milter about the connection first.
    async fn connected(&mut self, request: &FilterRequest<'_>) -> Flow {
        if self.conversation.is_some() {
            return Ok(None);
        }
        let mut conversation = Conversation::open(self.config.clone()).await?;
        self.told = Told::default();
        let session = request.session;
        let client = session.client;
        let mut data = strings(&[session
            .client_name
            .clone()
            .unwrap_or_else(|| format!("[{}]", client.ip()))]);
        data.push(if client.is_ipv4() { b'4' } else { b'6' });
        data.extend_from_slice(&client.port().to_be_bytes());
        data.extend(strings(&[client.ip().to_string()]));
        let answer = conversation
            .step(
                macros::connect(session),
                Packet::new(command::CONNECT, data),
                step::NOCONNECT,
                step::NR_CONN,
                self.config.timeout_command,
            )
            .await;
        self.conversation = Some(conversation);
        answer
    }

    /// The conversation, which [`Self::connected`] has opened.
    fn conversation(&mut self) -> Result<&mut Conversation, MilterError> {
        self.conversation.as_mut().ok_or(MilterError::Closed)
    }

    /// HELO, when the client has said it and the milter has not been told it (or was told
    /// it before STARTTLS).
    async fn helo(&mut self, request: &FilterRequest<'_>) -> Flow {
        let Some(name) = request.session.helo.as_deref() else {
            return Ok(None);
        };
        let said = Some((name.to_owned(), request.session.tls.clone()));
        if self.told.helo == said {
            return Ok(None);
        }
        self.told.helo = said;
        let limit = self.config.timeout_command;
        let packet = Packet::new(command::HELO, strings(&[name]));
        self.conversation()?
            .step(
                macros::helo(request.session),
                packet,
                step::NOHELO,
                step::NR_HELO,
                limit,
            )
            .await
    }

    /// MAIL, once per transaction.
    async fn mail(&mut self, request: &FilterRequest<'_>) -> Flow {
        let Some(transaction) = request.transaction.filter(|_| !self.told.mail) else {
            return Ok(None);
        };
        self.told.mail = true;
        let mut args = vec![format!("<{}>", transaction.sender)];
        args.extend(transaction.sender_params.iter().cloned());
        let limit = self.config.timeout_command;
        self.conversation()?
            .step(
                macros::mail(request.session, transaction),
                Packet::new(command::MAIL, strings(&args)),
                step::NOMAIL,
                step::NR_MAIL,
                limit,
            )
            .await
    }

    /// One RCPT, unless already sent in this transaction.
    async fn rcpt(&mut self, address: &str, params: &[String]) -> Flow {
        let key = address.to_lowercase();
        if self.told.recipients.contains(&key) {
            return Ok(None);
        }
        self.told.recipients.push(key);
        let mut args = vec![format!("<{address}>")];
        args.extend(params.iter().cloned());
        let limit = self.config.timeout_command;
        self.conversation()?
            .step(
                macros::rcpt(address),
                Packet::new(command::RCPT, strings(&args)),
                step::NORCPT,
                step::NR_RCPT,
                limit,
            )
            .await
    }

    /// The recipients accepted so far, then the one asked about.
    async fn recipients(&mut self, request: &FilterRequest<'_>) -> Flow {
        for address in request
            .transaction
            .map(|t| t.recipients.as_slice())
            .unwrap_or_default()
        {
            let answer = self.rcpt(address, &[]).await?;
            if is_stop(&answer) {
                return Ok(answer);
            }
        }
        match request.recipient {
            Some((address, params)) => self.rcpt(address, params).await,
            None => Ok(None),
        }
    }

    /// DATA, the header fields, the end of header, the body and the end of message.
    async fn message(
        &mut self,
        request: &FilterRequest<'_>,
        raw: &[u8],
    ) -> Result<Verdict, MilterError> {
        let Some(transaction) = request.transaction else {
            return Err(MilterError::Malformed(
                "a message without a transaction".into(),
            ));
        };
        let limit = self.config.timeout_command;
        let data_limit = self.config.timeout_data;
        let conversation = self.conversation()?;
        let options = conversation.options;
        let message = Message::split(raw);
        let mut flow = None;
        if options.version >= 6 {
            flow = conversation
                .step(
                    macros::message(command::DATA, transaction),
                    Packet::new(command::DATA, Vec::new()),
                    step::NODATA,
                    step::NR_DATA,
                    limit,
                )
                .await?;
        }
        if !options.has(step::NOHDRS) {
            for (name, value) in message.fields(options.has(step::HDR_LEADSPC)) {
                if is_stop(&flow) {
                    break;
                }
                let packet = Packet::new(command::HEADER, strings(&[name, value]));
                flow = conversation
                    .step(None, packet, 0, step::NR_HDR, limit)
                    .await?;
            }
        }
        if !is_stop(&flow) {
            flow = conversation
                .step(
                    macros::message(command::EOH, transaction),
                    Packet::new(command::EOH, Vec::new()),
                    step::NOEOH,
                    step::NR_EOH,
                    data_limit,
                )
                .await?;
        }
        if !is_stop(&flow) {
            flow = conversation.body(message.body).await?;
        }
        if let Some(answer) = flow.filter(|a| !matches!(a, Response::Continue)) {
            // The milter decided before the end of the message: it is told the message is
            // over, as Postfix does, so the next one starts clean.
            conversation
                .send(&Packet::new(command::ABORT, Vec::new()))
                .await?;
            return answer.verdict();
        }
        conversation
            .end_of_message(macros::message(command::BODYEOB, transaction))
            .await
    }

    /// Every step up to the stage of `request`, in protocol order.
    async fn converse(&mut self, request: &FilterRequest<'_>) -> Result<Verdict, MilterError> {
        let stage = request.stage;
        let at_least = |s: Stage| rank(stage) >= rank(s);
        let mut answer = self.connected(request).await?;
        if !is_stop(&answer) && at_least(Stage::Ehlo) {
            answer = self.helo(request).await?;
        }
        if !is_stop(&answer) && at_least(Stage::Mail) {
            answer = self.mail(request).await?;
        }
        if !is_stop(&answer) && at_least(Stage::Rcpt) {
            answer = self.recipients(request).await?;
        }
        if !is_stop(&answer)
            && stage == Stage::Data
            && let Some(raw) = request.message
        {
            let verdict = self.message(request, raw).await?;
            // The milter is done with this message; the next one starts with MAIL.
            self.told.end_transaction();
            return Ok(verdict);
        }
        match answer {
            Some(answer) => answer.verdict(),
            None => Ok(Verdict::proceed()),
        }
    }

    /// Remembers an "accept" for what it covers.
    fn note_accept(&mut self, stage: Stage, verdict: &Verdict) {
        if matches!(verdict.action, Action::Accept) {
            if rank(stage) <= rank(Stage::Ehlo) {
                self.told.session_accepted = true;
            } else {
                self.told.transaction_accepted = true;
            }
        }
    }

    async fn check_inner(&mut self, request: &FilterRequest<'_>) -> Verdict {
        let covered = self.told.session_accepted
            || (self.told.transaction_accepted && rank(request.stage) >= rank(Stage::Mail));
        if covered {
            return Verdict::proceed();
        }
        match self.converse(request).await {
            Ok(verdict) => {
                self.note_accept(request.stage, &verdict);
                verdict
            }
            Err(error) => self.failed(request.stage, &error),
        }
    }

    async fn abort_inner(&mut self) {
        let open = self.told.mail;
        self.told.end_transaction();
        if !open {
            return;
        }
        if let Some(conversation) = self.conversation.as_mut()
            && let Err(error) = conversation
                .send(&Packet::new(command::ABORT, Vec::new()))
                .await
        {
            tracing::debug!(milter = %self.name, %error, "milter abort failed");
            self.conversation = None;
        }
    }

    async fn close_inner(&mut self) {
        if let Some(mut conversation) = self.conversation.take() {
            let _ = conversation
                .send(&Packet::new(command::QUIT, Vec::new()))
                .await;
        }
    }
}

/// Whether an answer ends the steps of this question (anything but continue).
fn is_stop(answer: &Option<Response>) -> bool {
    answer
        .as_ref()
        .is_some_and(|a| !matches!(a, Response::Continue))
}

/// The order of the stages in a session.
fn rank(stage: Stage) -> u8 {
    match stage {
        Stage::Connect => 0,
        Stage::Ehlo => 1,
        Stage::Mail => 2,
        Stage::Rcpt => 3,
        Stage::Data => 4,
    }
}

impl Filter for MilterSession {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, stage: Stage) -> bool {
        self.config.stages.contains(&stage)
    }

    fn check<'a>(&'a mut self, request: &'a FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
        self.check_inner(request).boxed()
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        self.abort_inner().boxed()
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.close_inner().boxed()
    }
}
