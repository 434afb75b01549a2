//! Which messages, and which of their recipients, a bulk action's filter selects; a filter
//! that cannot select sensibly is refused before anything is read.

use std::sync::Arc;

use ferrymail_rpc::queue::{BulkFilter, Envelope, Priority, QueueError, RecipientState};

use crate::envelope_check::MAX_TEXT;
use crate::model::record::{MessageRecord, RecipientRecord};
use crate::route::{Route, Router};

/// A bulk filter made ready for matching: text lower-cased once, domains without `@`.
#[derive(Debug)]
pub(crate) struct Selection {
    sender: Option<String>,
    sender_domain: Option<String>,
    recipient: Option<String>,
    recipient_domain: Option<String>,
    state: Option<RecipientState>,
    older_than_ms: Option<u64>,
    last_reply: Option<String>,
    priority: Option<Priority>,
    /// The next hop wanted, and the routing that decides it.
    next_hop: Option<(Route, Arc<Router>)>,
}

impl Selection {
    /// The selection `filter` describes; `InvalidArgument` names what is wrong with it.
    /// `router` is the routing in force, for a `next_hop` criterion.
    pub(crate) fn new(filter: BulkFilter, router: Option<Arc<Router>>) -> Result<Self, QueueError> {
        if filter.is_empty() {
            return Err(invalid(
                "the filter is empty: give at least one criterion, so that no action reaches the whole queue by mistake".into(),
            ));
        }
        Ok(Self {
            sender: filter.sender.map(|s| text("sender", &s)).transpose()?,
            sender_domain: filter
                .sender_domain
                .map(|d| domain("sender_domain", &d))
                .transpose()?,
            recipient: filter
                .recipient
                .map(|r| address("recipient", &r))
                .transpose()?,
            recipient_domain: filter
                .recipient_domain
                .map(|d| domain("recipient_domain", &d))
                .transpose()?,
            state: filter.state,
            older_than_ms: filter.older_than.map(|s| s.saturating_mul(1000)),
            last_reply: filter
                .last_reply
                .map(|t| text("last_reply", &t))
                .transpose()?,
            priority: filter.priority,
            next_hop: match filter.next_hop {
                None => None,
                Some(hop) => Some((
                    route(&hop)?,
                    router.ok_or_else(|| {
                        QueueError::Unavailable(
                            "this queue has no routing to match next hops against".into(),
                        )
                    })?,
                )),
            },
        })
    }

    /// Whether the message-level criteria, read from the record alone, let `record` through
    /// at `now_ms`: when not, its recipients need not be read.
    pub(crate) fn may_select(&self, record: &MessageRecord, now_ms: u64) -> bool {
        let sender = record.envelope.sender.to_ascii_lowercase();
        if let Some(text) = &self.sender
            && !sender.contains(text.as_str())
        {
            return false;
        }
        if let Some(domain) = &self.sender_domain
            && domain_of(&sender) != Some(domain.as_str())
        {
            return false;
        }
        if let Some(age) = self.older_than_ms
            && now_ms.saturating_sub(record.arrival_ms) < age
        {
            return false;
        }
        self.priority
            .is_none_or(|priority| record.envelope.priority == priority)
    }

    /// The positions of the recipients selected in a message that passed
    /// [`Selection::may_select`]: those meeting every recipient criterion (all of them when
    /// there is none); `None` when no recipient does, and the message is not selected.
    pub(crate) fn recipients(
        &self,
        envelope: &Envelope,
        recipients: &[RecipientRecord],
    ) -> Option<Vec<usize>> {
        let selected: Vec<usize> = recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| self.selects_recipient(r) && self.routes_as_wanted(envelope, r))
            .map(|(i, _)| i)
            .collect();
        (!selected.is_empty()).then_some(selected)
    }

    fn routes_as_wanted(&self, envelope: &Envelope, r: &RecipientRecord) -> bool {
        self.next_hop
            .as_ref()
            .is_none_or(|(wanted, router)| router.route(envelope, &r.recipient.address) == *wanted)
    }

    fn selects_recipient(&self, r: &RecipientRecord) -> bool {
        let address = r.recipient.address.to_ascii_lowercase();
        if let Some(wanted) = &self.recipient
            && &address != wanted
        {
            return false;
        }
        if let Some(domain) = &self.recipient_domain
            && domain_of(&address) != Some(domain.as_str())
        {
            return false;
        }
        if let Some(state) = self.state
            && r.state != state
        {
            return false;
        }
        if let Some(text) = &self.last_reply {
            let reply = r.last_reply.as_deref().unwrap_or_default();
            if !reply.to_ascii_lowercase().contains(text.as_str()) {
                return false;
            }
        }
        true
    }
}

/// A next hop criterion: `mx`, or the id of a remote.
fn route(hop: &str) -> Result<Route, QueueError> {
    if hop.eq_ignore_ascii_case("mx") {
        return Ok(Route::Mx);
    }
    let valid = !hop.is_empty()
        && hop.len() <= 255
        && hop
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(Route::Remote(hop.to_owned()))
    } else {
        Err(invalid(format!(
            "next_hop: {hop:?} is neither \"mx\" nor a remote's id"
        )))
    }
}

/// The domain of `address`, lower-cased already.
fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain)
}

fn invalid(reason: String) -> QueueError {
    QueueError::InvalidArgument(reason)
}

/// A text criterion: not empty, bounded, one line.
fn text(name: &str, value: &str) -> Result<String, QueueError> {
    if value.is_empty() {
        return Err(invalid(format!("{name}: empty")));
    }
    if value.len() > MAX_TEXT {
        return Err(invalid(format!("{name}: longer than {MAX_TEXT} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{name}: control characters")));
    }
    Ok(value.to_ascii_lowercase())
}

/// A domain criterion, with or without a leading `@`.
fn domain(name: &str, value: &str) -> Result<String, QueueError> {
    let domain = text(name, value.strip_prefix('@').unwrap_or(value))?;
    if domain.contains('@') || domain.contains(char::is_whitespace) || domain.len() > 255 {
        return Err(invalid(format!("{name}: {value:?} is not a domain")));
    }
    Ok(domain)
}

/// An address criterion: a local part and a domain.
fn address(name: &str, value: &str) -> Result<String, QueueError> {
    let address = text(name, value)?;
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(address),
        _ => Err(invalid(format!("{name}: {value:?} is not an address"))),
    }
}
