//! A milter's replies (`SMFIR_*`), read into actions and modifications, and the answer to one
//! step mapped to a [`Verdict`].

use super::codec::{Packet, split_strings, take_u32};
use super::error::MilterError;
use super::negotiation::{Options, action, step};
use crate::filter::{Action, Modification, Verdict};
use crate::session::Reply;

/// One reply packet, understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Response {
    /// `c`: go on.
    Continue,
    /// `a`: accept, no more questions for this message (or connection).
    Accept,
    /// `r`: refuse permanently.
    Reject,
    /// `t`: refuse for now.
    TempFail,
    /// `d`: accept and drop.
    Discard,
    /// `y`: refuse with the milter's own reply.
    ReplyCode(Reply),
    /// `4` or `f`: the milter wants the session ended.
    Shutdown,
    /// `s`: send no more body, go to end of message.
    Skip,
    /// `p`: still working, keep waiting.
    Progress,
    /// `q`: hold the message, with a reason (end of message only).
    Quarantine(String),
    /// `b`: one chunk of a replacement body (end of message only).
    BodyChunk(Vec<u8>),
    /// A header or envelope change (end of message only).
    Modification(Modification),
}

impl Response {
    /// Reads `packet` as a reply under the agreed `options`; a modification the milter did
    /// not negotiate is an error.
    pub(crate) fn read(packet: &Packet, options: &Options) -> Result<Self, MilterError> {
        let data = packet.data.as_slice();
        let needs = |bit: u32, name: &str| {
            if options.allows(bit) {
                Ok(())
            } else {
                Err(MilterError::NotNegotiated(format!(
                    "{name} without having negotiated it"
                )))
            }
        };
        Ok(match packet.code {
            b'c' => Response::Continue,
            b'a' => Response::Accept,
            b'r' => Response::Reject,
            b't' => Response::TempFail,
            b'd' => Response::Discard,
            b'y' => Response::ReplyCode(reply_code(data)?),
            b'4' | b'f' => Response::Shutdown,
            b's' => Response::Skip,
            b'p' => Response::Progress,
            b'q' => {
                needs(action::QUARANTINE, "quarantine")?;
                Response::Quarantine(first_string(data)?)
            }
            b'b' => {
                needs(action::CHGBODY, "replbody")?;
                Response::BodyChunk(data.to_vec())
            }
            b'+' => {
                needs(action::ADDRCPT, "addrcpt")?;
                let address = envelope_address(&first_string(data)?)?;
                Response::Modification(Modification::AddRecipient { address })
            }
            b'2' => {
                needs(action::ADDRCPT_PAR, "addrcpt_par")?;
                // ESMTP parameters of an added recipient (NOTIFY, ORCPT) are not kept.
                let address = envelope_address(&first_string(data)?)?;
                Response::Modification(Modification::AddRecipient { address })
            }
            b'-' => {
                needs(action::DELRCPT, "delrcpt")?;
                let address = envelope_address(&first_string(data)?)?;
                Response::Modification(Modification::DeleteRecipient { address })
            }
            b'e' => {
                needs(action::CHGFROM, "chgfrom")?;
                // ESMTP parameters of the new sender are not kept, as Postfix does by default.
                let address = envelope_address(&first_string(data)?)?;
                Response::Modification(Modification::ChangeSender { address })
            }
            b'h' => {
                needs(action::ADDHDRS, "addheader")?;
                let (name, value) = header(data, options)?;
                Response::Modification(Modification::AddHeader { name, value })
            }
            b'i' => {
                needs(action::ADDHDRS, "insheader")?;
                let (index, rest) = take_u32(data)?;
                let (name, value) = header(rest, options)?;
                Response::Modification(Modification::InsertHeader {
                    index: usize::try_from(index).unwrap_or(usize::MAX),
                    name,
                    value,
                })
            }
            b'm' => {
                needs(action::CHGHDRS, "chgheader")?;
                let (index, rest) = take_u32(data)?;
                let (name, value) = header(rest, options)?;
                Response::Modification(Modification::ChangeHeader {
                    name,
                    // Sendmail and Postfix take index 0 as the first occurrence.
                    index: usize::try_from(index.max(1)).unwrap_or(usize::MAX),
                    value: (!value.is_empty()).then_some(value),
                })
            }
            other => return Err(MilterError::Unexpected(char::from(other))),
        })
    }

