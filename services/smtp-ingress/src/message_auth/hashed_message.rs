//! What DKIM, ARC and DMARC verification keeps of a message as it streams to the queue: its
//! header section, at most [`MAX_HEADER`] bytes, and the hashes of its body, computed chunk
//! by chunk with mail-auth's own incremental canonicalization (`BodyHasher`).
//!
//! mail-auth verifies a parsed message from its header fields and the body hashes the
//! signatures ask for; it never reads the body itself. So the header section is parsed alone
//! once the message is complete and given the hashes computed here: the result is the one a
//! parse of the whole message gives, while the session holds the header section only,
//! whatever the size of the body.

use mail_auth::AuthenticatedMessage;
use mail_auth::common::crypto::{HashAlgorithm, HashContext, HashImpl, Sha1, Sha256};
use mail_auth::dkim::Canonicalization;
use mail_auth::dkim::canonicalize::BodyHasher;

/// Largest header section kept for verification. Postfix keeps 100 KiB of a header
/// (`header_size_limit`); a message whose header section is longer, or never ends, is
/// "too large to verify", as no genuine mail is.
pub(crate) const MAX_HEADER: usize = 1024 * 1024;

/// Most distinct body hashes (canonicalization, algorithm, length) computed for one message:
/// each hashes the whole body, and a hostile message can ask for hundreds with `l=` tags.
/// Genuine mail asks for one or two. Signatures beyond them fail to verify (neutral).
const MAX_BODY_HASHES: usize = 8;

/// The hash contexts of mail-auth's crypto backend (the same type for SHA-1 and SHA-256).
type Context = <Sha256 as HashImpl>::Context;

/// What the signatures of a message ask to hash its body with.
type HashKey = (Canonicalization, HashAlgorithm, u64);

/// One body hash being computed.
struct Hashing {
    key: HashKey,
    hasher: BodyHasher<Context>,
}

/// Where the message is.
enum State {
    /// The header section has not ended yet: its bytes so far.
    Header(Vec<u8>),
    /// The header section (without the body), and the body's hashes so far.
    Body {
        header: Vec<u8>,
        hashing: Vec<Hashing>,
    },
    /// Complete: the header section and the body's hashes.
    Done {
        header: Vec<u8>,
        hashes: Vec<(HashKey, Vec<u8>)>,
    },
    /// The header section was longer than [`MAX_HEADER`].
    TooLarge,
}

/// A message as verification keeps it: see the module's documentation.
pub(crate) struct HashedMessage {
    state: State,
    /// `auth.dkim.strict`: signatures with `l=` are ignored, so their hashes are not needed.
    strict: bool,
}

impl HashedMessage {
    /// A message about to arrive; `strict` is `auth.dkim.strict`.
    pub(crate) fn new(strict: bool) -> Self {
        Self {
            state: State::Header(Vec::new()),
            strict,
        }
    }

    /// Takes the next bytes of the message.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        match &mut self.state {
            State::Header(bytes) => {
                // An empty line is at most 3 bytes ("\n\r\n"), and may have come whole before
                // the byte after it, which mail-auth's parser needs to see its end.
                let scan_from = bytes.len().saturating_sub(3);
                bytes.extend_from_slice(chunk);
                if has_empty_line(&bytes[scan_from..]) {
                    self.try_end_header();
                } else if bytes.len() > MAX_HEADER {
                    self.state = State::TooLarge;
                }
            }
            State::Body { hashing, .. } => {
                for body in hashing {
                    body.hasher.write(chunk);
                }
            }
            State::Done { .. } | State::TooLarge => {}
        }
    }

    /// Moves on to the body when the bytes kept hold the whole header section and at least
    /// one byte after it (only then has mail-auth's parser seen its end).
    fn try_end_header(&mut self) {
        let State::Header(bytes) = &mut self.state else {
            return;
        };
        let Some(offset) = body_offset(bytes, self.strict) else {
            if bytes.len() > MAX_HEADER {
                self.state = State::TooLarge;
            }
            return;
        };
        if offset > MAX_HEADER {
            self.state = State::TooLarge;
            return;
        }
        let mut header = std::mem::take(bytes);
        let body = header.split_off(offset);
        header.shrink_to_fit();
        let mut hashing = hashers(&header, self.strict);
        for hash in &mut hashing {
            hash.hasher.write(&body);
        }
        self.state = State::Body { header, hashing };
    }

    /// Marks the message complete: the body's hashes are final.
    pub(crate) fn finish(&mut self) {
        let state = std::mem::replace(&mut self.state, State::TooLarge);
        self.state = match state {
            // The whole message is a header section (or has an empty body).
            State::Header(header) if header.len() <= MAX_HEADER => {
                let hashes = finish(hashers(&header, self.strict));
                State::Done { header, hashes }
            }
            State::Header(_) | State::TooLarge => State::TooLarge,
            State::Body { header, hashing } => State::Done {
                header,
                hashes: finish(hashing),
            },
            done @ State::Done { .. } => done,
        };
    }

    /// Whether the header section was too large to keep.
    pub(crate) fn too_large(&self) -> bool {
        matches!(self.state, State::TooLarge)
    }

    /// The complete message as mail-auth verifies it; `None` when it has no header field (or
    /// was too large, or is not complete).
    pub(crate) fn authenticated(&self) -> Option<AuthenticatedMessage<'_>> {
        let State::Done { header, hashes } = &self.state else {
            return None;
        };
        let mut message = AuthenticatedMessage::parse_with_opts(header, None, self.strict)?;
        for (cb, ha, l, hash) in &mut message.body_hashes {
            // A hash not computed stays empty: no signature's `bh=` matches it.
            hash.clear();
            if let Some((_, computed)) = hashes.iter().find(|(key, _)| *key == (*cb, *ha, *l)) {
                hash.extend_from_slice(computed);
            }
        }
        Some(message)
    }
}

