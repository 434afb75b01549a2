//! Bulk actions: retry, hold, release or cancel every message a filter selects.

use super::{Priority, RecipientState};

/// What a bulk action does to each selected message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkAction {
    /// The selected live recipients are due now.
    Retry,
    /// The message is held.
    Hold,
    /// The message is released.
    Release,
    /// The selected live recipients are cancelled, without a notice to the sender.
    CancelSilently,
    /// The selected live recipients are cancelled, and the sender gets a failure notice.
    CancelWithNotice,
}

/// Which messages a bulk action selects; every given criterion must match.
///
/// Recipient criteria (`recipient`, `recipient_domain`, `state`, `last_reply`, `next_hop`)
/// must all hold
/// for one recipient; retry and cancel act on the recipients that meet them, or on every live
/// one when none is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkFilter {
    /// The sender contains this text (ASCII case ignored).
    pub sender: Option<String>,
    /// The sender is at this domain.
    pub sender_domain: Option<String>,
    /// A recipient is this address.
    pub recipient: Option<String>,
    /// A recipient is at this domain.
    pub recipient_domain: Option<String>,
    /// A recipient is in this state.
    pub state: Option<RecipientState>,
    /// Queued at least this many seconds ago.
    pub older_than: Option<u64>,
    /// A recipient's last reply contains this text (ASCII case ignored).
    pub last_reply: Option<String>,
    /// The message has this priority.
    pub priority: Option<Priority>,
    /// A recipient goes to this next hop (`mx` or a remote's id) under the routing in force.
    pub next_hop: Option<String>,
}

impl BulkFilter {
    /// Whether no criterion is given (a filter that would select the whole queue).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A bulk action over the messages `filter` selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRequest {
    /// What to do.
    pub action: BulkAction,
    /// Which messages.
    pub filter: BulkFilter,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Where to go on: a [`BulkReport::cursor`]; `None` to start.
    pub cursor: Option<String>,
    /// Messages per store transaction; 0 for the queue's default.
    pub batch_size: u32,
    /// Most messages this call examines; 0 for the queue's default.
    pub limit: u32,
}

/// What a bulk call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Messages read.
    pub examined: u64,
    /// Messages the filter selected.
    pub matched: u64,
    /// Messages changed; 0 on a dry run.
    pub messages_changed: u64,
    /// Recipients retried or cancelled; 0 on a dry run.
    pub recipients_changed: u64,
    /// Where to go on; `None` once the whole queue was examined.
    pub cursor: Option<String>,
}
