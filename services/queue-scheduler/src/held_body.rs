//! A small message body kept in memory from its enqueue to its first attempt, so that the
//! attempt need not read back what was just written (`handoff`).

use std::sync::Arc;

use bytes::Bytes;

use crate::model::new_message::NewMessage;

/// A small body kept in memory from its enqueue to its first attempt.
#[derive(Clone)]
pub(crate) struct HeldBody(Arc<[Bytes]>);

impl HeldBody {
    /// The body made of `chunks`, in order.
    pub(crate) fn new(chunks: &[Bytes]) -> Self {
        Self(chunks.into())
    }

    /// The body of `message`, when it is small enough to be kept in memory until its first
    /// attempt.
    pub(crate) fn of(message: &NewMessage) -> Option<Self> {
        message.small_body().map(Self::new)
    }

    /// Its chunks, in order.
    pub(crate) fn chunks(&self) -> &[Bytes] {
        &self.0
    }
}

impl std::fmt::Debug for HeldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size: usize = self.0.iter().map(Bytes::len).sum();
        write!(f, "HeldBody({size} bytes)")
    }
}
