//! The JSON a hook answers (Stalwart's MTA hook response: `action`, `response`,
//! `modifications`), parsed and checked whole against the stage before any of it is used:
//! one invalid part makes the whole answer unusable, so nothing is applied half.

use serde::Deserialize;

use ferrymail_config::model::stage_rules::Stage;

use crate::address::envelope_address;
use crate::filter::{Action, Modification, Verdict};
use crate::session::Reply;

/// Why an answer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ResponseError {
    /// Not JSON, or not of the response's shape (a missing `action`, an unknown
    /// modification type, a negative index...).
    #[error("not a valid hook response: {0}")]
    Malformed(String),
    /// Of the right shape, but not valid at this stage or with this action.
    #[error("invalid hook response at {stage}: {problem}")]
    Invalid {
        /// The stage asked about.
        stage: Stage,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    Accept,
    Discard,
    Reject,
    Quarantine,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReply {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, alias = "enhanced_status")]
    enhanced_status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Read for compatibility; a verdict cannot close the session, so it is not honoured.
    #[serde(default)]
    #[allow(dead_code)]
    disconnect: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum RawModification {
    #[serde(rename = "changeFrom")]
    ChangeFrom {
        value: String,
        /// ESMTP parameters of the new sender: accepted, not used (the queue keeps none).
        #[serde(default)]
        #[allow(dead_code)]
        parameters: serde_json::Map<String, serde_json::Value>,
    },
    #[serde(rename = "addRecipient", alias = "addRcpt")]
    AddRecipient {
        value: String,
        #[serde(default)]
        #[allow(dead_code)]
        parameters: serde_json::Map<String, serde_json::Value>,
    },
    #[serde(rename = "deleteRecipient", alias = "deleteRcpt")]
    DeleteRecipient { value: String },
    #[serde(rename = "replaceContents")]
    ReplaceContents { value: String },
    #[serde(rename = "addHeader")]
    AddHeader { name: String, value: String },
    #[serde(rename = "insertHeader")]
    InsertHeader {
        index: u32,
        name: String,
        value: String,
    },
    #[serde(rename = "changeHeader")]
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    #[serde(rename = "deleteHeader")]
    DeleteHeader { index: u32, name: String },
}

#[derive(Debug, Deserialize)]
struct RawResponse {
    action: RawAction,
    #[serde(default)]
    response: Option<RawReply>,
    #[serde(default)]
    modifications: Vec<RawModification>,
}

/// The verdict in `body`, an answer about `stage` from hook `name`.
pub(crate) fn parse(body: &[u8], stage: Stage, name: &str) -> Result<Verdict, ResponseError> {
    let malformed = |e: serde_json::Error| ResponseError::Malformed(e.to_string());
    let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    // serde would also take a struct written as an array; the format has objects only.
    if !value.is_object() {
        return Err(ResponseError::Malformed("not a JSON object".to_owned()));
    }
    let raw: RawResponse = serde_json::from_value(value).map_err(malformed)?;
    let invalid = |problem: String| ResponseError::Invalid { stage, problem };
    let modifications = raw
        .modifications
        .into_iter()
        .map(|m| modification(m, stage))
        .collect::<Result<Vec<_>, String>>()
        .map_err(invalid)?;
    let action = action(raw.action, raw.response.unwrap_or_default(), name).map_err(invalid)?;
    Ok(Verdict {
        action,
        modifications,
    })
}

/// The session's action for `action`, with the reply the hook chose.
fn action(action: RawAction, reply: RawReply, name: &str) -> Result<Action, String> {
    let text = reply.message.as_deref().map(check_text).transpose()?;
    match action {
        RawAction::Reject => {
            let status = reply.status.unwrap_or(550);
            if !(400..=599).contains(&status) {
                return Err(format!("a reject needs a 4xx or 5xx status, not {status}"));
            }
            let class = status / 100;
            let enhanced = match reply.enhanced_status {
                Some(code) => check_enhanced(&code, class)?,
                None => format!("{class}.7.1"),
            };
            let reply = Reply::new(status, &enhanced, text.unwrap_or("Rejected by policy"));
            Ok(if class == 4 {
                Action::TempFail(reply)
            } else {
                Action::Reject(reply)
            })
        }
        other => {
            if let Some(status) = reply.status.filter(|s| !(200..=299).contains(s)) {
                return Err(format!("{other:?} cannot come with status {status}"));
            }
            if let Some(code) = &reply.enhanced_status {
                check_enhanced(code, 2)?;
            }
            Ok(match other {
                RawAction::Discard => Action::Discard,
                RawAction::Quarantine => Action::Quarantine(
                    text.map_or_else(|| format!("quarantined by {name}"), str::to_owned),
                ),
                _ => Action::Continue,
            })
        }
    }
}

