//! Conversions between the directory domain types and their wire messages.
//!
//! Domain to wire cannot fail. Wire to domain checks the contract: an unspecified or unknown
//! enum, a reply code out of range, values outside FOUND are [`Malformed`], never a panic and
//! never quietly read as "no".

use std::time::{Duration, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroize;

use super::{
    Answer, AuthRequest, Expansion, Mechanism, Reachability, RemoteReply, RemoteState, Verdict,
};
use crate::malformed::Malformed;
use crate::proto;

/// The wire form of a request holds a copy of the password: wiped when the message is
/// dropped (once encoded by the client, once read by the server).
impl Drop for proto::AuthenticateRequest {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

pub(crate) fn auth_request_to_wire(request: AuthRequest) -> proto::AuthenticateRequest {
    let mechanism = match request.mechanism {
        Mechanism::Plain => proto::Mechanism::Plain,
        Mechanism::Login => proto::Mechanism::Login,
    };
    proto::AuthenticateRequest {
        directory: request.directory,
        mechanism: mechanism.into(),
        username: request.username,
        secret: request.secret.expose_secret().to_vec(),
        authzid: request.authzid,
        client_address: request.client.to_string(),
    }
}

pub(crate) fn auth_request_from_wire(
    mut request: proto::AuthenticateRequest,
) -> Result<AuthRequest, Malformed> {
    let mechanism = match proto::Mechanism::try_from(request.mechanism) {
        Ok(proto::Mechanism::Plain) => Mechanism::Plain,
        Ok(proto::Mechanism::Login) => Mechanism::Login,
        Ok(proto::Mechanism::Unspecified) | Err(_) => {
            return Err(Malformed::enum_value("mechanism", request.mechanism));
        }
    };
    let client = request.client_address.parse().map_err(|_| {
        Malformed(format!(
            "client_address: {:?} is not an IP address",
            request.client_address
        ))
    })?;
    // Moved, not copied, so no stray copy of the password outlives the request.
    let secret = SecretSlice::from(std::mem::take(&mut request.secret));
    // Taken rather than moved out: the message wipes its secret when dropped.
    Ok(AuthRequest {
        directory: std::mem::take(&mut request.directory),
        mechanism,
        username: std::mem::take(&mut request.username),
        secret,
        authzid: request.authzid.take(),
        client,
    })
}

fn reply_to_wire(reply: RemoteReply) -> proto::RemoteReply {
    proto::RemoteReply {
        code: reply.code.into(),
        text: reply.text,
    }
}

fn reply_from_wire(reply: proto::RemoteReply) -> Result<RemoteReply, Malformed> {
    let code = match reply.code {
        0 | 100..=999 => u16::try_from(reply.code).ok(),
        _ => None,
    }
    .ok_or_else(|| Malformed(format!("reply code {} is not 0 or 100..=999", reply.code)))?;
    Ok(RemoteReply {
        code,
        text: reply.text,
    })
}

fn optional_reply_from_wire(
    reply: Option<proto::RemoteReply>,
) -> Result<Option<RemoteReply>, Malformed> {
    reply.map(reply_from_wire).transpose()
}

pub(crate) fn answer_to_wire(answer: Answer) -> proto::Answer {
    let verdict = match answer.verdict {
        Verdict::Yes => proto::Verdict::Yes,
        Verdict::No => proto::Verdict::No,
        Verdict::TemporaryFailure => proto::Verdict::TemporaryFailure,
        Verdict::Refused => proto::Verdict::Refused,
        Verdict::Blocked => proto::Verdict::Blocked,
    };
    proto::Answer {
        verdict: verdict.into(),
        reply: answer.reply.map(reply_to_wire),
    }
}

pub(crate) fn answer_from_wire(answer: proto::Answer) -> Result<Answer, Malformed> {
    let verdict = match proto::Verdict::try_from(answer.verdict) {
        Ok(proto::Verdict::Yes) => Verdict::Yes,
        Ok(proto::Verdict::No) => Verdict::No,
        Ok(proto::Verdict::TemporaryFailure) => Verdict::TemporaryFailure,
        Ok(proto::Verdict::Refused) => Verdict::Refused,
        Ok(proto::Verdict::Blocked) => Verdict::Blocked,
        Ok(proto::Verdict::Unspecified) | Err(_) => {
            return Err(Malformed::enum_value("verdict", answer.verdict));
        }
    };
    Ok(Answer {
        verdict,
        reply: optional_reply_from_wire(answer.reply)?,
    })
}

pub(crate) fn expansion_to_wire(expansion: Expansion) -> proto::Expansion {
    use proto::ExpansionResult as Wire;
    let (result, values, reply) = match expansion {
        Expansion::Found { values, reply } => (Wire::Found, values, reply),
        Expansion::NotFound { reply } => (Wire::NotFound, Vec::new(), reply),
        Expansion::CannotTell { reply } => (Wire::CannotTell, Vec::new(), reply),
        Expansion::TemporaryFailure { reply } => (Wire::TemporaryFailure, Vec::new(), reply),
    };
    proto::Expansion {
        result: result.into(),
        values,
        reply: reply.map(reply_to_wire),
    }
}

pub(crate) fn expansion_from_wire(expansion: proto::Expansion) -> Result<Expansion, Malformed> {
    use proto::ExpansionResult as Wire;
    let reply = optional_reply_from_wire(expansion.reply)?;
    let result = expansion.result;
    let outcome = match Wire::try_from(result) {
        Ok(Wire::Found) => {
            return Ok(Expansion::Found {
                values: expansion.values,
                reply,
            });
        }
        Ok(Wire::NotFound) => Expansion::NotFound { reply },
        Ok(Wire::CannotTell) => Expansion::CannotTell { reply },
        Ok(Wire::TemporaryFailure) => Expansion::TemporaryFailure { reply },
        Ok(Wire::Unspecified) | Err(_) => return Err(Malformed::enum_value("result", result)),
    };
    if !expansion.values.is_empty() {
        return Err(Malformed(format!(
            "values given with a result other than FOUND ({result})"
        )));
    }
    Ok(outcome)
}

pub(crate) fn remote_state_to_wire(state: RemoteState) -> proto::RemoteState {
    let (reachability, reason) = match state.reachability {
        Reachability::Reachable => (proto::Reachability::Reachable, String::new()),
        Reachability::Unreachable { reason } => (proto::Reachability::Unreachable, reason),
    };
    // A clock before 1970 is reported as the epoch rather than refused.
    let checked_at_unix_ms = state
        .checked_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    proto::RemoteState {
        remote: state.remote,
        reachability: reachability.into(),
        checked_at_unix_ms,
        reason,
    }
}

pub(crate) fn remote_state_from_wire(state: proto::RemoteState) -> Result<RemoteState, Malformed> {
    if state.remote.is_empty() || state.remote.chars().any(char::is_control) {
        return Err(Malformed(format!(
            "remote: {:?} is not a remote id",
            state.remote
        )));
    }
    let checked_at = u64::try_from(state.checked_at_unix_ms)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .ok_or_else(|| {
            Malformed(format!(
                "checked_at_unix_ms: {} is not a time",
                state.checked_at_unix_ms
            ))
        })?;
    let reachability = match proto::Reachability::try_from(state.reachability) {
        Ok(proto::Reachability::Reachable) if state.reason.is_empty() => Reachability::Reachable,
        Ok(proto::Reachability::Reachable) => {
            return Err(Malformed("reason given for a reachable remote".into()));
        }
        Ok(proto::Reachability::Unreachable) if !state.reason.is_empty() => {
            Reachability::Unreachable {
                reason: state.reason,
            }
        }
        Ok(proto::Reachability::Unreachable) => {
            return Err(Malformed::missing("reason"));
        }
        Ok(proto::Reachability::Unspecified) | Err(_) => {
            return Err(Malformed::enum_value("reachability", state.reachability));
        }
    };
    Ok(RemoteState {
        remote: state.remote,
        reachability,
        checked_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn reply_code_above_999_is_malformed() {
        let wire = proto::Answer {
            verdict: proto::Verdict::Yes.into(),
            reply: Some(proto::RemoteReply {
                code: 1000,
                text: "x".into(),
            }),
        };
        assert!(answer_from_wire(wire).is_err());
    }

    #[test]
    fn reply_code_under_100_other_than_0_is_malformed() {
        let wire = proto::RemoteReply {
            code: 42,
            text: String::new(),
        };
        assert!(reply_from_wire(wire).is_err());
    }

    #[test]
    fn imap_reply_has_code_0() {
        let reply = RemoteReply::imap("NO [AUTHENTICATIONFAILED] bad");
        assert_eq!(
            reply_from_wire(reply_to_wire(reply.clone())).unwrap(),
            reply
        );
    }

    #[test]
    fn unknown_verdict_is_malformed() {
        for verdict in [0, 6, -1] {
            let wire = proto::Answer {
                verdict,
                reply: None,
            };
            assert!(answer_from_wire(wire).is_err(), "verdict {verdict}");
        }
    }

    #[test]
    fn values_outside_found_are_malformed() {
        let wire = proto::Expansion {
            result: proto::ExpansionResult::CannotTell.into(),
            values: vec!["someone@example.org".into()],
            reply: None,
        };
        assert!(expansion_from_wire(wire).is_err());
    }

    fn wire_auth(mechanism: proto::Mechanism, client_address: &str) -> proto::AuthenticateRequest {
        proto::AuthenticateRequest {
            directory: "d".into(),
            mechanism: mechanism.into(),
            username: "u".into(),
            secret: b"s".to_vec(),
            authzid: None,
            client_address: client_address.into(),
        }
    }

    #[test]
    fn unspecified_mechanism_is_malformed() {
        let wire = wire_auth(proto::Mechanism::Unspecified, "192.0.2.1");
        assert!(auth_request_from_wire(wire).is_err());
    }

    #[test]
    fn a_missing_or_bad_client_address_is_malformed() {
        for address in ["", "mx.example.org", "192.0.2.1:25", "300.1.1.1"] {
            let error = auth_request_from_wire(wire_auth(proto::Mechanism::Plain, address))
                .err()
                .unwrap_or_else(|| panic!("{address:?} accepted"));
            assert!(error.0.contains("client_address"), "{error:?}");
        }
        for address in ["192.0.2.1", "2001:db8::1"] {
            let request = auth_request_from_wire(wire_auth(proto::Mechanism::Plain, address));
            assert_eq!(request.unwrap().client.to_string(), address);
        }
    }

    fn at_ms(ms: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn wire_state(remote: &str, reachability: i32, ms: i64, reason: &str) -> proto::RemoteState {
        proto::RemoteState {
            remote: remote.into(),
            reachability,
            checked_at_unix_ms: ms,
            reason: reason.into(),
        }
    }

    #[test]
    fn remote_states_round_trip() {
        for reachability in [
            Reachability::Reachable,
            Reachability::Unreachable {
                reason: "127.0.0.1:25: network error: Connection refused".into(),
            },
        ] {
            let state = RemoteState {
                remote: "relay".into(),
                reachability,
                checked_at: at_ms(1_700_000_000_123),
            };
            let back = remote_state_from_wire(remote_state_to_wire(state.clone())).unwrap();
            assert_eq!(back, state);
        }
    }

    #[test]
    fn malformed_remote_states_are_refused() {
        let reachable = proto::Reachability::Reachable as i32;
        let unreachable = proto::Reachability::Unreachable as i32;
        for (wire, why) in [
            (wire_state("", reachable, 1, ""), "empty id"),
            (wire_state("a\nb", reachable, 1, ""), "control character"),
            (wire_state("relay", 0, 1, ""), "unspecified"),
            (wire_state("relay", 9, 1, ""), "unknown enum"),
            (wire_state("relay", reachable, -5, ""), "negative time"),
            (
                wire_state("relay", reachable, 1, "but why"),
                "reason when reachable",
            ),
            (
                wire_state("relay", unreachable, 1, ""),
                "no reason when unreachable",
            ),
        ] {
            assert!(remote_state_from_wire(wire).is_err(), "{why}");
        }
    }

    #[test]
    fn every_expansion_round_trips() {
        let reply = Some(RemoteReply::smtp(252, "2.1.5 Cannot VRFY user"));
        for expansion in [
            Expansion::Found {
                values: vec!["<a@example.org>".into(), "<b@example.org>".into()],
                reply: reply.clone(),
            },
            Expansion::NotFound { reply: None },
            Expansion::CannotTell {
                reply: reply.clone(),
            },
            Expansion::TemporaryFailure { reply },
        ] {
            let back = expansion_from_wire(expansion_to_wire(expansion.clone())).unwrap();
            assert_eq!(back, expansion);
        }
    }
}
