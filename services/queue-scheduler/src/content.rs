//! A queued message's content as delivered: the headers added after the body was read, then
//! the body.

use bytes::Bytes;
use ferrymail_store::blob::BlobError;
use futures::future::Either;
use futures::{Stream, StreamExt, stream};

use crate::held_body::HeldBody;
use crate::model::record::MessageRecord;
use crate::service::Queue;

impl Queue {
    /// The content of `record`'s message: from `held` when its enqueue handed the body over
    /// in memory, otherwise read from the store as the stream is polled.
    pub(crate) fn content<'a>(
        &'a self,
        record: &MessageRecord,
        held: Option<&'a HeldBody>,
    ) -> impl Stream<Item = Result<Bytes, BlobError>> + Send + 'a {
        let prepend = (!record.prepend.is_empty()).then(|| Ok(Bytes::from(record.prepend.clone())));
        let body = match held {
            Some(held) => Either::Left(stream::iter(held.chunks().iter().cloned().map(Ok))),
            None => Either::Right(self.blobs.read_stream(&record.blob)),
        };
        stream::iter(prepend).chain(body)
    }
}
