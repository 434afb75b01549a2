//! Conversions between the queue domain types and their wire messages.
//!
//! Domain to wire cannot fail. Wire to domain checks the contract (enums specified, priority in
//! range, IP address parseable, queue ids present) and reports a [`Malformed`] message, never a
//! panic. On the wire "none" is 0 for times and empty for tokens, filters and the client address.

use super::{
    BodyType, DsnReturn, Envelope, ListFilter, ListPage, ListRequest, MessageDetail,
    MessageSummary, Notify, NotifyOn, Priority, QueueId, QueueStats, Recipient, RecipientCounts,
    RecipientState, RecipientStatus,
};
use crate::malformed::Malformed;
use crate::proto;

fn time_to_wire(time: Option<u64>) -> u64 {
    time.unwrap_or(0)
}

fn time_from_wire(time: u64) -> Option<u64> {
    (time != 0).then_some(time)
}

pub(crate) fn text_from_wire(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub(crate) fn queue_id_from_wire(id: String) -> Result<QueueId, Malformed> {
    if id.is_empty() {
        return Err(Malformed::missing("queue_id"));
    }
    Ok(QueueId::new(id))
}

pub(crate) fn priority_from_wire(priority: i32) -> Result<Priority, Malformed> {
    Priority::new(priority).ok_or_else(|| Malformed(format!("priority {priority} outside -9..=9")))
}

fn notify_to_wire(notify: Notify) -> Vec<i32> {
    let wire = match notify {
        Notify::Default => Vec::new(),
        Notify::Never => vec![proto::Notify::Never],
        Notify::On(on) => [
            (on.success(), proto::Notify::Success),
            (on.failure(), proto::Notify::Failure),
            (on.delay(), proto::Notify::Delay),
        ]
        .into_iter()
        .filter_map(|(set, keyword)| set.then_some(keyword))
        .collect(),
    };
    wire.into_iter().map(i32::from).collect()
}

fn notify_from_wire(keywords: &[i32]) -> Result<Notify, Malformed> {
    if keywords.is_empty() {
        return Ok(Notify::Default);
    }
    let (mut success, mut failure, mut delay, mut never) = (false, false, false, false);
    for &keyword in keywords {
        match proto::Notify::try_from(keyword) {
            Ok(proto::Notify::Success) => success = true,
            Ok(proto::Notify::Failure) => failure = true,
            Ok(proto::Notify::Delay) => delay = true,
            Ok(proto::Notify::Never) => never = true,
            Ok(proto::Notify::Unspecified) | Err(_) => {
                return Err(Malformed::enum_value("notify", keyword));
            }
        }
    }
    match (never, NotifyOn::new(success, failure, delay)) {
        (true, None) => Ok(Notify::Never),
        (false, Some(on)) => Ok(Notify::On(on)),
        (true, Some(_)) | (false, None) => Err(Malformed(
            "notify: NEVER combined with other conditions".to_owned(),
        )),
    }
}

fn recipient_to_wire(recipient: Recipient) -> proto::Recipient {
    proto::Recipient {
        address: recipient.address,
        notify: notify_to_wire(recipient.notify),
        orcpt: recipient.orcpt,
    }
}

fn recipient_from_wire(recipient: proto::Recipient) -> Result<Recipient, Malformed> {
    Ok(Recipient {
        notify: notify_from_wire(&recipient.notify)?,
        address: recipient.address,
        orcpt: recipient.orcpt,
    })
}

fn ret_to_wire(ret: Option<DsnReturn>) -> proto::DsnReturn {
    match ret {
        None => proto::DsnReturn::Unspecified,
        Some(DsnReturn::Full) => proto::DsnReturn::Full,
        Some(DsnReturn::Headers) => proto::DsnReturn::Hdrs,
    }
}

fn ret_from_wire(ret: i32) -> Result<Option<DsnReturn>, Malformed> {
    // Here UNSPECIFIED is meaningful: the client gave no RET parameter.
    match proto::DsnReturn::try_from(ret) {
        Ok(proto::DsnReturn::Unspecified) => Ok(None),
        Ok(proto::DsnReturn::Full) => Ok(Some(DsnReturn::Full)),
        Ok(proto::DsnReturn::Hdrs) => Ok(Some(DsnReturn::Headers)),
        Err(_) => Err(Malformed::enum_value("ret", ret)),
    }
}

fn body_type_to_wire(body_type: BodyType) -> proto::BodyType {
    match body_type {
        BodyType::SevenBit => proto::BodyType::SevenBit,
        BodyType::EightBitMime => proto::BodyType::EightBitMime,
        BodyType::BinaryMime => proto::BodyType::BinaryMime,
    }
}

fn body_type_from_wire(body_type: i32) -> Result<BodyType, Malformed> {
    match proto::BodyType::try_from(body_type) {
        Ok(proto::BodyType::SevenBit) => Ok(BodyType::SevenBit),
        Ok(proto::BodyType::EightBitMime) => Ok(BodyType::EightBitMime),
        Ok(proto::BodyType::BinaryMime) => Ok(BodyType::BinaryMime),
        Ok(proto::BodyType::Unspecified) | Err(_) => {
            Err(Malformed::enum_value("body_type", body_type))
        }
    }
}

pub(crate) fn envelope_to_wire(envelope: Envelope) -> proto::Envelope {
    proto::Envelope {
        sender: envelope.sender,
        recipients: envelope
            .recipients
            .into_iter()
            .map(recipient_to_wire)
            .collect(),
        ret: ret_to_wire(envelope.ret).into(),
        envid: envelope.envid,
        declared_size: envelope.declared_size,
        priority: envelope.priority.get().into(),
        hold_until: time_to_wire(envelope.hold_until),
        requiretls: envelope.requiretls,
        smtputf8: envelope.smtputf8,
        body_type: body_type_to_wire(envelope.body_type).into(),
        client_ip: envelope
            .client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        helo: envelope.helo,
        authenticated_as: envelope.authenticated_as,
        trace_parent: envelope.trace_parent,
        queue_id: envelope.queue_id.map(QueueId::into_string),
        quarantine: envelope.quarantine,
    }
}

pub(crate) fn envelope_from_wire(envelope: proto::Envelope) -> Result<Envelope, Malformed> {
    let client_ip = match envelope.client_ip.as_str() {
        "" => None,
        ip => Some(
            ip.parse()
                .map_err(|_| Malformed(format!("client_ip: {ip:?} is not an IP address")))?,
        ),
    };
    Ok(Envelope {
        recipients: envelope
            .recipients
            .into_iter()
            .map(recipient_from_wire)
            .collect::<Result<_, _>>()?,
        ret: ret_from_wire(envelope.ret)?,
        priority: priority_from_wire(envelope.priority)?,
        body_type: body_type_from_wire(envelope.body_type)?,
        client_ip,
        sender: envelope.sender,
        envid: envelope.envid,
        declared_size: envelope.declared_size,
        hold_until: time_from_wire(envelope.hold_until),
        requiretls: envelope.requiretls,
        smtputf8: envelope.smtputf8,
        helo: envelope.helo,
        authenticated_as: envelope.authenticated_as,
        trace_parent: envelope.trace_parent,
        queue_id: envelope.queue_id.map(QueueId::new),
        quarantine: envelope.quarantine,
    })
}

pub(crate) fn state_to_wire(state: RecipientState) -> proto::RecipientState {
    match state {
        RecipientState::Pending => proto::RecipientState::Pending,
        RecipientState::Delivered => proto::RecipientState::Delivered,
        RecipientState::TempFailed => proto::RecipientState::TempFailed,
        RecipientState::PermFailed => proto::RecipientState::PermFailed,
        RecipientState::Cancelled => proto::RecipientState::Cancelled,
    }
}

pub(crate) fn state_from_wire(state: i32) -> Result<RecipientState, Malformed> {
    match proto::RecipientState::try_from(state) {
        Ok(proto::RecipientState::Pending) => Ok(RecipientState::Pending),
        Ok(proto::RecipientState::Delivered) => Ok(RecipientState::Delivered),
        Ok(proto::RecipientState::TempFailed) => Ok(RecipientState::TempFailed),
        Ok(proto::RecipientState::PermFailed) => Ok(RecipientState::PermFailed),
        Ok(proto::RecipientState::Cancelled) => Ok(RecipientState::Cancelled),
        Ok(proto::RecipientState::Unspecified) | Err(_) => {
            Err(Malformed::enum_value("state", state))
        }
    }
}

pub(crate) fn list_request_to_wire(request: ListRequest) -> proto::ListRequest {
    proto::ListRequest {
        page_size: request.page_size,
        page_token: request.page_token.unwrap_or_default(),
        filter: Some(proto::ListFilter {
            sender: request.filter.sender.unwrap_or_default(),
            recipient_domain: request.filter.recipient_domain.unwrap_or_default(),
            state: request
                .filter
                .state
                .map(|state| state_to_wire(state).into()),
            recipient: request.filter.recipient.unwrap_or_default(),
            text: request.filter.text.unwrap_or_default(),
            due_before: request.filter.due_before,
            due_after: request.filter.due_after,
        }),
    }
}

pub(crate) fn list_request_from_wire(
    request: proto::ListRequest,
) -> Result<ListRequest, Malformed> {
    // An absent filter message is the empty filter.
    let filter = request.filter.unwrap_or_default();
    Ok(ListRequest {
        page_size: request.page_size,
        page_token: text_from_wire(request.page_token),
        filter: ListFilter {
            sender: text_from_wire(filter.sender),
            recipient_domain: text_from_wire(filter.recipient_domain),
            state: filter.state.map(state_from_wire).transpose()?,
            recipient: text_from_wire(filter.recipient),
            text: text_from_wire(filter.text),
            due_before: filter.due_before,
            due_after: filter.due_after,
        },
    })
}

fn summary_to_wire(summary: MessageSummary) -> proto::MessageSummary {
    proto::MessageSummary {
        queue_id: summary.queue_id.into_string(),
        sender: summary.sender,
        recipients: summary.recipients,
        size: summary.size,
        arrival: summary.arrival,
        next_attempt: time_to_wire(summary.next_attempt),
        priority: summary.priority.get().into(),
        held: summary.held,
    }
}

fn summary_from_wire(summary: proto::MessageSummary) -> Result<MessageSummary, Malformed> {
    Ok(MessageSummary {
        queue_id: queue_id_from_wire(summary.queue_id)?,
        sender: summary.sender,
        recipients: summary.recipients,
        size: summary.size,
        arrival: summary.arrival,
        next_attempt: time_from_wire(summary.next_attempt),
        priority: priority_from_wire(summary.priority)?,
        held: summary.held,
    })
}

pub(crate) fn list_page_to_wire(page: ListPage) -> proto::ListReply {
    proto::ListReply {
        messages: page.messages.into_iter().map(summary_to_wire).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

pub(crate) fn list_page_from_wire(reply: proto::ListReply) -> Result<ListPage, Malformed> {
    Ok(ListPage {
        messages: reply
            .messages
            .into_iter()
            .map(summary_from_wire)
            .collect::<Result<_, _>>()?,
        next_page_token: text_from_wire(reply.next_page_token),
    })
}

fn recipient_status_to_wire(status: RecipientStatus) -> proto::RecipientStatus {
    proto::RecipientStatus {
        address: status.address,
        state: state_to_wire(status.state).into(),
        attempts: status.attempts,
        next_attempt: time_to_wire(status.next_attempt),
        last_reply: status.last_reply,
    }
}

fn recipient_status_from_wire(
    status: proto::RecipientStatus,
) -> Result<RecipientStatus, Malformed> {
    Ok(RecipientStatus {
        state: state_from_wire(status.state)?,
        address: status.address,
        attempts: status.attempts,
        next_attempt: time_from_wire(status.next_attempt),
        last_reply: status.last_reply,
    })
}

pub(crate) fn detail_to_wire(detail: MessageDetail) -> proto::MessageDetail {
    proto::MessageDetail {
        summary: Some(summary_to_wire(detail.summary)),
        recipients: detail
            .recipients
            .into_iter()
            .map(recipient_status_to_wire)
            .collect(),
    }
}

pub(crate) fn detail_from_wire(detail: proto::MessageDetail) -> Result<MessageDetail, Malformed> {
    let summary = detail
        .summary
        .ok_or_else(|| Malformed::missing("summary"))?;
    Ok(MessageDetail {
        summary: summary_from_wire(summary)?,
        recipients: detail
            .recipients
            .into_iter()
            .map(recipient_status_from_wire)
            .collect::<Result<_, _>>()?,
    })
}

pub(crate) fn stats_to_wire(stats: QueueStats) -> proto::StatsReply {
    let counts = stats.recipients;
    proto::StatsReply {
        messages: stats.messages,
        recipients_by_state: Some(proto::RecipientCounts {
            pending: counts.pending,
            delivered: counts.delivered,
            temp_failed: counts.temp_failed,
            perm_failed: counts.perm_failed,
            cancelled: counts.cancelled,
        }),
        bytes: stats.bytes,
        oldest_arrival: time_to_wire(stats.oldest_arrival),
    }
}

pub(crate) fn stats_from_wire(stats: proto::StatsReply) -> Result<QueueStats, Malformed> {
    let counts = stats
        .recipients_by_state
        .ok_or_else(|| Malformed::missing("recipients_by_state"))?;
    Ok(QueueStats {
        messages: stats.messages,
        recipients: RecipientCounts {
            pending: counts.pending,
            delivered: counts.delivered,
            temp_failed: counts.temp_failed,
            perm_failed: counts.perm_failed,
            cancelled: counts.cancelled,
        },
        bytes: stats.bytes,
        oldest_arrival: time_from_wire(stats.oldest_arrival),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn full_envelope() -> Envelope {
        Envelope {
            sender: "alice@example.org".into(),
            recipients: vec![
                Recipient::new("bob@example.net"),
                Recipient {
                    address: "carol@example.net".into(),
                    notify: Notify::On(NotifyOn::new(true, false, true).unwrap()),
                    orcpt: Some("rfc822;carol@example.net".into()),
                },
                Recipient {
                    address: "dave@example.net".into(),
                    notify: Notify::Never,
                    orcpt: None,
                },
            ],
            ret: Some(DsnReturn::Headers),
            envid: Some("QQ314159".into()),
            declared_size: Some(3_000_000),
            priority: Priority::new(-4).unwrap(),
            hold_until: Some(1_800_000_000),
            requiretls: true,
            smtputf8: true,
            body_type: BodyType::EightBitMime,
            client_ip: Some("2001:db8::25".parse().unwrap()),
            helo: "mx.example.org".into(),
            authenticated_as: Some("alice".into()),
            trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            queue_id: Some(QueueId::new("01J9ZK3M5Q8W2XGJ4R6T0B7C1D")),
            quarantine: Some("GTUBE".into()),
        }
    }

    #[test]
    fn envelopes_round_trip() {
        for envelope in [Envelope::default(), full_envelope()] {
            let back = envelope_from_wire(envelope_to_wire(envelope.clone())).unwrap();
            assert_eq!(back, envelope);
        }
    }

    #[test]
    fn unspecified_body_type_is_malformed() {
        let mut wire = envelope_to_wire(Envelope::default());
        wire.body_type = proto::BodyType::Unspecified.into();
        assert!(envelope_from_wire(wire).is_err());
    }

    #[test]
    fn priority_out_of_range_is_malformed() {
        let mut wire = envelope_to_wire(Envelope::default());
        wire.priority = 10;
        assert!(envelope_from_wire(wire).is_err());
    }

    #[test]
    fn bad_client_ip_is_malformed() {
        let mut wire = envelope_to_wire(Envelope::default());
        wire.client_ip = "not-an-ip".into();
        assert!(envelope_from_wire(wire).is_err());
    }

    #[test]
    fn never_with_other_conditions_is_malformed() {
        let keywords = [proto::Notify::Never.into(), proto::Notify::Success.into()];
        assert!(notify_from_wire(&keywords).is_err());
        assert!(notify_from_wire(&[0]).is_err());
    }

    #[test]
    fn unspecified_state_filter_is_malformed() {
        let wire = proto::ListRequest {
            filter: Some(proto::ListFilter {
                state: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(list_request_from_wire(wire).is_err());
    }

    #[test]
    fn detail_without_summary_is_malformed() {
        assert!(detail_from_wire(proto::MessageDetail::default()).is_err());
    }
}
