//! A queued message's content as delivered: the headers added after the body was read, then
//! the body.

use bytes::Bytes;
use ferrymail_store::blob::BlobError;
use futures::{Stream, StreamExt, stream};

use crate::record::MessageRecord;
use crate::service::Queue;

impl Queue {
    /// The content of `record`'s message, read from the store as the stream is polled.
    pub(crate) fn content<'a>(
        &'a self,
        record: &MessageRecord,
    ) -> impl Stream<Item = Result<Bytes, BlobError>> + Send + 'a {
        let prepend = (!record.prepend.is_empty()).then(|| Ok(Bytes::from(record.prepend.clone())));
        stream::iter(prepend).chain(self.blobs.read_stream(&record.blob))
    }
}
