//! The queue id a client proposes for its message (the ingress, which has already written it
//! in the `Received` header): accepted when it is a queue id of about the current time.
//!
//! The id's time is the message's arrival and orders the queue, and the record of an enqueue
//! that makes a repeated enqueue write nothing is kept for [`RETENTION`]: an id from far away
//! in time would misplace the message, or slip past that record.

use std::time::{Duration, SystemTime};

use ferrymail_rpc::queue::{QueueError, QueueId};

use crate::model::enqueued::RETENTION;
use crate::model::queue_id::{MessageId, unix_millis};

/// How far ahead of the queue's clock a proposed id may be: clocks of pods differ a little.
const AHEAD: Duration = Duration::from_secs(5 * 60);

/// The id to queue a message under: `proposed`, checked against `now`, or a fresh one.
pub(crate) fn message_id(
    proposed: Option<&QueueId>,
    now: SystemTime,
) -> Result<MessageId, QueueError> {
    let Some(proposed) = proposed else {
        return Ok(MessageId::generate(now));
    };
    let id = MessageId::from_wire(proposed)
        .map_err(|e| QueueError::InvalidArgument(format!("queue_id: {e}")))?;
    let (at, now_ms) = (id.unix_millis(), unix_millis(now));
    let behind = millis(RETENTION) / 2;
    if at > now_ms.saturating_add(millis(AHEAD)) || at < now_ms.saturating_sub(behind) {
        return Err(QueueError::InvalidArgument(format!(
            "queue_id {id} is not of the current time"
        )));
    }
    Ok(id)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ids_of_the_current_time_are_taken_and_others_refused() {
        let now = SystemTime::now();
        let fresh = QueueId::generate(now);
        assert_eq!(
            message_id(Some(&fresh), now).unwrap().to_wire(),
            fresh,
            "taken as given"
        );
        let old = QueueId::generate(now - RETENTION);
        let future = QueueId::generate(now + Duration::from_secs(3600));
        for refused in [old, future, QueueId::new("garbage")] {
            let outcome = message_id(Some(&refused), now);
            assert!(
                matches!(outcome, Err(QueueError::InvalidArgument(_))),
                "{refused}: {outcome:?}"
            );
        }
        assert!(message_id(None, now).is_ok());
    }
}
