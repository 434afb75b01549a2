//! What holds a delivery back before any connection: a paused destination (a recipient
//! domain, a `remote.<id>`, the whole queue) or a dead one (a remote whose connections keep
//! failing). Either defers the recipients without an attempt, with a reason that starts with
//! [`PAUSED`] or [`SUSPENDED`] and is kept as the recipient's last reply, so that `queue show`
//! tells why it waits and a resume finds what its pause deferred.

use std::time::Duration;

use ferrymail_outbound::Outcome;
use ferrymail_rpc::queue::Recipient;

use crate::model::paused::{PauseScope, Pauses};

/// The start of the reason of a recipient deferred by a pause.
pub(crate) const PAUSED: &str = "delivery paused";

/// The start of the reason of a recipient deferred because its destination is dead.
pub(crate) use ferrymail_outbound::host_health::SUSPENDED;

/// How long a paused recipient waits before it is checked again, when no resume makes it
/// due sooner: long enough that a large paused queue costs little, short enough that a
/// resume whose rescan failed still takes effect soon.
pub(crate) const PAUSE_RECHECK: Duration = Duration::from_secs(300);

/// Whether a deferral's `reason` is kept as the recipient's last reply.
pub(crate) fn is_noted(reason: &str) -> bool {
    reason.starts_with(PAUSED) || reason.starts_with(SUSPENDED)
}

/// Whether `outcome` defers a recipient because its destination is dead.
pub(crate) fn is_suspension(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Deferred { reason, .. } if reason.starts_with(SUSPENDED))
}

/// The reason of a recipient held back by `scope`.
pub(crate) fn paused_reason(scope: &PauseScope) -> String {
    format!("{PAUSED}: {} is paused", scope.describe())
}

/// The reason of a recipient of a dead destination, which failed for `failure`.
pub(crate) fn suspended_reason(failure: &str) -> String {
    format!("{SUSPENDED}: {failure}")
}

/// Recipients a check let through, and the outcomes of those it held back.
pub(crate) type Admitted = (Vec<(u32, Recipient)>, Vec<(u32, Outcome)>);

/// Splits `recipients` of a delivery through `remote` (`None` for MX) into those `pauses`
/// let through and the outcomes of those they hold back, deferred until `until_ms`.
pub(crate) fn split_paused(
    pauses: &Pauses,
    remote: Option<&str>,
    recipients: Vec<(u32, Recipient)>,
    until_ms: u64,
) -> Admitted {
    let mut through = Vec::with_capacity(recipients.len());
    let mut held = Vec::new();
    for (index, recipient) in recipients {
        match pauses.holding(&domain(&recipient.address), remote) {
            Some(scope) => held.push((
                index,
                Outcome::Deferred {
                    until_ms,
                    reason: paused_reason(scope),
                },
            )),
            None => through.push((index, recipient)),
        }
    }
    (through, held)
}

/// The domain of `address`, lower case, without a trailing dot.
fn domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_pause_holds_back_only_its_recipients_and_is_noted() {
        let pauses = Pauses::from(vec![PauseScope::Domain("example.net".into())]);
        let recipients = vec![
            (0, Recipient::new("a@Example.NET.")),
            (1, Recipient::new("b@example.org")),
        ];
        let (through, held) = split_paused(&pauses, Some("relay"), recipients, 42);
        assert_eq!(through.len(), 1);
        assert_eq!(through[0].0, 1);
        let (index, outcome) = &held[0];
        assert_eq!(*index, 0);
        let Outcome::Deferred { until_ms, reason } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(*until_ms, 42);
        assert!(is_noted(reason), "{reason}");
        assert!(!is_noted("held back by queue.throttle.x"));
    }

    #[test]
    fn remote_and_whole_queue_pauses() {
        let remote = Pauses::from(vec![PauseScope::Remote("relay".into())]);
        let one = || vec![(0, Recipient::new("a@example.org"))];
        assert_eq!(split_paused(&remote, Some("relay"), one(), 1).1.len(), 1);
        assert_eq!(split_paused(&remote, Some("other"), one(), 1).1.len(), 0);
        assert_eq!(split_paused(&remote, None, one(), 1).1.len(), 0);
        let all = Pauses::from(vec![PauseScope::All]);
        assert_eq!(split_paused(&all, None, one(), 1).1.len(), 1);
    }
}
