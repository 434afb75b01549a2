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
}

impl Matcher {
    fn new(filter: ListFilter) -> Self {
        Self {
            sender: filter.sender.map(|s| s.to_ascii_lowercase()),
            domain: filter
                .recipient_domain
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase()),
            state: filter.state,
        }
    }

    /// Whether matching needs the recipients.
    fn needs_recipients(&self) -> bool {
        self.domain.is_some() || self.state.is_some()
    }

    fn matches(&self, record: &MessageRecord, recipients: &[RecipientRecord]) -> bool {
        if let Some(sender) = &self.sender
            && !record.envelope.sender.to_ascii_lowercase().contains(sender)
        {
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
        true
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
