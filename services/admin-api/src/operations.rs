//! ferrymail's own paths beside Stalwart's: hold and release, bulk actions by filter,
//! paused and suspended destinations, totals, and finding a message by its Message-ID.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use ferrymail_rpc::queue::{
    BulkAction, BulkFilter, BulkRequest, DestinationScope, Priority, QueueId, RecipientState,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gate::Caller;
use crate::problem::Problem;
use crate::query_params::QueryParams;
use crate::queue_json;
use crate::queue_slot::Api;
use crate::selection::one_message;

type Answer = Result<Json<Value>, Problem>;

fn data(value: Value) -> Answer {
    Ok(Json(json!({ "data": value })))
}

/// `PATCH /api/queue/messages/{id}/hold`: whether the message was newly held.
pub async fn hold(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Answer {
    caller.permit("Hold")?;
    let changed = one_message(api.queue()?.hold(&QueueId::new(id.clone())).await, &id)?;
    data(json!(changed))
}

/// `PATCH /api/queue/messages/{id}/release`: whether the message was held.
pub async fn release(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Answer {
    caller.permit("Release")?;
    let changed = one_message(api.queue()?.release(&QueueId::new(id.clone())).await, &id)?;
    data(json!(changed))
}

/// `GET /api/queue/stats`.
pub async fn stats(State(api): State<Api>, caller: Caller) -> Answer {
    caller.permit("Stats")?;
    data(queue_json::stats(&api.queue()?.stats().await?))
}

/// `GET /api/queue/destinations`: pauses in force, destinations with failed connections.
pub async fn destinations(State(api): State<Api>, caller: Caller) -> Answer {
    caller.permit("Destinations")?;
    data(queue_json::destinations(
        &api.queue()?.destinations().await?,
    ))
}

/// `PATCH /api/queue/destinations/{kind}/{name}/pause` (`kind`: `domain` or `remote`):
/// whether it was newly paused. The whole queue pauses with Stalwart's `status/stop`.
pub async fn pause(
    State(api): State<Api>,
    caller: Caller,
    Path((kind, name)): Path<(String, String)>,
) -> Answer {
    caller.permit("Pause")?;
    let scope = scope(&kind, &name)?;
    data(json!(api.queue()?.pause(scope).await?))
}

/// `PATCH /api/queue/destinations/{kind}/{name}/resume`: whether it was paused, and how many
/// recipients became due.
pub async fn resume(
    State(api): State<Api>,
    caller: Caller,
    Path((kind, name)): Path<(String, String)>,
) -> Answer {
    caller.permit("Resume")?;
    let resumed = api.queue()?.resume(scope(&kind, &name)?).await?;
    data(json!({ "resumed": resumed.resumed, "rescheduled": resumed.rescheduled }))
}

/// A domain (in ASCII, IDNs as A-labels) or a remote's id: letters, digits, `.`, `-`, `_`.
fn is_destination_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn scope(kind: &str, name: &str) -> Result<DestinationScope, Problem> {
    let scope = match kind {
        "domain" => DestinationScope::Domain(name.to_owned()),
        "remote" => DestinationScope::Remote(name.to_owned()),
        _ => {
            return Err(Problem::not_found(format!(
                "no destination kind {kind:?}: use domain or remote"
            )));
        }
    };
    if !is_destination_name(name) {
        return Err(Problem::bad_request(format!(
            "{name:?} is not a domain or remote id (letters, digits, '.', '-', '_')"
        )));
    }
    Ok(scope)
}

/// `GET /api/queue/find?message-id=<id>`: the queued messages with that Message-ID.
pub async fn find(State(api): State<Api>, caller: Caller, RawQuery(query): RawQuery) -> Answer {
    caller.permit("FindByMessageId")?;
    let mut params = QueryParams::parse(query.as_deref());
    let message_id = params
        .text("message-id")?
        .ok_or_else(|| Problem::bad_request("parameter message-id is required"))?;
    params.finish()?;
    let ids = api.queue()?.find_by_message_id(&message_id).await?;
    data(json!(ids.iter().map(QueueId::as_str).collect::<Vec<_>>()))
}

/// The body of `POST /api/queue/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: ActionName,
    filter: FilterBody,
    #[serde(default)]
    dry_run: bool,
    cursor: Option<String>,
    #[serde(default)]
    batch_size: u32,
    #[serde(default)]
    limit: u32,
}

/// A bulk action; cancelling names whether the senders hear of it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ActionName {
    Retry,
    Hold,
    Release,
    CancelSilently,
    CancelWithNotice,
}

