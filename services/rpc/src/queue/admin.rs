//! What the queue tells about its contents: listing, per-message detail, totals.

use super::{Priority, QueueId};

/// State of delivery to one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecipientState {
    /// Not yet delivered; an attempt is due or scheduled.
    Pending,
    /// Delivered.
    Delivered,
    /// The last attempt failed temporarily; will be retried.
    TempFailed,
    /// Failed permanently; bounced.
    PermFailed,
    /// Cancelled by an administrator.
    Cancelled,
}

/// Which messages to list, one page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Messages per page; 0 for the queue's default.
    pub page_size: u32,
    /// Where to continue: a [`ListPage::next_page_token`]; `None` for the first page.
    pub page_token: Option<String>,
    /// Which messages.
    pub filter: ListFilter,
}

/// Criteria a listed message meets, all of them. `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// The sender contains this substring.
    pub sender: Option<String>,
    /// Some recipient is at this domain.
    pub recipient_domain: Option<String>,
    /// Some recipient is in this state.
    pub state: Option<RecipientState>,
    /// Some recipient's address contains this substring (ASCII case ignored).
    pub recipient: Option<String>,
    /// The sender or some recipient contains this substring (ASCII case ignored).
    pub text: Option<String>,
    /// A next attempt is scheduled before this time (unix seconds).
    pub due_before: Option<u64>,
    /// A next attempt is scheduled after this time (unix seconds).
    pub due_after: Option<u64>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The messages on this page.
    pub messages: Vec<MessageSummary>,
    /// Token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// One queued message at a glance. Times are unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSummary {
    /// The message.
    pub queue_id: QueueId,
    /// Reverse path; empty for the null sender.
    pub sender: String,
    /// Number of recipients.
    pub recipients: u32,
    /// Body size in bytes.
    pub size: u64,
    /// When the message was queued.
    pub arrival: u64,
    /// Earliest next delivery attempt, if any is scheduled.
    pub next_attempt: Option<u64>,
    /// Delivery priority.
    pub priority: Priority,
    /// Put on hold by an administrator: not attempted until released.
    pub held: bool,
}

/// One queued message with the state of each recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageDetail {
    /// The message at a glance.
    pub summary: MessageSummary,
    /// Each recipient's delivery state.
    pub recipients: Vec<RecipientStatus>,
}

/// Delivery state of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The address.
    pub address: String,
    /// Where delivery stands.
    pub state: RecipientState,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Next attempt (unix seconds), if one is scheduled.
    pub next_attempt: Option<u64>,
    /// Last reply from the receiving server, if any.
    pub last_reply: Option<String>,
}

/// Totals over the whole queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages held.
    pub messages: u64,
    /// Recipients per delivery state.
    pub recipients: RecipientCounts,
    /// Body bytes held.
    pub bytes: u64,
    /// Arrival of the oldest message (unix seconds); `None` when the queue is empty.
    pub oldest_arrival: Option<u64>,
}

/// Number of recipients in each delivery state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientCounts {
    /// In [`RecipientState::Pending`].
    pub pending: u64,
    /// In [`RecipientState::Delivered`].
    pub delivered: u64,
    /// In [`RecipientState::TempFailed`].
    pub temp_failed: u64,
    /// In [`RecipientState::PermFailed`].
    pub perm_failed: u64,
    /// In [`RecipientState::Cancelled`].
    pub cancelled: u64,
}
