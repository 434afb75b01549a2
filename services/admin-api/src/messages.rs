//! Stalwart 0.15's queue paths: `/api/queue/messages` (list, retry and cancel by filter),
//! `/api/queue/messages/{id}` (get, retry, cancel) and `/api/queue/status`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferrymail_rpc::queue::{DestinationScope, QueueError, QueueId, RecipientState};
use serde_json::{Value, json};

use crate::gate::Caller;
use crate::message_json;
use crate::problem::Problem;
use crate::query_params::QueryParams;
use crate::queue_slot::Api;
use crate::selection::{self, Window, one_message};

/// Messages per page when `limit` is not given.
const DEFAULT_LIMIT: u64 = 100;
/// Most messages per page.
const MAX_LIMIT: u64 = 1000;

type Answer = Result<Json<Value>, Problem>;

fn data(value: Value) -> Answer {
    Ok(Json(json!({ "data": value })))
}

/// `GET /api/queue/messages`: one page of ids (or messages with `values`), the total and
/// whether the queue is running.
pub async fn list(State(api): State<Api>, caller: Caller, RawQuery(query): RawQuery) -> Answer {
    caller.permit("List")?;
    let mut params = QueryParams::parse(query.as_deref());
    let filter = selection::filter(&mut params)?;
    let page = params.number("page", 0..=u64::from(u32::MAX))?.unwrap_or(1);
    let limit = params
        .number("limit", 1..=MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    let values = params.flag("values")?;
    let max_total = params
        .number("max-total", 0..=u64::from(u32::MAX))?
        .filter(|n| *n > 0);
    params.finish()?;
    let window = Window {
        skip: page.saturating_sub(1).saturating_mul(limit),
        take: limit,
        max_total,
    };
    let (ids, total) = selection::select(api.queue()?, filter, window).await?;
    let items = if values {
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            match api.queue()?.get(id).await {
                Ok(detail) => items.push(message_json::message(&detail)),
                // Delivered or cancelled since it was listed.
                Err(QueueError::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        items
    } else {
        ids.iter().map(|id| json!(id.as_str())).collect()
    };
    let running = running(&api).await?;
    data(json!({ "items": items, "total": total, "status": running }))
}

/// `GET /api/queue/messages/{id}`.
pub async fn get(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    caller.permit("Get")?;
    QueryParams::parse(query.as_deref()).finish()?;
    let detail = one_message(api.queue()?.get(&QueueId::new(id.clone())).await, &id)?;
    data(message_json::message(&detail))
}

/// `PATCH /api/queue/messages`: every message the filter selects is due now.
pub async fn retry_selected(
    State(api): State<Api>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    caller.permit("Retry")?;
    let mut params = QueryParams::parse(query.as_deref());
    let filter = selection::filter(&mut params)?;
    reject_future_time(&mut params)?;
    params.finish()?;
    let queue = api.queue()?;
    let ids = selection::select_to_act_on(queue, filter).await?;
    let found = for_each_message(&ids, |id| queue.retry(id, &[])).await?;
    data(json!(found))
}

/// `PATCH /api/queue/messages/{id}`: the message's live recipients (those whose domain
/// contains `filter`) are due now.
pub async fn retry(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    caller.permit("Retry")?;
    let mut params = QueryParams::parse(query.as_deref());
    let domain = params.text("filter")?.map(|d| d.to_ascii_lowercase());
    reject_future_time(&mut params)?;
    params.finish()?;
    let queue_id = QueueId::new(id.clone());
    let detail = one_message(api.queue()?.get(&queue_id).await, &id)?;
    let chosen: Vec<String> = detail
        .recipients
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                RecipientState::Pending | RecipientState::TempFailed
            )
        })
        .filter(|r| {
            domain.as_ref().is_none_or(|d| {
                r.address
                    .rsplit_once('@')
                    .is_some_and(|(_, at)| at.to_ascii_lowercase().contains(d.as_str()))
            })
        })
        .map(|r| r.address.clone())
        .collect();
    if chosen.is_empty() {
        return data(json!(false));
    }
    let retried = one_message(api.queue()?.retry(&queue_id, &chosen).await, &id)?;
    data(json!(retried > 0))
}

