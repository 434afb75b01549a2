//! DATA and BDAT: the body streams to `Queue.enqueue` while it arrives, and `250` is sent
//! only once the queue has made the message durable.
//!
//! Memory bound: at most `BODY_QUEUE` chunks of at most 64 KiB (one socket read) wait between
//! the session and the queue, so a session holds about 0.5 MiB of a message whatever its size,
//! plus what message authentication keeps: the header section for verification (at most
//! `message_auth::MAX_HEADER`), or the whole message for signing (at most
//! `message_auth::MAX_COPY`). A message that milters or MTA hooks must see whole is held until
//! they have answered (see `held_message`), up to the message size limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymail_config::model::stage_rules::Stage;
use ferrymail_rpc::queue::{BodyError, BodyPart, BodyStream, Envelope, QueueError, QueueId};
use ferrymail_telemetry::LogLimit;
use futures::StreamExt;
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, Span};

use super::deadlines::Transfer;
use super::forged_results::ForgedResultsFilter;
use super::reply::Reply;
use super::rules::CommandValues;
use super::{End, Flow, Session, Transaction};
use crate::filter::pipeline::Fate;
use crate::message_auth::PendingMessage;
use crate::received::received_header;

/// Chunks in flight between a session and the queue.
const BODY_QUEUE: usize = 8;

/// While the queue cannot take messages (its store is full, say), every message would log
/// the same failure: one line per 10 s says so, with the count left out.
static QUEUE_FAILURES: LogLimit = LogLimit::new(Duration::from_secs(10));

/// The enqueue of a message, its body streamed while it arrives.
pub(crate) struct QueueUpload {
    sender: Option<mpsc::Sender<Result<BodyPart, BodyError>>>,
    /// Set once the whole message was received: only then does the end of the channel mean
    /// the end of the message.
    complete: Arc<AtomicBool>,
    task: JoinHandle<Result<QueueId, QueueError>>,
}

/// Where the client's bytes go.
pub(crate) enum Destination {
    /// To the queue, as they arrive.
    Queue(QueueUpload),
    /// Kept whole for the data-stage filters: the queue hears of the message once they agree.
    Held(Box<HeldMessage>),
    /// Nowhere: a filter discarded the message before it came; it keeps the id it is
    /// answered with.
    Discarded(QueueId),
}

/// The message and its envelope, waiting for the filters.
pub(crate) struct HeldMessage {
    pub(crate) transaction: Transaction,
    pub(crate) queue_id: QueueId,
    /// The message so far: this server's `Received` field, then the client's bytes.
    pub(crate) bytes: Vec<u8>,
    /// This server's `Received` field, which starts `bytes`.
    pub(crate) received: Vec<u8>,
}

impl HeldMessage {
    /// Nothing received yet of `transaction`'s message, to be queued as `queue_id`.
    pub(crate) fn new(transaction: Transaction, queue_id: QueueId) -> Self {
        Self {
            transaction,
            queue_id,
            bytes: Vec::new(),
            received: Vec::new(),
        }
    }
}

/// A message body on its way to the queue.
pub(crate) struct Upload {
    pub(crate) destination: Destination,
    pub(crate) size: u64,
    too_large: bool,
    recipients: usize,
    started: Instant,
    /// The client's pace, for `session.data.min-rate`.
    pub(crate) transfer: Transfer,
    /// What message authentication needs at the end; `None` until the client's data starts.
    pub(crate) pending: Option<PendingMessage>,
    /// Removes forged `Authentication-Results` from the client's header.
    forged: Option<ForgedResultsFilter>,
}

impl Upload {
    /// Sends a piece of the body, unless the message is already over the size limit.
    async fn push(&mut self, chunk: Vec<u8>, limit: u64) {
        if self.too_large || chunk.is_empty() {
            return;
        }
        self.size += chunk.len() as u64;
        if self.size > limit {
            self.too_large = true;
            self.abort("message exceeds the size limit").await;
            return;
        }
        match &mut self.destination {
            Destination::Queue(_) => self.forward(chunk).await,
            Destination::Held(held) => held.bytes.extend_from_slice(&chunk),
            Destination::Discarded(_) => {}
        }
    }