/// A reply text: printable, one line or several separated by `\n`.
fn check_text(text: &str) -> Result<&str, String> {
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("the reply message has control characters".to_owned());
    }
    Ok(text)
}

/// An enhanced status code `class.subject.detail` (RFC 3463) of the reply's class.
fn check_enhanced(code: &str, class: u16) -> Result<String, String> {
    let parts: Vec<&str> = code.split('.').collect();
    let numeric = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
    };
    let valid = parts.len() == 3
        && parts[0] == class.to_string()
        && numeric(parts[1], 3)
        && numeric(parts[2], 3);
    if valid {
        Ok(code.to_owned())
    } else {
        Err(format!(
            "{code:?} is not an enhanced status code of class {class}"
        ))
    }
}

/// The session's modification for `raw`, if it is valid at `stage`.
fn modification(raw: RawModification, stage: Stage) -> Result<Modification, String> {
    let envelope = !matches!(stage, Stage::Connect | Stage::Ehlo);
    let message = stage == Stage::Data;
    let at = |allowed: bool, what: &str| {
        if allowed {
            Ok(())
        } else {
            Err(format!("{what} cannot be asked at {stage}"))
        }
    };
    Ok(match raw {
        RawModification::ChangeFrom { value, .. } => {
            at(envelope, "changeFrom")?;
            let address = if value.is_empty() || value == "<>" {
                String::new()
            } else {
                check_address(&value)?
            };
            Modification::ChangeSender { address }
        }
        RawModification::AddRecipient { value, .. } => {
            at(envelope, "addRecipient")?;
            Modification::AddRecipient {
                address: check_address(&value)?,
            }
        }
        RawModification::DeleteRecipient { value } => {
            at(envelope, "deleteRecipient")?;
            Modification::DeleteRecipient {
                address: check_address(&value)?,
            }
        }
        RawModification::ReplaceContents { value } => {
            at(message, "replaceContents")?;
            Modification::ReplaceBody(crlf(&value))
        }
        RawModification::AddHeader { name, value } => {
            at(message, "addHeader")?;
            check_field(&name, &value)?;
            Modification::AddHeader { name, value }
        }
        RawModification::InsertHeader { index, name, value } => {
            at(message, "insertHeader")?;
            check_field(&name, &value)?;
            Modification::InsertHeader {
                index: index as usize,
                name,
                value,
            }
        }
        RawModification::ChangeHeader { index, name, value } => {
            at(message, "changeHeader")?;
            check_field(&name, &value)?;
            check_occurrence(index, &name)?;
            Modification::ChangeHeader {
                name,
                index: index as usize,
                // As with a milter's `chgheader`, an empty value deletes the field.
                value: (!value.is_empty()).then_some(value),
            }
        }
        RawModification::DeleteHeader { index, name } => {
            at(message, "deleteHeader")?;
            check_field(&name, "")?;
            check_occurrence(index, &name)?;
            Modification::ChangeHeader {
                name,
                index: index as usize,
                value: None,
            }
        }
    })
}

/// `value` (optionally in angle brackets) as an address with a lower-case domain.
fn check_address(value: &str) -> Result<String, String> {
    let bare = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value);
    envelope_address(bare).ok_or_else(|| format!("{value:?} is not a valid address"))
}

/// A header field's name (RFC 5322 §2.2: printable ASCII but `:`) and value (no line
/// ends but folding, no other control characters than tab).
fn check_field(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let folding = match b {
            b'\r' => {
                bytes.get(i + 1) == Some(&b'\n') && matches!(bytes.get(i + 2), Some(b' ' | b'\t'))
            }
            b'\n' => {
                i > 0 && bytes[i - 1] == b'\r' && matches!(bytes.get(i + 1), Some(b' ' | b'\t'))
            }
            b'\t' => true,
            _ => !b.is_ascii_control(),
        };
        if !folding {
            return Err(format!(
                "the value of header {name:?} has a line end or control character"
            ));
        }
    }
    Ok(())
}

/// The occurrence of a field changed or deleted counts from 1, as a milter's.
fn check_occurrence(index: u32, name: &str) -> Result<(), String> {
    if index == 0 {
        return Err(format!(
            "the index of header {name:?} counts from 1 (its first occurrence)"
        ));
    }
    Ok(())
}

/// `text` with every line end (LF, CR or CRLF) as CRLF, as the message is kept.
fn crlf(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    out
}
