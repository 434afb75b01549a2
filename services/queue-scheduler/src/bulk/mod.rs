//! Bulk actions: retry, hold, release or cancel every message a filter selects.
//!
//! The queue is walked in id (arrival) order, a batch of messages per transaction, each batch
//! read, matched and changed in the same transaction, so a message changes only as it was
//! matched. A batch also ends once its writes near [`WRITE_BUDGET`], which keeps every
//! transaction far inside FoundationDB's 10 MB and 5 s. A call examines at most its limit of
//! messages and returns a cursor (the last message id examined) to go on from; the walk is
//! thus resumable, and a message enqueued meanwhile is met if its id comes after the cursor.

mod selection;

use std::sync::Arc;
use std::time::SystemTime;

use ferrymail_rpc::queue::{BulkAction, BulkReport, BulkRequest, QueueError};
use ferrymail_store::{RangeOptions, StoreError, Transaction};

use crate::cancel::{CancelChange, CancelNotice, cancel_in};
use crate::dsn::NoticeSettings;
use crate::events::{EventTally, EventWriter};
use crate::hold::{held_events, hold_in};
use crate::model::keys::Keys;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::record::MessageRecord;
use crate::model::stored_message::{StoredMessage, read_recipients};
use crate::retry::retry_in;
use crate::route::Router;
use crate::service::Queue;
use crate::store_failure::from_store;
use selection::Selection;

/// Messages per transaction when the request does not say.
pub const DEFAULT_BULK_BATCH: u32 = 64;
/// Most messages per transaction.
pub const MAX_BULK_BATCH: u32 = 1000;
/// Most messages one call examines when the request does not say.
pub const DEFAULT_BULK_LIMIT: u32 = 10_000;
/// Bytes of changed records after which a batch ends early, whatever its size.
const WRITE_BUDGET: usize = 2_000_000;

/// What one batch did.
#[derive(Default)]
struct BatchOutcome {
    report: BulkReport,
    /// The last message examined.
    last: Option<MessageId>,
    /// Whether messages remain after it.
    more: bool,
    /// The events it wrote and dropped.
    events: EventTally,
}

/// What a bulk call does to each message, fixed for the whole call.
struct Plan {
    action: BulkAction,
    selection: Selection,
    dry_run: bool,
    now: SystemTime,
    now_ms: u64,
    /// How a cancel's notices are made.
    notices: NoticeSettings,
    /// The routing in force, naming next hops in events.
    router: Option<Arc<Router>>,
}

impl Queue {
    /// Runs `request` at `now` over the messages after its cursor, up to its limit.
    pub(crate) async fn run_bulk(
        &self,
        request: BulkRequest,
        now: SystemTime,
    ) -> Result<BulkReport, QueueError> {
        let mut after =
            match request.cursor.as_deref() {
                None => None,
                Some(cursor) => Some(MessageId::parse(cursor).map_err(|_| {
                    QueueError::InvalidArgument(format!("invalid cursor {cursor:?}"))
                })?),
            };
        let batch = match request.batch_size {
            0 => DEFAULT_BULK_BATCH,
            n => n.min(MAX_BULK_BATCH),
        };
        let limit = match request.limit {
            0 => DEFAULT_BULK_LIMIT,
            n => n,
        };
        let plan = Arc::new(Plan {
            action: request.action,
            selection: Selection::new(request.filter, self.router.load_full())?,
            dry_run: request.dry_run,
            now,
            now_ms: unix_millis(now),
            notices: self.cancel_notices(),
            router: self.router.load_full(),
        });
        let mut report = BulkReport::default();
        loop {
            let left = u64::from(limit).saturating_sub(report.examined);
            let size = usize::try_from(left.min(u64::from(batch))).unwrap_or(1);
            let outcome = self.bulk_batch(after, size, plan.clone()).await?;
            add(&mut report, &outcome.report);
            after = outcome.last.or(after);
            if !outcome.more {
                report.cursor = None;
                break;
            }
            if report.examined >= u64::from(limit) {
                report.cursor = after.map(|id| id.to_string());
                break;
            }
        }
        if report.messages_changed > 0 {
            tracing::info!(action = ?plan.action, changed = report.messages_changed, "bulk action");
        }
        Ok(report)
    }