    /// Sends bytes of the message on to the queue, and to message authentication's copy.
    pub(crate) async fn forward(&mut self, chunk: Vec<u8>) {
        if let Some(pending) = &mut self.pending {
            pending.copy.push(&chunk);
        }
        self.send(BodyPart::Chunk(Bytes::from(chunk))).await;
    }

    /// The client's next bytes, without the forged results of its header.
    fn filtered(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        match &mut self.forged {
            Some(filter) => filter.filter(chunk),
            None => chunk,
        }
    }

    /// Passes on what the header filter still holds, at the end of the message.
    async fn end_filter(&mut self, limit: u64) {
        let Some(mut filter) = self.forged.take() else {
            return;
        };
        let rest = filter.finish();
        self.push(rest, limit).await;
        if filter.removed() > 0 {
            tracing::info!(
                removed = filter.removed(),
                "removed Authentication-Results fields claiming to be ours"
            );
        }
    }

    /// Adds header fields before the message, once its body is complete (they are delivered
    /// ahead of everything pushed); at most [`ferrymail_rpc::queue::MAX_PREPEND`] bytes.
    pub(crate) async fn prepend(&mut self, headers: Vec<u8>) {
        if !self.too_large && !headers.is_empty() {
            self.send(BodyPart::Prepend(Bytes::from(headers))).await;
        }
    }

    async fn send(&mut self, part: BodyPart) {
        let Destination::Queue(queue) = &mut self.destination else {
            return;
        };
        if let Some(sender) = &queue.sender
            && sender.send(Ok(part)).await.is_err()
        {
            // The queue gave up early; its error is read at the end.
            queue.sender = None;
        }
    }

    /// Abandons the upload: the queue commits nothing.
    pub(crate) async fn abort(&mut self, reason: &str) {
        match &mut self.destination {
            Destination::Queue(queue) => {
                if let Some(sender) = queue.sender.take() {
                    let _ = sender.send(Err(BodyError::new(reason))).await;
                }
            }
            Destination::Held(held) => held.bytes = Vec::new(),
            Destination::Discarded(_) => {}
        }
    }

    /// Ends the body and waits for the queue's answer.
    async fn complete(&mut self) -> Result<Result<QueueId, QueueError>, String> {
        let Destination::Queue(queue) = &mut self.destination else {
            return Err("the message never reached the queue".to_owned());
        };
        // Closing the channel ends the body: the queue commits and answers.
        queue.complete.store(true, Ordering::Release);
        drop(queue.sender.take());
        (&mut queue.task).await.map_err(|e| e.to_string())
    }
}

impl Session {
    /// Starts the enqueue of `transaction`'s message as `queue_id`, on hold for `quarantine`.
    pub(crate) fn start_upload(
        &self,
        transaction: &Transaction,
        queue_id: QueueId,
        quarantine: Option<String>,
    ) -> QueueUpload {
        let (sender, receiver) = mpsc::channel(BODY_QUEUE);
        let p = &transaction.params;
        let envelope = Envelope {
            sender: transaction.sender.clone(),
            recipients: transaction.recipients.clone(),
            ret: p.ret,
            envid: p.envid.clone(),
            declared_size: p.declared_size,
            priority: p.priority,
            hold_until: p.hold_until,
            requiretls: p.requiretls,
            smtputf8: p.smtputf8,
            body_type: p.body_type,
            client_ip: Some(self.peer.ip()),
            helo: self.helo.clone().unwrap_or_default(),
            authenticated_as: self.authenticated.clone(),
            // Later delivery attempts, wherever they run, join the session's trace.
            trace_parent: ferrymail_telemetry::traceparent(&Span::current()),
            queue_id: Some(queue_id),
            quarantine,
        };
        let queue = self.shared.queue.clone();
        // An upload dropped unfinished (QUIT or a disconnect between BDAT chunks, a session
        // that ends any other way) closes the channel too: the queue must then be told the
        // body is incomplete, or it would commit a truncated message nobody acknowledged.
        let complete = Arc::new(AtomicBool::new(false));
        let finished = complete.clone();
        let cut = futures::stream::once(async move {
            (!finished.load(Ordering::Acquire)).then(|| {
                Err(BodyError::new(
                    "the session ended before the end of the message",
                ))
            })
        })
        .filter_map(std::future::ready);
        let body: BodyStream = Box::pin(ReceiverStream::new(receiver).chain(cut));
        let task = tokio::spawn(
            async move { queue.enqueue(envelope, body).await }.instrument(Span::current()),
        );
        QueueUpload {
            sender: Some(sender),
            complete,
            task,
        }
    }

