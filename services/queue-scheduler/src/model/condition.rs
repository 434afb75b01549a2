//! Rule conditions tested against a queued message: the envelope value a variable names, and
//! whether a quota's or throttle's `match` holds.

use ferrymail_config::model::queue_limits::ListCondition;
use ferrymail_config::model::rules::Variable;
use ferrymail_rpc::queue::Envelope;

/// The value `variable` names in `envelope` for recipient `rcpt` (`None` for a recipient
/// variable without a recipient, and for the session's variables: the configuration lets
/// the queue's rules test only the sender and the recipient).
pub(crate) fn value<'a>(
    variable: Variable,
    envelope: &'a Envelope,
    rcpt: Option<&'a str>,
) -> Option<&'a str> {
    match variable {
        Variable::Rcpt => rcpt,
        Variable::RcptDomain => rcpt.map(domain),
        Variable::Sender => Some(envelope.sender.as_str()),
        Variable::SenderDomain => Some(domain(&envelope.sender)),
        Variable::RemoteIp
        | Variable::HeloDomain
        | Variable::AuthenticatedAs
        | Variable::Listener => None,
    }
}

/// Whether every one of `conditions` holds for `envelope` and recipient `rcpt`.
pub(crate) fn holds(conditions: &[ListCondition], envelope: &Envelope, rcpt: Option<&str>) -> bool {
    conditions.iter().all(|condition| {
        value(condition.variable, envelope, rcpt)
            .is_some_and(|value| !value.is_empty() && condition.values.contains(value))
    })
}

/// Whether `conditions` test a recipient variable.
pub(crate) fn tests_recipients(conditions: &[ListCondition]) -> bool {
    conditions
        .iter()
        .any(|c| matches!(c.variable, Variable::Rcpt | Variable::RcptDomain))
}

/// Whether `conditions` hold for `envelope` and one of `recipients` at least (or for the
/// envelope alone when they test no recipient).
pub(crate) fn holds_for_any<'r>(
    conditions: &[ListCondition],
    envelope: &Envelope,
    mut recipients: impl Iterator<Item = &'r str>,
) -> bool {
    if !tests_recipients(conditions) {
        return holds(conditions, envelope, None);
    }
    recipients.any(|rcpt| holds(conditions, envelope, Some(rcpt)))
}

/// The domain of `address` (empty when it has none).
pub(crate) fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

#[cfg(test)]
mod tests {
    use ferrymail_config::model::lists::CompiledList;
    use ferrymail_config::model::rules::ListRef;

    use super::*;

    fn condition(variable: Variable, values: &[&str]) -> ListCondition {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        ListCondition {
            variable,
            list: ListRef::Directory {
                directory: "d".into(),
                list: "l".into(),
            },
            values: CompiledList::new(&values),
        }
    }

    fn envelope(sender: &str) -> Envelope {
        Envelope {
            sender: sender.into(),
            ..Envelope::default()
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let conditions = [
            condition(Variable::SenderDomain, &["example.org"]),
            condition(Variable::RcptDomain, &["example.net"]),
        ];
        let from = envelope("a@Example.ORG");
        assert!(holds(&conditions, &from, Some("b@example.net")));
        assert!(!holds(&conditions, &from, Some("b@example.com")));
        assert!(!holds(
            &conditions,
            &envelope("a@other.test"),
            Some("b@example.net")
        ));
        assert!(
            !holds(&conditions, &from, None),
            "a recipient condition needs a recipient"
        );
        assert!(holds(&[], &from, None), "no condition: everything");
    }

    #[test]
    fn the_null_sender_matches_no_list() {
        let conditions = [condition(Variable::Sender, &[""])];
        assert!(!holds(&conditions, &envelope(""), None));
    }

    #[test]
    fn any_recipient_or_the_envelope_alone() {
        let by_rcpt = [condition(Variable::Rcpt, &["vip@example.net"])];
        let from = envelope("a@example.org");
        let rcpts = ["x@example.net", "VIP@example.net"];
        assert!(holds_for_any(&by_rcpt, &from, rcpts.into_iter()));
        assert!(!holds_for_any(
            &by_rcpt,
            &from,
            ["x@example.net"].into_iter()
        ));
        let by_sender = [condition(Variable::Sender, &["a@example.org"])];
        assert!(holds_for_any(&by_sender, &from, std::iter::empty()));
    }
}