impl ActionName {
    fn action(self) -> BulkAction {
        match self {
            ActionName::Retry => BulkAction::Retry,
            ActionName::Hold => BulkAction::Hold,
            ActionName::Release => BulkAction::Release,
            ActionName::CancelSilently => BulkAction::CancelSilently,
            ActionName::CancelWithNotice => BulkAction::CancelWithNotice,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ActionName::Retry => "retry",
            ActionName::Hold => "hold",
            ActionName::Release => "release",
            ActionName::CancelSilently => "cancel-silently",
            ActionName::CancelWithNotice => "cancel-with-notice",
        }
    }
}

/// The filter of a bulk action, as `ferrymail queue bulk` names its options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    sender: Option<String>,
    sender_domain: Option<String>,
    recipient: Option<String>,
    recipient_domain: Option<String>,
    state: Option<StateName>,
    /// Seconds since the message was queued.
    older_than: Option<u64>,
    last_reply: Option<String>,
    priority: Option<i32>,
    next_hop: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StateName {
    Pending,
    TempFailed,
    PermFailed,
    Delivered,
    Cancelled,
}

impl From<StateName> for RecipientState {
    fn from(state: StateName) -> Self {
        match state {
            StateName::Pending => RecipientState::Pending,
            StateName::TempFailed => RecipientState::TempFailed,
            StateName::PermFailed => RecipientState::PermFailed,
            StateName::Delivered => RecipientState::Delivered,
            StateName::Cancelled => RecipientState::Cancelled,
        }
    }
}

/// Longest age a filter may name: 136 years, in seconds.
const MAX_AGE: u64 = u32::MAX as u64;

impl FilterBody {
    fn into_filter(self) -> Result<BulkFilter, Problem> {
        if self.older_than.is_some_and(|age| age > MAX_AGE) {
            return Err(Problem::bad_request(format!(
                "filter.older_than: at most {MAX_AGE} seconds"
            )));
        }
        let priority = match self.priority {
            None => None,
            Some(p) => Some(Priority::new(p).ok_or_else(|| {
                Problem::bad_request(format!("filter.priority {p}: a priority is -9..9"))
            })?),
        };
        Ok(BulkFilter {
            sender: self.sender,
            sender_domain: self.sender_domain,
            recipient: self.recipient,
            recipient_domain: self.recipient_domain,
            state: self.state.map(Into::into),
            older_than: self.older_than,
            last_reply: self.last_reply,
            priority,
            next_hop: self.next_hop,
        })
    }
}

/// A criterion given as `null` is a mistake, not "any": refused like any other bad value.
fn refuse_nulls(filter: &Value) -> Result<(), Problem> {
    match filter.as_object() {
        Some(fields) => match fields.iter().find(|(_, v)| v.is_null()) {
            Some((name, _)) => Err(Problem::bad_request(format!(
                "invalid bulk request: filter.{name} is null"
            ))),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// A queue id as the queue writes them: a ULID in upper-case Crockford base32.
fn is_queue_id(text: &str) -> bool {
    text.len() == 26
        && text.starts_with(|c: char| ('0'..='7').contains(&c))
        && text.chars().all(|c| {
            c.is_ascii_digit() || (c.is_ascii_uppercase() && !matches!(c, 'I' | 'L' | 'O' | 'U'))
        })
}

/// `POST /api/queue/bulk`: one call of a bulk action (the queue examines a bounded number of
/// messages per call; go on with the answer's `cursor`).
pub async fn bulk(State(api): State<Api>, caller: Caller, body: Bytes) -> Answer {
    caller.permit("Bulk")?;
    let invalid = |e: String| Problem::bad_request(format!("invalid bulk request: {e}"));
    let value: Value = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    refuse_nulls(&value["filter"])?;
    let body: BulkBody = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    if let Some(cursor) = &body.cursor
        && !is_queue_id(cursor)
    {
        return Err(invalid(format!("cursor {cursor:?} is not a queue id")));
    }
    let action = body.action;
    let request = BulkRequest {
        action: action.action(),
        filter: body.filter.into_filter()?,
        dry_run: body.dry_run,
        cursor: body.cursor,
        batch_size: body.batch_size,
        limit: body.limit,
    };
    let report = api.queue()?.bulk(request).await?;
    data(queue_json::bulk_report(
        action.name(),
        body.dry_run,
        &report,
    ))
}
