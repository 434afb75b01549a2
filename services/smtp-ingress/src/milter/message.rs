//! The received message as a milter is shown it: header fields one by one, then the body.

/// A message split at the blank line after its header.
pub(crate) struct Message<'a> {
    header: &'a [u8],
    /// Everything after the header's blank line, CRLF line ends as received.
    pub(crate) body: &'a [u8],
}

impl<'a> Message<'a> {
    /// Splits `raw`; a message without a blank line is all header.
    pub(crate) fn split(raw: &'a [u8]) -> Self {
        if raw.starts_with(b"\r\n") {
            return Self {
                header: &[],
                body: &raw[2..],
            };
        }
        match raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => Self {
                header: &raw[..end + 2],
                body: &raw[end + 4..],
            },
            None => Self {
                header: raw,
                body: &[],
            },
        }
    }

    /// The header fields as (name, value). Folded lines are joined with LF, as Postfix sends
    /// them; the space after the colon is kept only when the milter asked for it
    /// (`SMFIP_HDR_LEADSPC`).
    pub(crate) fn fields(&self, leading_space: bool) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(self.header);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line);
                }
                continue;
            }
            // A line that is not a field (no colon) is passed on whole as a name-less field
            // would confuse milters; it is skipped, as it is not a field of the message.
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = if leading_space {
                value
            } else {
                value.strip_prefix(' ').unwrap_or(value)
            };
            fields.push((name.trim_end().to_owned(), value.to_owned()));
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_body_are_split_at_the_blank_line() {
        let raw = b"Received: from a\r\n\tby b\r\nSubject: hi\r\n\r\nbody\r\n";
        let message = Message::split(raw);
        assert_eq!(message.body, b"body\r\n");
        assert_eq!(
            message.fields(false),
            [
                ("Received".to_owned(), "from a\n\tby b".to_owned()),
                ("Subject".to_owned(), "hi".to_owned())
            ]
        );
        assert_eq!(message.fields(true)[1].1, " hi");
        assert!(Message::split(b"\r\nonly body").fields(false).is_empty());
        assert_eq!(Message::split(b"Subject: x\r\n").body, b"");
    }
}