    /// Where the message of `transaction` goes, as the filters decided so far.
    fn destination(&self, transaction: Transaction, queue_id: QueueId) -> Destination {
        let fate = self.filters.as_deref().map(|f| f.fate().clone());
        let held = self
            .filters
            .as_deref()
            .is_some_and(|f| f.wants(Stage::Data));
        match fate.unwrap_or_default() {
            Fate::Discard => Destination::Discarded(queue_id),
            _ if held => Destination::Held(Box::new(HeldMessage::new(transaction, queue_id))),
            Fate::Quarantine(reason) => {
                Destination::Queue(self.start_upload(&transaction, queue_id, Some(reason)))
            }
            Fate::Deliver => Destination::Queue(self.start_upload(&transaction, queue_id, None)),
        }
    }

    /// The transaction, if DATA/BDAT may start now; otherwise the refusal is queued.
    async fn ready_for_data(&mut self) -> Option<Transaction> {
        match &self.transaction {
            None => {
                self.reply(Reply::new(503, "5.5.1", "Need MAIL and RCPT first"));
                return None;
            }
            Some(t) if t.recipients.is_empty() => {
                self.reply(Reply::new(554, "5.5.1", "No valid recipients"));
                return None;
            }
            Some(_) => {}
        }
        // The transaction stays open when refused: the client may RSET or QUIT.
        if self
            .refused_by_rule(Stage::Data, CommandValues::default())
            .await
        {
            return None;
        }
        self.transaction.take()
    }

    /// Starts the upload of a transaction, the `Received` header first.
    async fn begin_upload(&self, transaction: Transaction) -> Upload {
        // Chosen here so that the Received header can name the id the queue will use.
        let queue_id = QueueId::generate(std::time::SystemTime::now());
        let header = self.trace_header(&transaction, &queue_id).into_bytes();
        let pending = PendingMessage {
            copy: self.message_copy(&transaction).await,
            sender: transaction.sender.clone(),
            spf_mail_from: transaction.spf_mail_from.clone(),
        };
        let recipients = transaction.recipients.len();
        let mut upload = Upload {
            destination: self.destination(transaction, queue_id),
            size: 0,
            too_large: false,
            recipients,
            started: Instant::now(),
            transfer: Transfer::default(),
            pending: None,
            forged: None,
        };
        upload.push(header, self.settings.max_message_size).await;
        if let Destination::Held(held) = &mut upload.destination {
            held.received = held.bytes.clone();
        }
        // From here on the client's own bytes come: those message authentication looks at.
        upload.pending = Some(pending);
        upload.forged = Some(ForgedResultsFilter::new(&self.settings.hostname));
        upload
    }

