//! A filter's answer: an action and the modifications that come with it.

use crate::session::Reply;

/// What the session does with the command or message.
#[derive(Debug)]
pub(crate) enum Action {
    /// Go on: ask the next filter, then the next stage.
    Continue,
    /// Accept: this filter is not asked again for this transaction (milter `accept`).
    Accept,
    /// Refuse the command or message permanently with this reply (a `5xx` the filter chose).
    Reject(Reply),
    /// Refuse for now with this reply (a `4xx`).
    TempFail(Reply),
    /// Answer as if accepted, and drop: the recipient at RCPT, the message otherwise.
    Discard,
    /// Accept the message into the queue on hold, with this reason, for an administrator
    /// to release or cancel.
    Quarantine(String),
}

/// A change a filter asks for. Header and body changes are honoured at the data stage only;
/// envelope changes at any stage from MAIL on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Modification {
    /// Replace the reverse path (empty for the null sender).
    ChangeSender { address: String },
    /// Add a recipient (not subject to relay control: the filter is trusted).
    AddRecipient { address: String },
    /// Remove a recipient (compared without regard to case).
    DeleteRecipient { address: String },
    /// Append a header field at the end of the header.
    AddHeader { name: String, value: String },
    /// Insert a header field before the field at `index` (0 = first field; past the end
    /// appends).
    InsertHeader {
        index: usize,
        name: String,
        value: String,
    },
    /// Replace the value of the `index`th field named `name` (1 = first occurrence, case
    /// insensitive); `None` deletes it. A missing occurrence is added, as milters expect
    /// of `chgheader`, unless it is a deletion.
    ChangeHeader {
        name: String,
        index: usize,
        value: Option<String>,
    },
    /// Replace the body (everything after the header's blank line).
    ReplaceBody(Vec<u8>),
}

/// A filter's whole answer to one question.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) action: Action,
    pub(crate) modifications: Vec<Modification>,
}

impl Verdict {
    /// Go on, changing nothing.
    pub(crate) fn proceed() -> Self {
        Self {
            action: Action::Continue,
            modifications: Vec::new(),
        }
    }

    /// An action with no modifications.
    pub(crate) fn action(action: Action) -> Self {
        Self {
            action,
            modifications: Vec::new(),
        }
    }
}
