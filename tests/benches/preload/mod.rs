//! Messages preloaded into a queue through its API, as smtp-source would have sent them: what
//! the benchmarks that drain a queue share. (A directory module, so that it is not taken for
//! a benchmark of its own.)

use bytes::Bytes;
use ferrymail_e2e::{LOAD_HELO, LOAD_SENDER};
use ferrymail_rpc::queue::{BodyError, BodyStream, Envelope, Recipient};

/// The envelope of a preloaded message to `recipient`.
pub fn preloaded_envelope(recipient: &str) -> Envelope {
    Envelope {
        sender: LOAD_SENDER.into(),
        recipients: vec![Recipient::new(recipient)],
        helo: LOAD_HELO.into(),
        ..Envelope::default()
    }
}

/// Message `n` to `recipient`, of at least `bytes` bytes: smtp-source's headers and payload,
/// with a Message-Id of its own.
pub fn preloaded_body(n: usize, recipient: &str, bytes: usize) -> BodyStream {
    let line = format!("{}\r\n", "X".repeat(78));
    let mut text = format!(
        "From: <{LOAD_SENDER}>\r\nTo: <{recipient}>\r\nMessage-Id: <{n}@{LOAD_HELO}>\r\n\r\n"
    );
    while text.len() < bytes {
        text.push_str(&line);
    }
    Box::pin(futures::stream::iter([Ok::<_, BodyError>(
        Bytes::from(text).into(),
    )]))
}