    /// Feeds the body to `upload` until `ingest` says it is complete; a client that goes away
    /// abandons the upload.
    async fn pump(
        &mut self,
        upload: &mut Upload,
        mut ingest: impl FnMut(&mut std::slice::Iter<'_, u8>, &mut Vec<u8>) -> bool,
    ) -> Result<(), End> {
        loop {
            let mut chunk = Vec::new();
            let mut iter = self.pending().iter();
            let done = ingest(&mut iter, &mut chunk);
            let used = self.pending().len() - iter.as_slice().len();
            self.consume(used);
            upload.transfer.received(used, self.last_read);
            let chunk = upload.filtered(chunk);
            upload.push(chunk, self.settings.max_message_size).await;
            if done {
                return Ok(());
            }
            let timeout = self.settings.data_timeout;
            let deadline = upload
                .transfer
                .deadline(self.settings.command_deadline, self.settings.data_min_rate);
            if let Err(end) = self.fill(timeout, deadline).await {
                upload
                    .abort("the client went away during the message body")
                    .await;
                return Err(end);
            }
        }
    }

    pub(super) async fn data(&mut self) -> Result<Flow, End> {
        let Some(transaction) = self.ready_for_data().await else {
            return Ok(Flow::Continue);
        };
        self.reply(Reply::new(
            354,
            "",
            "Start mail input; end with <CRLF>.<CRLF>",
        ));
        self.flush().await?;
        let mut upload = self.begin_upload(transaction).await;
        let mut receiver = DataReceiver::new();
        self.pump(&mut upload, |bytes, chunk| receiver.ingest(bytes, chunk))
            .await?;
        self.finish(upload).await;
        Ok(Flow::Continue)
    }

    pub(super) async fn bdat(&mut self, chunk_size: usize, is_last: bool) -> Result<Flow, End> {
        let mut upload = match self.bdat.take() {
            Some(upload) => upload,
            None => match self.ready_for_data().await {
                Some(transaction) => self.begin_upload(transaction).await,
                None => {
                    // The chunk still arrives and must be read past to stay in step.
                    self.skip(chunk_size).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        // The chunk follows its command at once: the transfer is under way.
        upload.transfer.start(self.last_read);
        let mut receiver = BdatReceiver::new(chunk_size, is_last);
        self.pump(&mut upload, |bytes, chunk| receiver.ingest(bytes, chunk))
            .await?;
        if is_last {
            self.finish(upload).await;
        } else {
            self.bdat = Some(upload);
            self.reply(Reply::new(
                250,
                "2.0.0",
                format!("{chunk_size} octets received"),
            ));
        }
        Ok(Flow::Continue)
    }

    async fn skip(&mut self, mut left: usize) -> Result<(), End> {
        // A refused chunk is read as slowly as an accepted one may be, and no slower.
        let mut transfer = Transfer::default();
        transfer.start(self.last_read);
        loop {
            let n = left.min(self.pending().len());
            self.consume(n);
            transfer.received(n, self.last_read);
            left -= n;
            if left == 0 {
                return Ok(());
            }
            let timeout = self.settings.data_timeout;
            let deadline =
                transfer.deadline(self.settings.command_deadline, self.settings.data_min_rate);
            self.fill(timeout, deadline).await?;
        }
    }

    /// Abandons a BDAT transfer in progress (RSET, a new greeting).
    pub(crate) async fn abandon_bdat(&mut self) {
        if let Some(mut upload) = self.bdat.take() {
            upload.abort("transaction reset").await;
        }
    }

    fn trace_header(&self, transaction: &Transaction, queue_id: &QueueId) -> String {
        received_header(
            &self.settings.hostname,
            self.helo.as_deref().unwrap_or("unknown"),
            self.peer.ip(),
            self.listener.lmtp,
            self.esmtp,
            self.authenticated.is_some(),
            self.stream.tls_details().as_deref(),
            (transaction.recipients.len() == 1).then(|| transaction.recipients[0].address.as_str()),
            queue_id.as_str(),
        )
    }

    /// Adds the message authentication headers before the body, or refuses the message as a
    /// strict check asks (the upload is then abandoned).
    async fn authenticate(&mut self, upload: &mut Upload) -> Option<Reply> {
        let mut pending = upload.pending.take()?;
        pending.copy.finish();
        match self.authenticate_message(&pending).await {
            Ok(authenticated) => {
                upload.prepend(authenticated.headers).await;
                if let Some(dmarc) = authenticated.dmarc {
                    upload.send(BodyPart::Dmarc(Box::new(dmarc))).await;
                }
                None
            }
            Err(refusal) => {
                upload.abort("refused by message authentication").await;
                tracing::info!(client = %self.peer.ip(), sender = %pending.sender, reply = %refusal.0.trim_end(), "message refused by message authentication");
                Some(refusal)
            }
        }
    }

    async fn finish(&mut self, mut upload: Upload) {
        upload.end_filter(self.settings.max_message_size).await;
        let reply = self.conclude(&mut upload).await;
        self.shared.metrics.stage("data", upload.started.elapsed());
        // LMTP answers once per accepted recipient; one queue entry means one answer for all.
        let times = if self.listener.lmtp {
            upload.recipients
        } else {
            1
        };
        for _ in 0..times {
            self.reply(Reply(reply.0.clone()));
        }
    }

    /// The answer to a whole message: queued (once durable), discarded, or refused.
    async fn conclude(&mut self, upload: &mut Upload) -> Reply {
        if upload.too_large {
            upload.abort("message exceeds the size limit").await;
            self.end_filtered_transaction(true).await;
            self.shared.metrics.rejected("size");
            return Reply::new(552, "5.3.4", "Message too large");
        }
        if let Some(reply) = self.release_held(upload).await {
            return reply;
        }
        if let Destination::Discarded(id) = &upload.destination {
            let id = id.clone();
            self.end_filtered_transaction(false).await;
            return self.discarded(&id);
        }
        if let Some(refusal) = self.authenticate(upload).await {
            self.end_filtered_transaction(true).await;
            self.shared.metrics.rejected("auth");
            return refusal;
        }
        let result = upload.complete().await;
        self.end_filtered_transaction(false).await;
        match result {
            Ok(Ok(id)) => {
                self.messages += 1;
                self.shared.metrics.received(upload.size);
                let trace_id = ferrymail_telemetry::trace_id(&Span::current());
                tracing::info!(queue_id = %id, trace_id, client = %self.peer.ip(), size = upload.size, recipients = upload.recipients, "message queued");
                Reply::new(250, "2.0.0", format!("Message queued as {id}"))
            }
            Ok(Err(QueueError::QuotaExceeded(why))) => {
                self.shared.metrics.rejected("quota");
                tracing::warn!(client = %self.peer.ip(), %why, "queue quota exceeded");
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
            }
            Ok(Err(error)) => {
                self.shared.metrics.rejected("temporary");
                if let Some(left_out) = QUEUE_FAILURES.admit() {
                    tracing::error!(client = %self.peer.ip(), %error, left_out, "the queue did not take the message; answering 451");
                }
                Reply::new(
                    451,
                    "4.3.0",
                    "Temporary failure queueing the message, try again later",
                )
            }
            Err(error) => {
                self.shared.metrics.rejected("temporary");
                if let Some(left_out) = QUEUE_FAILURES.admit() {
                    tracing::error!(client = %self.peer.ip(), %error, left_out, "enqueue task failed; answering 451");
                }
                Reply::new(
                    451,
                    "4.3.0",
                    "Temporary failure queueing the message, try again later",
                )
            }
        }
    }

    /// The answer to a message a filter discarded: the client hears what it would have of
    /// a queued one, as milters mean it to.
    pub(crate) fn discarded(&mut self, id: &QueueId) -> Reply {
        self.messages += 1;
        tracing::info!(queue_id = %id, client = %self.peer.ip(), "message discarded by a filter");
        Reply::new(250, "2.0.0", format!("Message queued as {id}"))
    }
}