    /// Up to `size` messages after `after`, matched and changed in one transaction.
    async fn bulk_batch(
        &self,
        after: Option<MessageId>,
        size: usize,
        plan: Arc<Plan>,
    ) -> Result<BatchOutcome, QueueError> {
        let (keys, blobs) = (self.keys.clone(), self.blobs.clone());
        let events = self.events.current();
        let mut outcome = self
            .store
            .transact(move |tx| {
                let (keys, blobs, plan) = (keys.clone(), blobs.clone(), plan.clone());
                let mut events = EventWriter::new(events.clone(), plan.now_ms);
                Box::pin(async move {
                    let range = match &after {
                        Some(id) => keys.messages_after(id),
                        None => keys.all_messages(),
                    };
                    let options = RangeOptions {
                        limit: size,
                        reverse: false,
                    };
                    let page = tx.get_range(&range, options).await?;
                    let count = page.pairs.len();
                    let mut outcome = BatchOutcome {
                        more: page.more,
                        ..BatchOutcome::default()
                    };
                    let mut written = 0usize;
                    for (i, pair) in page.pairs.into_iter().enumerate() {
                        let id = keys.parse_message(&pair.key).ok_or_else(|| {
                            StoreError::Corrupt(format!("bad message key {:?}", pair.key))
                        })?;
                        let record = MessageRecord::decode(id, &pair.value)?;
                        outcome.report.examined += 1;
                        outcome.last = Some(id);
                        let report = &mut outcome.report;
                        written +=
                            act(tx, (&keys, &blobs), &plan, record, report, &mut events).await?;
                        if written >= WRITE_BUDGET && i + 1 < count {
                            // The rest of the page waits for the next transaction.
                            outcome.more = true;
                            break;
                        }
                    }
                    outcome.events = events.write(tx, &keys)?;
                    Ok(outcome)
                })
            })
            .await
            .map_err(|e| from_store("bulk", e))?;
        self.events
            .settle(std::mem::take(&mut outcome.events), &self.metrics);
        Ok(outcome)
    }
}

/// Matches `record` and, unless the plan is a dry run, applies its action in `tx`; counts in
/// `report` and returns about how many bytes it wrote.
async fn act(
    tx: &Transaction,
    (keys, blobs): (&Keys, &ferrymail_store::blob::BlobStore),
    plan: &Plan,
    record: MessageRecord,
    report: &mut BulkReport,
    events: &mut EventWriter,
) -> Result<usize, StoreError> {
    if !plan.selection.may_select(&record, plan.now_ms) {
        return Ok(0);
    }
    let recipients = read_recipients(tx, keys, &record.id).await?;
    let Some(selected) = plan.selection.recipients(&record.envelope, &recipients) else {
        return Ok(0);
    };
    report.matched += 1;
    if plan.dry_run {
        return Ok(0);
    }
    let mut message = StoredMessage { record, recipients };
    let size = written_size(&message);
    let router = plan.router.as_deref();
    let (changed, recipients) = match plan.action {
        BulkAction::Hold | BulkAction::Release => {
            let held = plan.action == BulkAction::Hold;
            let changed = hold_in(tx, keys, &mut message, held)?;
            if changed {
                held_events(events, &message, held, router);
            }
            (changed, 0)
        }
        BulkAction::Retry => {
            let n = retry_in(tx, keys, &mut message, &selected, plan.now_ms)?;
            (n > 0, n)
        }
        BulkAction::CancelSilently | BulkAction::CancelWithNotice => {
            let notice = (plan.action == BulkAction::CancelWithNotice).then_some(CancelNotice {
                settings: &plan.notices,
                now: plan.now,
            });
            let change = CancelChange {
                selected: &selected,
                notice,
                events: (events, router),
            };
            let n = cancel_in(tx, keys, blobs, &mut message, change).await?;
            (n > 0, n)
        }
    };
    if !changed {
        return Ok(0);
    }
    report.messages_changed += 1;
    report.recipients_changed += u64::from(recipients);
    Ok(size)
}

/// About how many bytes changing `message` writes: its record and every recipient.
fn written_size(message: &StoredMessage) -> usize {
    let recipients: usize = message
        .recipients
        .iter()
        .map(|r| r.recipient.address.len() + r.last_reply.as_ref().map_or(0, String::len) + 64)
        .sum();
    message.record.envelope.sender.len() + message.record.prepend.len() + 256 + recipients
}

fn add(total: &mut BulkReport, batch: &BulkReport) {
    total.examined += batch.examined;
    total.matched += batch.matched;
    total.messages_changed += batch.messages_changed;
    total.recipients_changed += batch.recipients_changed;
}

#[cfg(test)]
mod tests;