/// `DELETE /api/queue/messages`: every message the filter selects is cancelled, silently.
pub async fn cancel_selected(
    State(api): State<Api>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    caller.permit("Cancel")?;
    let mut params = QueryParams::parse(query.as_deref());
    let filter = selection::filter(&mut params)?;
    params.finish()?;
    let queue = api.queue()?;
    let ids = selection::select_to_act_on(queue, filter).await?;
    let found = for_each_message(&ids, |id| queue.cancel(id, &[])).await?;
    data(json!(found))
}

/// `DELETE /api/queue/messages/{id}`: the message (or its recipients whose address contains
/// `filter`) is cancelled: silently, as in Stalwart, or with a failure notice to the sender
/// (`notify-sender=true`).
pub async fn cancel(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    caller.permit("Cancel")?;
    let mut params = QueryParams::parse(query.as_deref());
    let part = params.text("filter")?.map(|p| p.to_ascii_lowercase());
    let notify_sender = params.flag("notify-sender")?;
    params.finish()?;
    let queue_id = QueueId::new(id.clone());
    let detail = one_message(api.queue()?.get(&queue_id).await, &id)?;
    let chosen: Vec<String> = match &part {
        None => Vec::new(),
        Some(part) => detail
            .recipients
            .iter()
            .filter(|r| r.address.to_ascii_lowercase().contains(part.as_str()))
            .map(|r| r.address.clone())
            .collect(),
    };
    if part.is_some() && chosen.is_empty() {
        return data(json!(false));
    }
    let queue = api.queue()?;
    let cancelled = if notify_sender {
        queue.cancel_with_notice(&queue_id, &chosen).await
    } else {
        queue.cancel(&queue_id, &chosen).await
    };
    let cancelled = one_message(cancelled, &id)?;
    data(json!(cancelled > 0))
}

/// `GET /api/queue/status`: whether the queue is delivering (not paused as a whole).
pub async fn status(State(api): State<Api>, caller: Caller) -> Answer {
    caller.permit("Destinations")?;
    data(json!(running(&api).await?))
}

/// `PATCH /api/queue/status/{stop|start}`: pauses or resumes the whole queue; answers
/// whether it was running before.
pub async fn set_status(
    State(api): State<Api>,
    caller: Caller,
    Path(action): Path<String>,
) -> Answer {
    let was_running = match action.as_str() {
        "stop" => {
            caller.permit("Pause")?;
            // True when this call paused it: it was running.
            api.queue()?.pause(DestinationScope::All).await?
        }
        "start" => {
            caller.permit("Resume")?;
            !api.queue()?.resume(DestinationScope::All).await?.resumed
        }
        _ => {
            return Err(Problem::not_found(format!(
                "no queue action {action:?}: use stop or start"
            )));
        }
    };
    data(json!(was_running))
}

async fn running(api: &Api) -> Result<bool, Problem> {
    let destinations = api.queue()?.destinations().await?;
    Ok(!destinations
        .paused
        .iter()
        .any(|p| p.scope == DestinationScope::All))
}

/// Applies `action` to each of `ids`; whether it changed any. A message delivered or
/// cancelled between listing and acting is no longer there to act on.
async fn for_each_message<'a, F, Fut>(ids: &'a [QueueId], action: F) -> Result<bool, Problem>
where
    F: Fn(&'a QueueId) -> Fut,
    Fut: std::future::Future<Output = Result<u32, QueueError>>,
{
    let mut changed = false;
    for id in ids {
        match action(id).await {
            Ok(n) => changed |= n > 0,
            Err(QueueError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(changed)
}

/// Stalwart's `at` reschedules to a later time; ferrymail's retry is always now.
fn reject_future_time(params: &mut QueryParams) -> Result<(), Problem> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match params.time("at")? {
        Some(at) if at > now + 1 => Err(Problem::bad_request(
            "ferrymail retries now: `at` in the future is not supported",
        )),
        _ => Ok(()),
    }
}
