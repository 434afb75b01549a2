//! Applying a filter's header and body modifications to a received message.
//!
//! The header is split into fields by hand rather than with `mail-parser`: edits must keep
//! every other field byte for byte (a DKIM signature covers them), which a parser that
//! decodes values does not give back.

use thiserror::Error;

use super::Modification;

/// A modification that cannot be applied as asked.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum EditError {
    #[error("invalid header field name {0:?}")]
    FieldName(String),
    #[error("header field value of {0} contains a NUL or a bare CR")]
    FieldValue(String),
}

/// A message split into its header fields (each with its line ends and folding, as
/// received) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EditableMessage {
    fields: Vec<Vec<u8>>,
    body: Vec<u8>,
}

impl EditableMessage {
    /// Splits `message` (CRLF line ends; a bare LF is taken as one and written as CRLF).
    pub(crate) fn parse(message: &[u8]) -> Self {
        let message = crlf(message);
        let mut fields: Vec<Vec<u8>> = Vec::new();
        let mut pos = 0;
        while pos < message.len() {
            let end = line_end(&message, pos);
            let line = &message[pos..end];
            if line == b"\r\n" {
                pos = end;
                break;
            }
            let continues = matches!(line.first(), Some(b' ' | b'\t'));
            match fields.last_mut() {
                Some(field) if continues => field.extend_from_slice(line),
                _ => fields.push(line.to_vec()),
            }
            pos = end;
        }
        Self {
            fields,
            body: message[pos..].to_vec(),
        }
    }

    /// The message as bytes again.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let size = self.fields.iter().map(Vec::len).sum::<usize>() + 2 + self.body.len();
        let mut out = Vec::with_capacity(size);
        for field in self.fields {
            out.extend_from_slice(&field);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Applies one modification; envelope modifications are not the message's and are
    /// ignored here.
    pub(crate) fn apply(&mut self, modification: &Modification) -> Result<(), EditError> {
        match modification {
            Modification::AddHeader { name, value } => {
                self.fields.push(field(name, value)?);
            }
            Modification::InsertHeader { index, name, value } => {
                let at = (*index).min(self.fields.len());
                self.fields.insert(at, field(name, value)?);
            }
            Modification::ChangeHeader { name, index, value } => {
                self.change(name, *index, value.as_deref())?;
            }
            Modification::ReplaceBody(body) => self.body = crlf(body),
            Modification::ChangeSender { .. }
            | Modification::AddRecipient { .. }
            | Modification::DeleteRecipient { .. } => {}
        }
        Ok(())
    }

    fn change(&mut self, name: &str, index: usize, value: Option<&str>) -> Result<(), EditError> {
        check_name(name)?;
        let position = self
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| has_name(f, name))
            .nth(index.max(1) - 1)
            .map(|(at, _)| at);
        match (position, value) {
            // The field keeps its name as it was written.
            (Some(at), Some(value)) => {
                let field_name = existing_name(&self.fields[at]).unwrap_or(name).to_owned();
                self.fields[at] = field(&field_name, value)?;
            }
            (Some(at), None) => {
                self.fields.remove(at);
            }
            (None, Some(value)) => self.fields.push(field(name, value)?),
            (None, None) => {}
        }
        Ok(())
    }
}

/// The end of the line starting at `pos` (past its LF, or the end of `bytes`).
fn line_end(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |lf| pos + lf + 1)
}

/// `bytes` with every bare LF made CRLF: a filter's `\n` must not reach the queue as a bare
/// line end (RFC 5322 §2.3), which next hops read in different ways.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Whether `field` is named `name` (without regard to case).
fn has_name(field: &[u8], name: &str) -> bool {
    field.iter().position(|&b| b == b':').is_some_and(|colon| {
        field[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes())
    })
}

/// The name of `field` as written, when it is valid UTF-8.
fn existing_name(field: &[u8]) -> Option<&str> {
    let colon = field.iter().position(|&b| b == b':')?;
    std::str::from_utf8(field[..colon].trim_ascii_end()).ok()
}

/// RFC 5322 §3.6.8: printable ASCII but the colon.
fn check_name(name: &str) -> Result<(), EditError> {
    let valid = !name.is_empty()
        && name.len() <= 998
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if valid {
        Ok(())
    } else {
        Err(EditError::FieldName(name.chars().take(64).collect()))
    }
}

