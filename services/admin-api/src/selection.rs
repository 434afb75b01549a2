//! Which messages a request names with Stalwart's filters (`text`, `from`, `to`, `before`,
//! `after`), found by paging through the queue's listing.

use std::sync::Arc;

use ferrymail_rpc::queue::{ListFilter, ListRequest, QueueError, QueueId, QueueService};

use crate::problem::Problem;
use crate::query_params::QueryParams;

/// Messages asked of the queue per listing call.
const LISTING_PAGE: u32 = 1000;

/// Reads Stalwart's filter parameters.
pub fn filter(params: &mut QueryParams) -> Result<ListFilter, Problem> {
    Ok(ListFilter {
        text: params.text("text")?,
        sender: params.text("from")?,
        recipient: params.text("to")?,
        due_before: params.time("before")?,
        due_after: params.time("after")?,
        ..ListFilter::default()
    })
}

/// What part of the matches to keep.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Matches passed over first.
    pub skip: u64,
    /// Most matches kept.
    pub take: u64,
    /// Stop counting at this many matches; `None` to count them all.
    pub max_total: Option<u64>,
}

/// Most messages a Stalwart-style retry or cancel by filter acts on in one call: each is its
/// own transaction, all within one HTTP request, so a larger selection goes to the bulk
/// action, which works in resumable batches.
pub const MAX_ACTED_ON: u64 = 10_000;

/// The messages a retry or cancel by filter acts on; a `400` naming the bulk action when the
/// filter selects more than [`MAX_ACTED_ON`].
pub async fn select_to_act_on(
    queue: &Arc<dyn QueueService>,
    filter: ListFilter,
) -> Result<Vec<QueueId>, Problem> {
    let window = Window {
        skip: 0,
        take: MAX_ACTED_ON,
        max_total: Some(MAX_ACTED_ON + 1),
    };
    let (ids, total) = select(queue, filter, window).await?;
    if total > MAX_ACTED_ON {
        return Err(Problem::bad_request(format!(
            "the filter selects more than {MAX_ACTED_ON} messages: narrow it, or use POST \
             /api/queue/bulk, which works through any number in resumable batches"
        )));
    }
    Ok(ids)
}

/// The matches `window` keeps, and how many matched in all (up to `max_total`).
pub async fn select(
    queue: &Arc<dyn QueueService>,
    filter: ListFilter,
    window: Window,
) -> Result<(Vec<QueueId>, u64), Problem> {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut token = None;
    loop {
        let page = queue
            .list(ListRequest {
                page_size: LISTING_PAGE,
                page_token: token,
                filter: filter.clone(),
            })
            .await
            .map_err(Problem::from)?;
        for message in page.messages {
            total += 1;
            if total > window.skip && (kept.len() as u64) < window.take {
                kept.push(message.queue_id);
            }
            if window.max_total.is_some_and(|max| total >= max) {
                return Ok((kept, total));
            }
        }
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok((kept, total)),
        }
    }
}

/// A queue answer about one message, with a malformed id answered as an unknown one: neither
/// names a message.
pub fn one_message<T>(result: Result<T, QueueError>, id: &str) -> Result<T, Problem> {
    result.map_err(|error| match error {
        QueueError::NotFound(_) | QueueError::InvalidArgument(_) => {
            Problem::not_found(format!("no queued message {id}"))
        }
        other => Problem::from(other),
    })
}