    /// The verdict of a final answer to one step (not a modification, progress or skip).
    pub(crate) fn verdict(self) -> Result<Verdict, MilterError> {
        let action = match self {
            Response::Continue => Action::Continue,
            Response::Accept => Action::Accept,
            Response::Reject => Action::Reject(Reply::new(550, "5.7.1", "Command rejected")),
            Response::TempFail => Action::TempFail(Reply::new(
                451,
                "4.7.1",
                "Service unavailable - try again later",
            )),
            Response::Discard => Action::Discard,
            Response::ReplyCode(reply) if reply.is_error() => Action::Reject(reply),
            Response::ReplyCode(reply) => Action::TempFail(reply),
            Response::Shutdown => {
                Action::TempFail(Reply::new(421, "4.7.0", "Server closing connection"))
            }
            Response::Quarantine(_)
            | Response::BodyChunk(_)
            | Response::Modification(_)
            | Response::Skip
            | Response::Progress => {
                return Err(MilterError::Malformed(
                    "a modification where an answer to the step was expected".into(),
                ));
            }
        };
        Ok(Verdict::action(action))
    }
}

/// The first NUL-terminated string of `data`.
fn first_string(data: &[u8]) -> Result<String, MilterError> {
    split_strings(data)?
        .into_iter()
        .next()
        .ok_or_else(|| MilterError::Malformed("an empty string list".into()))
}

/// An envelope address as milters write it, `<user@example.org>`, without its brackets.
fn envelope_address(text: &str) -> Result<String, MilterError> {
    let trimmed = text.trim();
    let bare = trimmed
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(trimmed);
    if bare
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(MilterError::Malformed(format!(
            "{text:?} is not an envelope address"
        )));
    }
    Ok(bare.to_owned())
}

/// A header field's name and value: `name\0value\0`. Line breaks in the value become CRLF
/// and must fold (be followed by a space or tab), so a value cannot add fields of its own.
fn header(data: &[u8], options: &Options) -> Result<(String, String), MilterError> {
    let fields = split_strings(data)?;
    let [name, value] = fields.as_slice() else {
        return Err(MilterError::Malformed(format!(
            "a header of {} strings instead of name and value",
            fields.len()
        )));
    };
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !name_ok {
        return Err(MilterError::Malformed(format!(
            "{name:?} is not a header field name"
        )));
    }
    // With HDR_LEADSPC the milter writes the space after the colon itself.
    let value = if options.has(step::HDR_LEADSPC) {
        value.strip_prefix(' ').unwrap_or(value)
    } else {
        value.as_str()
    };
    Ok((name.clone(), folded_value(value)?))
}

/// `value` with its line breaks as CRLF, refusing a break that does not fold.
fn folded_value(value: &str) -> Result<String, MilterError> {
    let unified = value.replace("\r\n", "\n");
    if unified.contains('\r') || unified.contains('\0') {
        return Err(MilterError::Malformed(
            "a header value with a bare CR or NUL".into(),
        ));
    }
    let lines: Vec<&str> = unified.split('\n').collect();
    let folds = lines[1..]
        .iter()
        .all(|l| l.starts_with([' ', '\t']) && !l.trim().is_empty());
    if !folds {
        return Err(MilterError::Malformed(
            "a header value with a line break that does not fold".into(),
        ));
    }
    Ok(lines.join("\r\n"))
}

