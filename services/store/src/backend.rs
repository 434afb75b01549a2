//! What a backend provides: transactions with FoundationDB's semantics.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::Result;
use crate::mutation::Mutation;
use crate::range::{KeyRange, RangeOptions, RangePage};

/// One transaction of a backend. Reads see the transaction's own writes; conflicts are
/// detected at commit (serializable isolation, as FoundationDB).
#[async_trait]
pub(crate) trait BackendTransaction: Send + Sync {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    async fn get_range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangePage>;
    /// Makes one write: later reads of this transaction see it, and the commit applies it.
    fn mutate(&self, mutation: Mutation);
    /// Lets the commit answer before its writes are durable, for writes whose loss in a crash
    /// only repeats work; a backend whose every commit is durable ignores it.
    fn relax_durability(&self) {}
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A backend: a source of transactions.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    async fn begin(&self) -> Result<Box<dyn BackendTransaction>>;
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Why the backend cannot commit now, as it changes (`None` while it can); `None` for a
    /// backend that does not report it.
    fn availability(&self) -> Option<watch::Receiver<Option<String>>> {
        None
    }
}
