//! Client side of Enqueue: the envelope, the body as it is read, cut into chunks, then the end.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::{Stream, StreamExt, future, stream};
use tonic::CancellationHandle;

use super::{BodyError, BodyPart, BodyStream, MAX_PREPEND, dmarc_evaluation};
use crate::proto::{self, enqueue_request::Part};

/// Largest body chunk sent in one gRPC message; larger pieces of the body are split, so no
/// message nears the 4 MB gRPC default limit.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Where the stream leaves the body's error, for the caller to return once the call ends.
pub(crate) type BodyFailure = Arc<OnceLock<BodyError>>;

struct Upload {
    body: BodyStream,
    unsent: Bytes,
    sent: u64,
    /// Headers to send with the end; once set, the body is complete.
    prepend: Option<Bytes>,
    /// The DMARC evaluation to send with the end; once set, the body is complete.
    dmarc: Option<Box<super::DmarcEvaluation>>,
    ended: bool,
    cancel: Option<CancellationHandle>,
    failure: BodyFailure,
}

fn message(part: Part) -> proto::EnqueueRequest {
    proto::EnqueueRequest { part: Some(part) }
}

/// The Enqueue request stream: `envelope`, `body` in chunks of at most [`MAX_CHUNK`], the end.
///
/// When `body` fails, the error goes to `failure` and the call is cancelled (HTTP/2 reset)
/// before any end message: the server sees a broken stream, never a complete message.
pub(crate) fn request_stream(
    envelope: proto::Envelope,
    body: BodyStream,
    cancel: CancellationHandle,
    failure: BodyFailure,
) -> impl Stream<Item = proto::EnqueueRequest> + Send + 'static {
    let upload = Upload {
        body,
        unsent: Bytes::new(),
        sent: 0,
        prepend: None,
        dmarc: None,
        ended: false,
        cancel: Some(cancel),
        failure,
    };
    let rest = stream::unfold(upload, |mut upload| async move {
        loop {
            if upload.ended {
                return None;
            }
            if !upload.unsent.is_empty() {
                let size = upload.unsent.len().min(MAX_CHUNK);
                let chunk = upload.unsent.split_to(size);
                upload.sent += chunk.len() as u64;
                return Some((message(Part::Chunk(chunk)), upload));
            }
            let next = upload.body.next().await.map(|part| upload.accept(part?));
            match next {
                Some(Ok(())) => {}
                None => {
                    upload.ended = true;
                    let end = proto::BodyEnd {
                        size: upload.sent,
                        prepend: upload.prepend.take().unwrap_or_default(),
                        dmarc: upload.dmarc.take().map(|d| dmarc_evaluation::to_wire(*d)),
                    };
                    return Some((message(Part::End(end)), upload));
                }
                Some(Err(error)) => {
                    // Only one error can arrive: this branch never returns.
                    let _ = upload.failure.set(error);
                    if let Some(cancel) = upload.cancel.take() {
                        cancel.cancel();
                    }
                    // Stay pending: the cancellation resets the call, and this stream is
                    // dropped with it. No end message is ever sent for a failed body.
                    return future::pending().await;
                }
            }
        }
    });
    stream::once(future::ready(message(Part::Envelope(envelope)))).chain(rest)
}

impl Upload {
    /// Takes the next part of the body, or says how it breaks [`BodyStream`]'s order.
    fn accept(&mut self, part: BodyPart) -> Result<(), BodyError> {
        let trailer_sent = self.prepend.is_some() || self.dmarc.is_some();
        match part {
            BodyPart::Chunk(_) if trailer_sent => {
                return Err(BodyError::new("body data after the end of the message"));
            }
            BodyPart::Chunk(bytes) => self.unsent = bytes,
            BodyPart::Prepend(_) if self.prepend.is_some() => {
                return Err(BodyError::new("a second set of prepended headers"));
            }
            BodyPart::Dmarc(_) if self.dmarc.is_some() => {
                return Err(BodyError::new("a second DMARC evaluation"));
            }
            BodyPart::Dmarc(evaluation) => self.dmarc = Some(evaluation),
            BodyPart::Prepend(headers) if headers.len() > MAX_PREPEND => {
                return Err(BodyError::new(format!(
                    "{} bytes of prepended headers, more than {MAX_PREPEND}",
                    headers.len()
                )));
            }
            BodyPart::Prepend(headers) => self.prepend = Some(headers),
        }
        Ok(())
    }
}