/// The data of `y` (`SMFIR_REPLYCODE`): one or more reply lines (`550-…\r\n550 …`), 4xx or
/// 5xx, each with the same code, an enhanced code of the same class if any, and no control
/// characters.
fn reply_code(data: &[u8]) -> Result<Reply, MilterError> {
    let text = first_string(data)?;
    let bad = |why: &str| MilterError::Malformed(format!("reply {text:?}: {why}"));
    let lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
    let code = text.get(..3).ok_or_else(|| bad("too short"))?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || !matches!(&code[..1], "4" | "5") {
        return Err(bad("a refusal must have a 4xx or 5xx code"));
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let separator = line.as_bytes().get(3).copied();
        let separator_ok = match separator {
            None => last,
            Some(b' ') => last,
            Some(b'-') => !last,
            Some(_) => false,
        };
        if !line.starts_with(code) || !separator_ok {
            return Err(bad(
                "every line must start with the same code, '-' before the last",
            ));
        }
        let rest = line.get(4..).unwrap_or_default();
        if rest.chars().any(char::is_control) {
            return Err(bad("control characters in the text"));
        }
        if let Some(enhanced) = rest.split(' ').next()
            && enhanced.contains('.')
            && enhanced.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && !enhanced.starts_with(&code[..1])
        {
            return Err(bad("the enhanced status code is not of the reply's class"));
        }
        out.push_str(line);
        if separator.is_none() {
            out.push(' ');
        }
        out.push_str("\r\n");
    }
    Ok(Reply(out))
}

/// The modifications of one end of message, kept apart until its final answer arrives so a
/// milter that breaks in the middle leaves none of them applied.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    modifications: Vec<Modification>,
    body: Option<Vec<u8>>,
    quarantine: Option<String>,
}

impl Collected {
    /// Takes one reply; `Some` when it was the final answer, with the whole verdict.
    pub(crate) fn take(&mut self, response: Response) -> Result<Option<Verdict>, MilterError> {
        match response {
            Response::Progress => {}
            Response::Modification(m) => self.modifications.push(m),
            Response::BodyChunk(chunk) => self.body.get_or_insert_default().extend(chunk),
            Response::Quarantine(reason) => self.quarantine = Some(reason),
            Response::Skip => return Err(MilterError::Unexpected('s')),
            answer => return self.finish(answer).map(Some),
        }
        Ok(None)
    }

