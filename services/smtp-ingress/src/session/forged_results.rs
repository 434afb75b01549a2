//! Removes, from a message's header as it streams in, every `Authentication-Results` field
//! that claims to come from this server (its authserv-id is our host name): RFC 8601 §5
//! requires it, or a sender could forge our own verdict for the next hop and the mailbox to
//! trust.
//!
//! Written here rather than with `mail-parser` because the body streams to the queue as it
//! arrives and is never held whole: this looks only at the header section, one field at a
//! time, and passes everything after it through untouched.

/// Most bytes of one header field held while deciding whether to drop it. A longer field is
/// passed on as it is (an `Authentication-Results` field that long is not ours to trust, but
/// holding it would mean holding unbounded input).
const MAX_FIELD: usize = 64 * 1024;

/// The header filter of one message.
#[derive(Debug)]
pub(crate) struct ForgedResultsFilter {
    /// Our authserv-id, lower case.
    authserv_id: String,
    /// The field being read (its lines so far), not yet passed on.
    field: Vec<u8>,
    /// The start of a line not yet complete.
    partial: Vec<u8>,
    /// The header has ended (or the filter gave up): everything passes.
    passing: bool,
    /// Fields removed so far.
    removed: usize,
}

impl ForgedResultsFilter {
    /// A filter for messages received by the server named `hostname`.
    pub(crate) fn new(hostname: &str) -> Self {
        Self {
            authserv_id: hostname.to_ascii_lowercase(),
            field: Vec::new(),
            partial: Vec::new(),
            passing: false,
            removed: 0,
        }
    }

    /// How many fields were removed.
    pub(crate) fn removed(&self) -> usize {
        self.removed
    }

    /// The part of `chunk` (the next bytes of the message) to pass on now.
    pub(crate) fn filter(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        if self.passing {
            return chunk;
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut rest = chunk.as_slice();
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end + 1);
            rest = after;
            if self.partial.is_empty() {
                self.line(line, &mut out);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, &mut out);
            }
            if self.passing {
                out.extend_from_slice(rest);
                return out;
            }
        }
        self.partial.extend_from_slice(rest);
        if self.field.len() + self.partial.len() > MAX_FIELD {
            self.give_up(&mut out);
        }
        out
    }

    /// What is still held, at the end of the message.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.end_field(&mut out);
        out.append(&mut self.partial);
        self.passing = true;
        out
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line == b"\r\n" || line == b"\n" {
            // The empty line: the header is over.
            self.end_field(out);
            out.extend_from_slice(line);
            self.passing = true;
        } else if matches!(line.first(), Some(b' ' | b'\t')) && !self.field.is_empty() {
            self.field.extend_from_slice(line);
        } else {
            self.end_field(out);
            self.field.extend_from_slice(line);
        }
    }

    /// Passes on the field read so far, unless it is a forged result.
    fn end_field(&mut self, out: &mut Vec<u8>) {
        if self.field.is_empty() {
            return;
        }
        if self.is_ours(&self.field) {
            self.removed += 1;
            self.field.clear();
        } else {
            out.append(&mut self.field);
        }
    }

    fn give_up(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.field);
        out.append(&mut self.partial);
        self.passing = true;
    }

    /// Whether `field` is an `Authentication-Results` field with our authserv-id.
    fn is_ours(&self, field: &[u8]) -> bool {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = field.split_at(colon);
        if !name
            .trim_ascii()
            .eq_ignore_ascii_case(b"authentication-results")
        {
            return false;
        }
        // authserv-id is the first token of the value (RFC 8601 §2.2), before any version
        // number or `;`, with folding and comments around it.
        let value = String::from_utf8_lossy(&value[1..]);
        let unfolded: String = value
            .chars()
            .map(|c| if c.is_ascii_whitespace() { ' ' } else { c })
            .collect();
        let without_comments = strip_comments(&unfolded);
        let id = without_comments
            .split([';', ' '])
            .find(|token| !token.is_empty())
            .unwrap_or_default();
        id.eq_ignore_ascii_case(&self.authserv_id)
    }
}

/// `text` without `( … )` comments (nested ones included).
fn strip_comments(text: &str) -> String {
    let mut depth = 0usize;
    text.chars()
        .filter(|&c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth > 0 => {
                depth -= 1;
                false
            }
            _ => depth == 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Authentication-Results: mx.example.org; spf=pass\r\n\
From: a@example.net\r\n\
authentication-results:\r\n MX.EXAMPLE.ORG (forged);\r\n dkim=pass header.d=example.org\r\n\
Authentication-Results: other.example; dmarc=fail\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.example.org; in the body, kept\r\n";

    fn filtered(pieces: &[&[u8]]) -> (Vec<u8>, usize) {
        let mut filter = ForgedResultsFilter::new("mx.example.org");
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(filter.filter(piece.to_vec()));
        }
        out.extend(filter.finish());
        (out, filter.removed())
    }

    #[test]
    fn our_results_are_removed_from_the_header_whatever_the_cut() {
        let expected: &[u8] = b"From: a@example.net\r\n\
Authentication-Results: other.example; dmarc=fail\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.example.org; in the body, kept\r\n";
        assert_eq!(filtered(&[MESSAGE]), (expected.to_vec(), 2));
        let bytes: Vec<&[u8]> = MESSAGE.chunks(1).collect();
        assert_eq!(filtered(&bytes), (expected.to_vec(), 2));
        let sevens: Vec<&[u8]> = MESSAGE.chunks(7).collect();
        assert_eq!(filtered(&sevens), (expected.to_vec(), 2));
    }

    #[test]
    fn messages_without_forgeries_pass_unchanged() {
        for message in [
            &b"Subject: x\r\n\r\nbody"[..],
            b"Subject: no body",
            b"\r\nbody only",
            b"",
            b"Authentication-Results-Extra: mx.example.org\r\n\r\n",
            b"Authentication-Results: mx.example.org.evil; spf=pass\r\n\r\n",
        ] {
            assert_eq!(filtered(&[message]), (message.to_vec(), 0), "{message:?}");
        }
    }

    #[test]
    fn a_huge_field_is_passed_on_not_held() {
        let mut message = b"Authentication-Results: mx.example.org; x=".to_vec();
        message.extend(std::iter::repeat_n(b'a', MAX_FIELD + 10));
        let mut filter = ForgedResultsFilter::new("mx.example.org");
        let out = filter.filter(message.clone());
        assert_eq!(out, message, "given up on, not held");
    }
}