/// `name: value` as a field, its line breaks folded: every line after the first starts
/// with white space, so a value can never start a field of its own.
fn field(name: &str, value: &str) -> Result<Vec<u8>, EditError> {
    check_name(name)?;
    if value.bytes().any(|b| b == 0) {
        return Err(EditError::FieldValue(name.to_owned()));
    }
    let mut out = Vec::with_capacity(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    if !value.starts_with([' ', '\t']) {
        out.push(b' ');
    }
    for (i, line) in value.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\r') {
            return Err(EditError::FieldValue(name.to_owned()));
        }
        if i > 0 {
            out.extend_from_slice(b"\r\n");
            if !line.starts_with([' ', '\t']) {
                out.push(b'\t');
            }
        }
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MESSAGE: &[u8] = b"Received: from a\r\n\tby b\r\nFrom: <a@example.org>\r\nSubject: hi\r\nX-Tag: one\r\nX-Tag: two\r\n\r\nbody\r\n";

    fn edited(modifications: &[Modification]) -> Result<String, EditError> {
        let mut message = EditableMessage::parse(MESSAGE);
        for m in modifications {
            message.apply(m)?;
        }
        Ok(String::from_utf8(message.into_bytes()).unwrap())
    }

    #[test]
    fn unchanged_message_comes_back_byte_for_byte() {
        assert_eq!(edited(&[]).unwrap().as_bytes(), MESSAGE);
        let no_body = b"Subject: x\r\n";
        assert_eq!(
            EditableMessage::parse(no_body).into_bytes(),
            b"Subject: x\r\n\r\n"
        );
    }

    #[test]
    fn fields_are_added_inserted_changed_and_deleted() {
        let out = edited(&[
            Modification::AddHeader {
                name: "X-Spam".into(),
                value: "Yes".into(),
            },
            Modification::InsertHeader {
                index: 0,
                name: "X-First".into(),
                value: "1".into(),
            },
            Modification::ChangeHeader {
                name: "x-tag".into(),
                index: 2,
                value: Some("deux".into()),
            },
            Modification::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: None,
            },
        ])
        .unwrap();
        assert_eq!(
            out,
            "X-First: 1\r\nReceived: from a\r\n\tby b\r\nFrom: <a@example.org>\r\nX-Tag: one\r\nX-Tag: deux\r\nX-Spam: Yes\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn changing_a_missing_occurrence_adds_it_and_deleting_one_does_nothing() {
        let out = edited(&[
            Modification::ChangeHeader {
                name: "X-Tag".into(),
                index: 5,
                value: Some("five".into()),
            },
            Modification::ChangeHeader {
                name: "X-None".into(),
                index: 1,
                value: None,
            },
        ])
        .unwrap();
        assert!(out.contains("X-Tag: two\r\nX-Tag: five\r\n\r\n"), "{out}");
    }

    #[test]
    fn values_are_folded_and_cannot_start_a_field() {
        let out = edited(&[Modification::AddHeader {
            name: "X-Report".into(),
            value: "a\nBcc: victim@example.net\r\n\tc".into(),
        }])
        .unwrap();
        assert!(
            out.contains("X-Report: a\r\n\tBcc: victim@example.net\r\n\tc\r\n"),
            "{out}"
        );
    }

    #[test]
    fn invalid_names_and_values_are_refused() {
        for name in ["", "Bad Name", "Colon:", "Tab\t", "é"] {
            let result = edited(&[Modification::AddHeader {
                name: name.into(),
                value: "v".into(),
            }]);
            assert!(matches!(result, Err(EditError::FieldName(_))), "{name:?}");
        }
        for value in ["a\0b", "a\rb"] {
            let result = edited(&[Modification::AddHeader {
                name: "X".into(),
                value: value.into(),
            }]);
            assert_eq!(result, Err(EditError::FieldValue("X".into())), "{value:?}");
        }
    }

    #[test]
    fn bodies_are_replaced_with_crlf_line_ends() {
        let out = edited(&[Modification::ReplaceBody(b"new\nbody\r\n".to_vec())]).unwrap();
        assert!(out.ends_with("X-Tag: two\r\n\r\nnew\r\nbody\r\n"), "{out}");
    }
}
