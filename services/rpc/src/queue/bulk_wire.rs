//! Bulk actions on the wire: [`super::bulk`]'s types to and from their proto messages.

use super::bulk::{BulkAction, BulkFilter, BulkReport, BulkRequest};
use super::convert::{priority_from_wire, state_from_wire, state_to_wire, text_from_wire};
use crate::malformed::Malformed;
use crate::proto;

fn action_to_wire(action: BulkAction) -> proto::BulkAction {
    match action {
        BulkAction::Retry => proto::BulkAction::Retry,
        BulkAction::Hold => proto::BulkAction::Hold,
        BulkAction::Release => proto::BulkAction::Release,
        BulkAction::CancelSilently => proto::BulkAction::CancelSilently,
        BulkAction::CancelWithNotice => proto::BulkAction::CancelWithNotice,
    }
}

fn action_from_wire(action: i32) -> Result<BulkAction, Malformed> {
    match proto::BulkAction::try_from(action) {
        Ok(proto::BulkAction::Retry) => Ok(BulkAction::Retry),
        Ok(proto::BulkAction::Hold) => Ok(BulkAction::Hold),
        Ok(proto::BulkAction::Release) => Ok(BulkAction::Release),
        Ok(proto::BulkAction::CancelSilently) => Ok(BulkAction::CancelSilently),
        Ok(proto::BulkAction::CancelWithNotice) => Ok(BulkAction::CancelWithNotice),
        Ok(proto::BulkAction::Unspecified) | Err(_) => {
            Err(Malformed::enum_value("BulkRequest.action", action))
        }
    }
}

fn filter_to_wire(filter: BulkFilter) -> proto::BulkFilter {
    proto::BulkFilter {
        sender: filter.sender.unwrap_or_default(),
        sender_domain: filter.sender_domain.unwrap_or_default(),
        recipient: filter.recipient.unwrap_or_default(),
        recipient_domain: filter.recipient_domain.unwrap_or_default(),
        state: filter.state.map(|s| state_to_wire(s).into()),
        older_than: filter.older_than.unwrap_or_default(),
        last_reply: filter.last_reply.unwrap_or_default(),
        priority: filter.priority.map(|p| p.get().into()),
        next_hop: filter.next_hop.unwrap_or_default(),
    }
}

fn filter_from_wire(filter: proto::BulkFilter) -> Result<BulkFilter, Malformed> {
    Ok(BulkFilter {
        sender: text_from_wire(filter.sender),
        sender_domain: text_from_wire(filter.sender_domain),
        recipient: text_from_wire(filter.recipient),
        recipient_domain: text_from_wire(filter.recipient_domain),
        state: filter.state.map(state_from_wire).transpose()?,
        older_than: (filter.older_than > 0).then_some(filter.older_than),
        last_reply: text_from_wire(filter.last_reply),
        priority: filter.priority.map(priority_from_wire).transpose()?,
        next_hop: text_from_wire(filter.next_hop),
    })
}

pub(crate) fn bulk_request_to_wire(request: BulkRequest) -> proto::BulkRequest {
    proto::BulkRequest {
        action: action_to_wire(request.action).into(),
        filter: Some(filter_to_wire(request.filter)),
        dry_run: request.dry_run,
        cursor: request.cursor.unwrap_or_default(),
        batch_size: request.batch_size,
        limit: request.limit,
    }
}

pub(crate) fn bulk_request_from_wire(
    request: proto::BulkRequest,
) -> Result<BulkRequest, Malformed> {
    Ok(BulkRequest {
        action: action_from_wire(request.action)?,
        filter: filter_from_wire(request.filter.unwrap_or_default())?,
        dry_run: request.dry_run,
        cursor: text_from_wire(request.cursor),
        batch_size: request.batch_size,
        limit: request.limit,
    })
}

pub(crate) fn bulk_report_to_wire(report: BulkReport) -> proto::BulkReply {
    proto::BulkReply {
        examined: report.examined,
        matched: report.matched,
        messages_changed: report.messages_changed,
        recipients_changed: report.recipients_changed,
        cursor: report.cursor.unwrap_or_default(),
    }
}

pub(crate) fn bulk_report_from_wire(reply: proto::BulkReply) -> BulkReport {
    BulkReport {
        examined: reply.examined,
        matched: reply.matched,
        messages_changed: reply.messages_changed,
        recipients_changed: reply.recipients_changed,
        cursor: text_from_wire(reply.cursor),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::queue::{Priority, RecipientState};

    #[test]
    fn bulk_requests_round_trip_and_an_unspecified_action_is_malformed() {
        let request = BulkRequest {
            action: BulkAction::CancelSilently,
            filter: BulkFilter {
                sender: Some("alice".into()),
                sender_domain: Some("example.org".into()),
                recipient: Some("bob@example.net".into()),
                recipient_domain: Some("example.net".into()),
                state: Some(RecipientState::TempFailed),
                older_than: Some(3600),
                last_reply: Some("mailbox full".into()),
                priority: Some(Priority::new(-3).unwrap()),
                next_hop: Some("relay".into()),
            },
            dry_run: true,
            cursor: Some("c".into()),
            batch_size: 7,
            limit: 9,
        };
        let back = bulk_request_from_wire(bulk_request_to_wire(request.clone())).unwrap();
        assert_eq!(back, request);
        let unspecified = proto::BulkRequest::default();
        assert!(bulk_request_from_wire(unspecified).is_err());
    }
}