    /// The verdict: the milter's answer, with the modifications when it lets the message
    /// through (accept or continue) and none otherwise.
    fn finish(&mut self, answer: Response) -> Result<Verdict, MilterError> {
        let mut verdict = answer.verdict()?;
        if !matches!(verdict.action, Action::Accept | Action::Continue) {
            return Ok(verdict);
        }
        let mut modifications = std::mem::take(&mut self.modifications);
        if let Some(body) = self.body.take() {
            modifications.push(Modification::ReplaceBody(body));
        }
        verdict.modifications = modifications;
        if let Some(reason) = self.quarantine.take() {
            verdict.action = Action::Quarantine(reason);
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::milter::codec::strings;

    const ALL: Options = Options {
        version: 6,
        actions: 0xff,
        protocol: 0,
    };

    fn read(code: u8, data: Vec<u8>) -> Result<Response, MilterError> {
        Response::read(&Packet::new(code, data), &ALL)
    }

    fn index(n: u32, name: &str, value: &str) -> Vec<u8> {
        let mut data = n.to_be_bytes().to_vec();
        data.extend(strings(&[name, value]));
        data
    }

    #[test]
    fn every_modification_is_read() {
        let cases = [
            (
                b'+',
                strings(&["<a@example.org>"]),
                Modification::AddRecipient {
                    address: "a@example.org".into(),
                },
            ),
            (
                b'2',
                strings(&["<b@example.org>", "NOTIFY=NEVER"]),
                Modification::AddRecipient {
                    address: "b@example.org".into(),
                },
            ),
            (
                b'-',
                strings(&["<c@example.org>"]),
                Modification::DeleteRecipient {
                    address: "c@example.org".into(),
                },
            ),
            (
                b'e',
                strings(&["<>"]),
                Modification::ChangeSender {
                    address: String::new(),
                },
            ),
            (
                b'h',
                strings(&["X-Spam", "yes"]),
                Modification::AddHeader {
                    name: "X-Spam".into(),
                    value: "yes".into(),
                },
            ),
            (
                b'i',
                index(0, "DKIM-Signature", "v=1;\n\tb=x"),
                Modification::InsertHeader {
                    index: 0,
                    name: "DKIM-Signature".into(),
                    value: "v=1;\r\n\tb=x".into(),
                },
            ),
            (
                b'm',
                index(2, "Subject", "new"),
                Modification::ChangeHeader {
                    name: "Subject".into(),
                    index: 2,
                    value: Some("new".into()),
                },
            ),
            (
                b'm',
                index(0, "X-Old", ""),
                Modification::ChangeHeader {
                    name: "X-Old".into(),
                    index: 1,
                    value: None,
                },
            ),
        ];
        for (code, data, expected) in cases {
            assert_eq!(read(code, data).unwrap(), Response::Modification(expected));
        }
    }

    #[test]
    fn modifications_not_negotiated_are_errors() {
        let headers_only = Options {
            actions: action::ADDHDRS,
            ..ALL
        };
        let packet = Packet::new(b'-', strings(&["<a@example.org>"]));
        assert!(matches!(
            Response::read(&packet, &headers_only),
            Err(MilterError::NotNegotiated(_))
        ));
        let body = Packet::new(b'b', b"new body".to_vec());
        assert!(matches!(
            Response::read(&body, &headers_only),
            Err(MilterError::NotNegotiated(_))
        ));
    }

    #[test]
    fn malformed_modifications_are_errors() {
        assert!(read(b'h', strings(&["X-A", "a\r\nBcc: x@example.org"])).is_err());
        assert!(read(b'h', strings(&["X A", "v"])).is_err());
        assert!(read(b'h', strings(&["X-A"])).is_err());
        assert!(read(b'h', b"X-A\0v".to_vec()).is_err());
        assert!(read(b'i', vec![0, 0]).is_err());
        assert!(read(b'+', strings(&["<a b@example.org>"])).is_err());
        assert!(read(b'Z', vec![]).is_err());
    }

    #[test]
    fn reply_codes_are_validated_and_keep_their_class() {
        let reply = |text: &str| read(b'y', strings(&[text]));
        let rejected = reply("554 5.7.1 Spam message rejected")
            .unwrap()
            .verdict()
            .unwrap();
        assert!(
            matches!(&rejected.action, Action::Reject(r) if r.0 == "554 5.7.1 Spam message rejected\r\n")
        );
        let deferred = reply("451 4.7.1 Try again later")
            .unwrap()
            .verdict()
            .unwrap();
        assert!(matches!(&deferred.action, Action::TempFail(r) if r.0.starts_with("451 ")));
        let multi = reply("550-5.7.1 first\r\n550 5.7.1 second").unwrap();
        assert_eq!(
            multi,
            Response::ReplyCode(Reply("550-5.7.1 first\r\n550 5.7.1 second\r\n".into()))
        );
        for bad in [
            "250 2.0.0 OK",
            "55",
            "5x0 no",
            "550 4.7.1 mixed",
            "550-5.7.1 a\r\n451 4.7.1 b",
            "550 a\nb",
            "550-5.7.1 dangling",
        ] {
            assert!(reply(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn modifications_count_only_with_a_final_accept_or_continue() {
        let mut collected = Collected::default();
        let add = Modification::AddHeader {
            name: "X-A".into(),
            value: "1".into(),
        };
        assert!(
            collected
                .take(Response::Modification(add.clone()))
                .unwrap()
                .is_none()
        );
        assert!(
            collected
                .take(Response::BodyChunk(b"new ".to_vec()))
                .unwrap()
                .is_none()
        );
        assert!(collected.take(Response::Progress).unwrap().is_none());
        assert!(
            collected
                .take(Response::BodyChunk(b"body".to_vec()))
                .unwrap()
                .is_none()
        );
        let verdict = collected.take(Response::Continue).unwrap().unwrap();
        assert_eq!(
            verdict.modifications,
            [add.clone(), Modification::ReplaceBody(b"new body".to_vec())]
        );

        let mut rejected = Collected::default();
        rejected.take(Response::Modification(add)).unwrap();
        let verdict = rejected.take(Response::Reject).unwrap().unwrap();
        assert!(matches!(verdict.action, Action::Reject(_)) && verdict.modifications.is_empty());

        let mut held = Collected::default();
        held.take(Response::Quarantine("virus".into())).unwrap();
        let verdict = held.take(Response::Accept).unwrap().unwrap();
        assert!(matches!(verdict.action, Action::Quarantine(ref r) if r == "virus"));
    }
}
