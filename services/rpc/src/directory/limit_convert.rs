//! Conversions between the limiter types and their wire messages; wire to domain checks
//! the contract (no zero rate, period, slot count or lease; bounded keys).

use std::time::Duration;

use super::{LimitAnswer, LimitKey, RateRequest, SlotRequest};
use crate::malformed::Malformed;
use crate::proto;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn key_to_wire(key: LimitKey) -> proto::LimitKey {
    proto::LimitKey {
        limiter: key.limiter,
        values: key.values,
    }
}

pub(crate) fn key_from_wire(key: Option<proto::LimitKey>) -> Result<LimitKey, Malformed> {
    let key = key.ok_or_else(|| Malformed::missing("key"))?;
    let key = LimitKey {
        limiter: key.limiter,
        values: key.values,
    };
    match key.problem() {
        Some(problem) => Err(Malformed(problem)),
        None => Ok(key),
    }
}

fn positive(field: &str, value: u64) -> Result<u64, Malformed> {
    if value == 0 {
        return Err(Malformed(format!("{field}: must be more than zero")));
    }
    Ok(value)
}

pub(crate) fn rate_request_to_wire(request: RateRequest) -> proto::TakeRateRequest {
    proto::TakeRateRequest {
        key: Some(key_to_wire(request.key)),
        count: request.count,
        period_ms: millis(request.period),
    }
}

pub(crate) fn rate_request_from_wire(
    request: proto::TakeRateRequest,
) -> Result<RateRequest, Malformed> {
    Ok(RateRequest {
        key: key_from_wire(request.key)?,
        count: positive("count", request.count)?,
        period: Duration::from_millis(positive("period_ms", request.period_ms)?),
    })
}

pub(crate) fn slot_request_to_wire(request: SlotRequest) -> proto::TakeSlotRequest {
    proto::TakeSlotRequest {
        key: Some(key_to_wire(request.key)),
        max: request.max,
        lease_ms: millis(request.lease),
        slot: request.slot,
    }
}

pub(crate) fn slot_request_from_wire(
    request: proto::TakeSlotRequest,
) -> Result<SlotRequest, Malformed> {
    if request.slot.is_empty() || request.slot.len() > 128 {
        return Err(Malformed("slot: missing or longer than 128 bytes".into()));
    }
    Ok(SlotRequest {
        key: key_from_wire(request.key)?,
        max: u32::try_from(positive("max", request.max.into())?).unwrap_or(u32::MAX),
        lease: Duration::from_millis(positive("lease_ms", request.lease_ms)?),
        slot: request.slot,
    })
}

pub(crate) fn answer_to_wire(answer: LimitAnswer) -> proto::LimitReply {
    match answer {
        LimitAnswer::Admitted => proto::LimitReply {
            admitted: true,
            retry_after_ms: 0,
        },
        LimitAnswer::Refused { retry_after } => proto::LimitReply {
            admitted: false,
            retry_after_ms: millis(retry_after),
        },
    }
}

pub(crate) fn answer_from_wire(reply: proto::LimitReply) -> LimitAnswer {
    if reply.admitted {
        LimitAnswer::Admitted
    } else {
        LimitAnswer::Refused {
            retry_after: Duration::from_millis(reply.retry_after_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::directory::MAX_KEY_VALUE_LEN;

    fn key() -> LimitKey {
        LimitKey {
            limiter: "ip".into(),
            values: vec!["192.0.2.1".into()],
        }
    }

    #[test]
    fn requests_survive_the_wire_and_bad_ones_are_refused() {
        let rate = RateRequest {
            key: key(),
            count: 5,
            period: Duration::from_secs(60),
        };
        assert_eq!(
            rate_request_from_wire(rate_request_to_wire(rate.clone())).unwrap(),
            rate
        );
        let mut zero = rate_request_to_wire(rate.clone());
        zero.period_ms = 0;
        assert!(rate_request_from_wire(zero).is_err());
        let mut no_key = rate_request_to_wire(rate.clone());
        no_key.key = None;
        assert!(rate_request_from_wire(no_key).is_err());
        let mut long = rate_request_to_wire(rate);
        long.key.as_mut().unwrap().values = vec!["x".repeat(MAX_KEY_VALUE_LEN + 1)];
        assert!(rate_request_from_wire(long).is_err());
        let slot = SlotRequest {
            key: key(),
            max: 2,
            lease: Duration::from_secs(30),
            slot: "abc".into(),
        };
        assert_eq!(
            slot_request_from_wire(slot_request_to_wire(slot.clone())).unwrap(),
            slot
        );
        let mut unnamed = slot_request_to_wire(slot);
        unnamed.slot.clear();
        assert!(slot_request_from_wire(unnamed).is_err());
    }

    #[test]
    fn answers_survive_the_wire() {
        for answer in [
            LimitAnswer::Admitted,
            LimitAnswer::Refused {
                retry_after: Duration::from_millis(1500),
            },
        ] {
            assert_eq!(answer_from_wire(answer_to_wire(answer)), answer);
        }
    }
}