/// Whether `bytes` holds an empty line (LF followed by CRLF or LF): only then can a header
/// section end there.
fn has_empty_line(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, pair)| {
        pair[0] == b'\n' && (pair[1] == b'\n' || bytes[i + 1..].starts_with(b"\r\n"))
    })
}

/// Where the body starts in `bytes`, as mail-auth's parser finds it; `None` while the header
/// section may go on.
fn body_offset(bytes: &[u8], strict: bool) -> Option<usize> {
    match AuthenticatedMessage::parse_with_opts(bytes, None, strict) {
        Some(message) => {
            let offset = message.body_offset as usize;
            (offset < bytes.len()).then_some(offset)
        }
        // No header field: an empty first line ends an empty header section.
        None if bytes.starts_with(b"\r\n") => Some(2),
        None if bytes.starts_with(b"\n") => Some(1),
        None => None,
    }
}

/// A hasher for each body hash the signatures in `header` ask for (at most
/// [`MAX_BODY_HASHES`]).
fn hashers(header: &[u8], strict: bool) -> Vec<Hashing> {
    let Some(message) = AuthenticatedMessage::parse_with_opts(header, None, strict) else {
        return Vec::new();
    };
    message
        .body_hashes
        .iter()
        .take(MAX_BODY_HASHES)
        .map(|(cb, ha, l, _)| Hashing {
            key: (*cb, *ha, *l),
            hasher: BodyHasher::new(context(*ha), *cb, *l),
        })
        .collect()
}

fn context(algorithm: HashAlgorithm) -> Context {
    match algorithm {
        HashAlgorithm::Sha1 => <Sha1 as HashImpl>::hasher(),
        HashAlgorithm::Sha256 => <Sha256 as HashImpl>::hasher(),
    }
}

fn finish(hashing: Vec<Hashing>) -> Vec<(HashKey, Vec<u8>)> {
    hashing
        .into_iter()
        .map(|body| {
            let (context, _) = body.hasher.finish();
            (body.key, context.complete().as_ref().to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Two signatures (relaxed and simple body, one with a length) and a body with the
    /// whitespace and trailing empty lines canonicalization changes.
    const SIGNED: &str = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from; bh=AAAA; b=AAAA\r\nDKIM-Signature: v=1; a=rsa-sha1; c=simple/simple; d=example.org; s=s2; h=from; l=20; bh=AAAA; b=AAAA\r\nFrom: alice@example.org\r\nSubject: x\r\n\r\nHello  \t Bob.  \r\n\r\n line two\r\n\r\n\r\n";

    /// The body hashes mail-auth computes from the whole message.
    fn whole(message: &[u8], strict: bool) -> Vec<(Canonicalization, HashAlgorithm, u64, Vec<u8>)> {
        AuthenticatedMessage::parse_with_opts(message, None, strict)
            .unwrap()
            .body_hashes
    }

    fn streamed(message: &[u8], piece: usize, strict: bool) -> HashedMessage {
        let mut hashed = HashedMessage::new(strict);
        for chunk in message.chunks(piece) {
            hashed.push(chunk);
        }
        hashed.finish();
        hashed
    }

    #[test]
    fn the_body_hashes_are_those_of_the_whole_message_however_it_is_cut() {
        for strict in [true, false] {
            let expected = whole(SIGNED.as_bytes(), strict);
            assert!(!expected.is_empty());
            for piece in [1, 2, 3, 7, 64, SIGNED.len()] {
                let hashed = streamed(SIGNED.as_bytes(), piece, strict);
                let message = hashed.authenticated().unwrap();
                assert_eq!(
                    message.body_hashes, expected,
                    "pieces of {piece}, strict {strict}"
                );
                assert_eq!(message.from, ["alice@example.org"]);
                assert_eq!(message.dkim_headers.len(), if strict { 1 } else { 2 });
            }
        }
    }

    #[test]
    fn messages_without_a_body_or_a_header_section() {
        let header_only = b"From: a@example.org\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.org; s=s; h=from; bh=AAAA; b=AAAA\r\n";
        for text in [&header_only[..], b"From: a@example.org\r\n\r\n"] {
            let hashed = streamed(text, 5, true);
            let message = hashed.authenticated().unwrap();
            assert_eq!(message.body_hashes, whole(text, true));
        }
        let no_header = streamed(b"\r\njust a body\r\n", 3, true);
        assert!(no_header.authenticated().is_none());
        assert!(!no_header.too_large());
    }

    #[test]
    fn a_header_section_past_the_bound_is_too_large_and_dropped() {
        let mut hashed = HashedMessage::new(true);
        hashed.push(b"From: a@example.org\r\n");
        let field = format!("X-Filler: {}\r\n", "x".repeat(1000));
        while !hashed.too_large() {
            hashed.push(field.as_bytes());
        }
        hashed.push(b"\r\nbody\r\n");
        hashed.finish();
        assert!(hashed.too_large());
        assert!(hashed.authenticated().is_none());
    }

    #[test]
    fn a_large_body_is_hashed_not_kept() {
        let mut hashed = HashedMessage::new(true);
        hashed.push(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.org\r\n\r\n");
        let line = [b'y'; 1000];
        for _ in 0..20_000 {
            hashed.push(&line);
            hashed.push(b"\r\n");
        }
        let State::Body { header, .. } = &hashed.state else {
            panic!("the body is being hashed");
        };
        assert!(header.capacity() < 4096, "{} bytes kept", header.capacity());
        hashed.finish();
        assert_eq!(hashed.authenticated().unwrap().body_hashes[0].3.len(), 32);
    }
}
