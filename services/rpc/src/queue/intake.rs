//! Server side of Enqueue: reads the envelope, then hands the rest of the stream to the service
//! as a [`BodyStream`], noting any contract violation so the call fails with it.

use std::sync::{Arc, Mutex, PoisonError};

use futures::stream;
use tonic::{Status, Streaming};

use super::convert::envelope_from_wire;
use super::{BodyError, BodyPart, BodyStream, Envelope, MAX_PREPEND, QueueError, dmarc_evaluation};
use crate::malformed::Malformed;
use crate::proto::{self, enqueue_request::Part};
use crate::status::invalid_request;

/// A contract violation found in the body part of the stream, after the service took it over.
#[derive(Clone, Default)]
pub(crate) struct Violation(Arc<Mutex<Option<Status>>>);

impl Violation {
    /// Records `reason` and returns the error the body stream yields for it.
    fn record(&self, reason: String) -> BodyError {
        let status = QueueError::InvalidArgument(reason.clone()).into();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
        BodyError::new(format!("protocol violation: {reason}"))
    }

    /// The status to answer with, if the stream broke the contract.
    pub(crate) fn take(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Reads the first message, which must carry the envelope, and turns the rest into a body.
pub(crate) async fn open(
    mut incoming: Streaming<proto::EnqueueRequest>,
) -> Result<(Envelope, BodyStream, Violation), Status> {
    let first = incoming.message().await?;
    let envelope = match first.map(|message| message.part) {
        Some(Some(Part::Envelope(envelope))) => {
            envelope_from_wire(envelope).map_err(invalid_request)?
        }
        Some(Some(Part::Chunk(_) | Part::End(_))) => {
            return Err(invalid_request(Malformed(
                "the first Enqueue message must carry the envelope".to_owned(),
            )));
        }
        Some(None) => return Err(invalid_request(Malformed::missing("part"))),
        None => {
            return Err(invalid_request(Malformed(
                "empty Enqueue stream: the envelope is missing".to_owned(),
            )));
        }
    };
    let violation = Violation::default();
    let reader = BodyReader {
        incoming,
        received: 0,
        ended: false,
        trailer: Vec::new(),
        violation: violation.clone(),
    };
    let body = stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_part().await {
            Ok(Some(part)) => Some((Ok(part), Some(reader))),
            Ok(None) => None,
            // Nothing follows an error.
            Err(error) => Some((Err(error), None)),
        }
    });
    Ok((envelope, Box::pin(body), violation))
}

struct BodyReader {
    incoming: Streaming<proto::EnqueueRequest>,
    received: u64,
    /// The end message came and was checked.
    ended: bool,
    /// What the end message carried, still to hand out (last first).
    trailer: Vec<BodyPart>,
    violation: Violation,
}

impl BodyReader {
    /// The next part; `None` once the end message came, matched, and the stream closed.
    async fn next_part(&mut self) -> Result<Option<BodyPart>, BodyError> {
        if self.ended {
            return Ok(self.trailer.pop());
        }
        let message = self.incoming.message().await.map_err(broke_off)?;
        match message.map(|message| message.part) {
            Some(Some(Part::Chunk(chunk))) => {
                self.received += chunk.len() as u64;
                Ok(Some(BodyPart::Chunk(chunk)))
            }
            Some(Some(Part::End(end))) => self.end(end).await,
            Some(Some(Part::Envelope(_))) => Err(self
                .violation
                .record("a second envelope in the Enqueue stream".to_owned())),
            Some(None) => Err(self
                .violation
                .record("an Enqueue message without part".to_owned())),
            // tonic reports a client's cancellation as this plain end of stream: only the end
            // message tells a complete body from a client that went away.
            None => Err(self
                .violation
                .record("the stream ended before the end of the body".to_owned())),
        }
    }
}

impl BodyReader {
    /// Checks the end message and that nothing follows it; the prepended headers, if any, are
    /// the last part.
    async fn end(&mut self, end: proto::BodyEnd) -> Result<Option<BodyPart>, BodyError> {
        if end.size != self.received {
            return Err(self.violation.record(format!(
                "the end message counts {} body bytes, {} arrived",
                end.size, self.received
            )));
        }
        if end.prepend.len() > MAX_PREPEND {
            return Err(self.violation.record(format!(
                "{} bytes of prepended headers, more than {MAX_PREPEND}",
                end.prepend.len()
            )));
        }
        if self.incoming.message().await.map_err(broke_off)?.is_some() {
            return Err(self
                .violation
                .record("a message after the end of the body".to_owned()));
        }
        let dmarc = end
            .dmarc
            .map(dmarc_evaluation::from_wire)
            .transpose()
            .map_err(|malformed| self.violation.record(malformed.0))?;
        self.ended = true;
        if let Some(dmarc) = dmarc {
            self.trailer.push(BodyPart::Dmarc(Box::new(dmarc)));
        }
        if !end.prepend.is_empty() {
            self.trailer.push(BodyPart::Prepend(end.prepend));
        }
        Ok(self.trailer.pop())
    }
}

fn broke_off(status: Status) -> BodyError {
    BodyError::new(format!("the client stream broke off: {}", status.message()))
}
