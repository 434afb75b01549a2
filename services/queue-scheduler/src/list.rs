//! Listing queued messages, oldest first, a page at a time, with filters.
//!
//! Records are read in batches of short transactions, so a listing never nears the store's
//! 5 s limit however long the queue. A filter that matches few messages would otherwise read
//! the whole queue for one page: each call examines at most [`EXAMINE_LIMIT`] messages and then
//! returns what it found with a token to continue, possibly with fewer messages than asked.
//!
//! The page token is the id of the last message examined; clients treat it as opaque.

use std::sync::Arc;

use ferrymail_rpc::queue::{ListFilter, ListPage, ListRequest, QueueError, RecipientState};
use ferrymail_store::{RangeOptions, StoreError};

use crate::model::queue_id::MessageId;
use crate::model::record::{MessageRecord, RecipientRecord};
use crate::model::stored_message::read_recipients;
use crate::service::Queue;
use crate::store_failure::from_store;

/// Messages per page when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most messages per page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Most messages one call examines.
pub const EXAMINE_LIMIT: usize = 10_000;
/// Records read per transaction.
const BATCH: usize = 256;

/// A filter made ready for matching: lower-cased once, domain without a leading `@`.
struct Matcher {
    sender: Option<String>,
    domain: Option<String>,
    state: Option<RecipientState>,
    recipient: Option<String>,
    text: Option<String>,
    due_before: Option<u64>,
    due_after: Option<u64>,
}

impl Matcher {
    fn new(filter: ListFilter) -> Self {
        let lower = |text: Option<String>| text.map(|t| t.to_ascii_lowercase());
        Self {
            sender: lower(filter.sender),
            domain: filter
                .recipient_domain
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase()),
            state: filter.state,
            recipient: lower(filter.recipient),
            text: lower(filter.text),
            due_before: filter.due_before,
            due_after: filter.due_after,
        }
    }

    /// Whether matching needs the recipients.
    fn needs_recipients(&self) -> bool {
        self.domain.is_some()
            || self.state.is_some()
            || self.recipient.is_some()
            || self.text.is_some()
    }

    fn matches(&self, record: &MessageRecord, recipients: &[RecipientRecord]) -> bool {
        // Lower-cased only for a filter that reads it: most listings have none.
        let sender = if self.sender.is_some() || self.text.is_some() {
            record.envelope.sender.to_ascii_lowercase()
        } else {
            String::new()
        };
        let any_address = |part: &str| {
            recipients
                .iter()
                .any(|r| r.recipient.address.to_ascii_lowercase().contains(part))
        };
        if self.sender.as_ref().is_some_and(|s| !sender.contains(s)) {
            return false;
        }
        if let Some(domain) = &self.domain
            && !recipients.iter().any(|r| {
                r.recipient
                    .address
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            })
        {
            return false;
        }
        if let Some(state) = self.state
            && !recipients.iter().any(|r| r.state == state)
        {
            return false;
        }
        if self.recipient.as_deref().is_some_and(|r| !any_address(r)) {
            return false;
        }
        if let Some(text) = &self.text
            && !(sender.contains(text) || any_address(text))
        {
            return false;
        }
        // Seconds, as the filter and the listing give times.
        self.due_in_window(record.due_ms.map(|ms| ms / 1000))
    }

    /// Whether a next attempt at `due` (none when `None`) is inside the asked window.
    fn due_in_window(&self, due: Option<u64>) -> bool {
        match (self.due_before, self.due_after) {
            (None, None) => true,
            (before, after) => due
                .is_some_and(|due| before.is_none_or(|b| due < b) && after.is_none_or(|a| due > a)),
        }
    }
}

/// One batch of records, with their recipients when the filter needs them.
struct Batch {
    messages: Vec<(MessageRecord, Vec<RecipientRecord>)>,
    /// Whether records remain after this batch.
    more: bool,
}

impl Queue {
    /// One page of the messages `request` asks for.
    pub(crate) async fn list_messages(&self, request: ListRequest) -> Result<ListPage, QueueError> {
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as usize;
        let mut after = match request.page_token.as_deref() {
            None => None,
            Some(token) => Some(MessageId::parse(token).map_err(|_| {
                QueueError::InvalidArgument(format!("invalid page token {token:?}"))
            })?),
        };
        let matcher = Arc::new(Matcher::new(request.filter));
        let mut page = ListPage::default();
        let mut examined = 0usize;
        loop {
            let batch = self.read_batch(after, matcher.needs_recipients()).await?;
            let count = batch.messages.len();
            for (i, (record, recipients)) in batch.messages.into_iter().enumerate() {
                examined += 1;
                after = Some(record.id);
                if matcher.matches(&record, &recipients) {
                    page.messages.push(record.summary());
                }
                let rest = i + 1 < count || batch.more;
                if page.messages.len() >= page_size || examined >= EXAMINE_LIMIT {
                    page.next_page_token = rest.then(|| record.id.to_string());
                    return Ok(page);
                }
            }
            if !batch.more {
                return Ok(page);
            }
        }
    }

    /// Up to [`BATCH`] records after `after`, in one transaction.
    async fn read_batch(
        &self,
        after: Option<MessageId>,
        with_recipients: bool,
    ) -> Result<Batch, QueueError> {
        let keys = self.keys.clone();
        self.store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move {
                    let range = match &after {
                        Some(id) => keys.messages_after(id),
                        None => keys.all_messages(),
                    };
                    let page = tx
                        .get_range(
                            &range,
                            RangeOptions {
                                limit: BATCH,
                                reverse: false,
                            },
                        )
                        .await?;
                    let mut messages = Vec::with_capacity(page.pairs.len());
                    for pair in page.pairs {
                        let id = keys.parse_message(&pair.key).ok_or_else(|| {
                            StoreError::Corrupt(format!("bad message key {:?}", pair.key))
                        })?;
                        let record = MessageRecord::decode(id, &pair.value)?;
                        let recipients = if with_recipients {
                            read_recipients(tx, &keys, &id).await?
                        } else {
                            Vec::new()
                        };
                        messages.push((record, recipients));
                    }
                    Ok(Batch {
                        messages,
                        more: page.more,
                    })
                })
            })
            .await
            .map_err(|e| from_store("list", e))
    }
}
