//! What a recorded reply says, for delivery events: its SMTP code, its RFC 3463 enhanced
//! status code and text ([`parse_reply`]), and a short category of the failure
//! ([`classify`]), decided from the enhanced status code first, then keywords of the text,
//! then the kind of failure.
//!
//! Categories (`Category::name`): `invalid-recipient`, `invalid-sender`, `mailbox-full`,
//! `message-too-large`, `policy`, `spam-block`, `rate-limit`, `dns`, `tls`, `connection`,
//! `timeout`, `expired`, `other`.
//!
//! A recorded reply is `code x.y.z text` (the enhanced code only when the server sent one),
//! maybe after a prefix saying where it came from (`MAIL FROM: `, `DATA: `,
//! `mx.example.org[192.0.2.1]:25: `), or a sentence of ferrymail's own for a failure without
//! a reply (a refused connection, a timeout).

/// A reply split into its parts; the parts not found are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The SMTP reply code (`250`, `450`, `550`…).
    pub(crate) code: Option<u16>,
    /// The enhanced status code (`5.1.1`).
    pub(crate) enhanced: Option<String>,
    /// The text after the codes, or the whole reply when it has none.
    pub(crate) text: String,
}

/// How a recipient's attempt ended, as far as classification needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Try again later.
    Temporary,
    /// Never.
    Permanent,
    /// Not delivered within `queue.schedule.expire`.
    Expired,
}

/// The short category of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    InvalidRecipient,
    InvalidSender,
    MailboxFull,
    MessageTooLarge,
    Policy,
    SpamBlock,
    RateLimit,
    Dns,
    Tls,
    Connection,
    Timeout,
    Expired,
    Other,
}

impl Category {
    /// The name in events.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Category::InvalidRecipient => "invalid-recipient",
            Category::InvalidSender => "invalid-sender",
            Category::MailboxFull => "mailbox-full",
            Category::MessageTooLarge => "message-too-large",
            Category::Policy => "policy",
            Category::SpamBlock => "spam-block",
            Category::RateLimit => "rate-limit",
            Category::Dns => "dns",
            Category::Tls => "tls",
            Category::Connection => "connection",
            Category::Timeout => "timeout",
            Category::Expired => "expired",
            Category::Other => "other",
        }
    }
}

/// The codes and text of `recorded`: the first three-digit code from 2xx to 5xx that starts
/// a word, and the enhanced status code right after it when its class agrees.
pub(crate) fn parse_reply(recorded: &str) -> Reply {
    let words: Vec<(usize, &str)> = word_starts(recorded);
    for (i, &(_, word)) in words.iter().enumerate() {
        let Some(code) = reply_code(word) else {
            continue;
        };
        let next = words.get(i + 1);
        let enhanced = next
            .map(|(_, w)| *w)
            .filter(|w| enhanced_code(w).is_some_and(|class| u16::from(class) == code / 100));
        let text_from = match (enhanced, next, words.get(i + 2)) {
            (Some(_), _, Some((after, _))) => *after,
            (Some(_), _, None) => recorded.len(),
            (None, Some((after, _)), _) => *after,
            (None, None, _) => recorded.len(),
        };
        return Reply {
            code: Some(code),
            enhanced: enhanced.map(str::to_owned),
            text: recorded[text_from..].trim().to_owned(),
        };
    }
    Reply {
        code: None,
        enhanced: None,
        text: recorded.trim().to_owned(),
    }
}

/// The RFC 3463 status of a failure: the enhanced code when there is one, else the class of
/// the reply code or of the kind of failure with no detail (`4.4.7` for an expiry).
pub(crate) fn status(reply: &Reply, kind: FailureKind) -> String {
    if let Some(enhanced) = &reply.enhanced {
        return enhanced.clone();
    }
    match (reply.code.map(|c| c / 100), kind) {
        (_, FailureKind::Expired) => "4.4.7".to_owned(),
        (Some(class @ 2..=5), _) => format!("{class}.0.0"),
        (_, FailureKind::Permanent) => "5.0.0".to_owned(),
        (_, FailureKind::Temporary) => "4.0.0".to_owned(),
    }
}

/// The category of a failure with `reply`: by its enhanced status code, else by keywords of
/// its text, else by `kind`. A policy code whose text names a block list or spam is a
/// `spam-block`: servers use `5.7.1` for both.
pub(crate) fn classify(reply: &Reply, kind: FailureKind) -> Category {
    let text = reply.text.to_ascii_lowercase();
    let by_code = reply.enhanced.as_deref().and_then(by_enhanced_code);
    match by_code {
        Some(Category::Policy) if keyword(&text, SPAM) => Category::SpamBlock,
        Some(category) => category,
        None => by_keywords(&text).unwrap_or(match kind {
            FailureKind::Expired => Category::Expired,
            FailureKind::Temporary | FailureKind::Permanent => Category::Other,
        }),
    }
}

/// The category an enhanced status code names by itself; `None` for the generic ones
/// (`x.0.0`, and subjects whose details are too vague).
fn by_enhanced_code(code: &str) -> Option<Category> {
    let mut parts = code.split('.').skip(1);
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    let category = match (subject, detail) {
        (1, 1 | 2 | 3 | 6 | 10) | (2, 1) => Category::InvalidRecipient,
        (1, 7 | 8) => Category::InvalidSender,
        (2, 2) | (3, 1) => Category::MailboxFull,
        (2, 3) | (3, 4) => Category::MessageTooLarge,
        (4, 1 | 2) => Category::Connection,
        (4, 3 | 4) => Category::Dns,
        (4, 7) => Category::Timeout,
        (4, 5) | (7, 28) => Category::RateLimit,
        (7, 5 | 10 | 11 | 15) => Category::Tls,
        (7, _) => Category::Policy,
        _ => return None,
    };
    Some(category)
}

/// Words that name a block list or spam.
const SPAM: &[&str] = &[
    "spam",
    "blocklist",
    "blacklist",
    "block list",
    "black list",
    "spamhaus",
    "rbl",
    "dnsbl",
    "reputation",
];

/// Keywords and the category they point at, in order: the first match wins.
const KEYWORDS: &[(&[&str], Category)] = &[
    (
        &[
            "mailbox full",
            "mailbox is full",
            "over quota",
            "quota exceeded",
            "exceeded storage",
            "insufficient storage",
        ],
        Category::MailboxFull,
    ),
    (
        &[
            "user unknown",
            "unknown user",
            "no such user",
            "no such mailbox",
            "does not exist",
            "recipient rejected",
            "invalid recipient",
            "recipient address rejected",
            "mailbox unavailable",
            "address rejected",
        ],
        Category::InvalidRecipient,
    ),
    (SPAM, Category::SpamBlock),
    (
        &[
            "too large",
            "too big",
            "size limit",
            "message size",
            "exceeds size",
        ],
        Category::MessageTooLarge,
    ),
    (
        &["rate limit", "too many", "try again later"],
        Category::RateLimit,
    ),
    (
        &[
            "tls",
            "certificate",
            "handshake",
            "starttls",
            "dane",
            "mta-sts",
        ],
        Category::Tls,
    ),
    (
        &[
            "dns",
            "nxdomain",
            "no mx",
            "lookup",
            "no address",
            "resolve",
        ],
        Category::Dns,
    ),
    (&["timed out", "timeout", "deadline"], Category::Timeout),
    (
        &[
            "connection refused",
            "connection reset",
            "cannot connect",
            "network error",
            "unreachable",
            "broken pipe",
            "connection closed",
            "session ended",
        ],
        Category::Connection,
    ),
    (
        &[
            "policy",
            "denied",
            "not authorized",
            "not permitted",
            "relay",
            "dmarc",
            "spf",
        ],
        Category::Policy,
    ),
];

fn by_keywords(text: &str) -> Option<Category> {
    KEYWORDS
        .iter()
        .find(|(words, _)| keyword(text, words))
        .map(|(_, category)| *category)
}

/// Whether lower-case `text` contains one of `words`, `rbl` only as a word of its own.
fn keyword(text: &str, words: &[&str]) -> bool {
    words.iter().any(|word| match *word {
        "rbl" | "tls" | "dns" | "spf" => text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == *word),
        _ => text.contains(word),
    })
}

/// The words of `text` with where each starts.
fn word_starts(text: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, &text[s..]));
    }
    words
}

/// `word` as a reply code from 200 to 599 (a trailing `-` of a continuation line allowed).
fn reply_code(word: &str) -> Option<u16> {
    let digits = word.strip_suffix('-').unwrap_or(word);
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = digits.parse().ok()?;
    (200..600).contains(&code).then_some(code)
}

/// The class of `word` as an enhanced status code (`class.subject.detail`, RFC 3463 §2:
/// class 2, 4 or 5, subject up to three digits, detail up to three digits).
fn enhanced_code(word: &str) -> Option<u8> {
    let mut parts = word.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let number = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !number(subject) || !number(detail) {
        return None;
    }
    match class {
        "2" => Some(2),
        "4" => Some(4),
        "5" => Some(5),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Category::*;
    use FailureKind::{Permanent, Temporary};

    #[test]
    fn replies_split_into_code_enhanced_code_and_text() {
        let cases: &[(&str, Option<u16>, Option<&str>, &str)] = &[
            (
                "250 2.0.0 Ok: queued as 1234",
                Some(250),
                Some("2.0.0"),
                "Ok: queued as 1234",
            ),
            (
                "550 5.1.1 <b@x>: user unknown",
                Some(550),
                Some("5.1.1"),
                "<b@x>: user unknown",
            ),
            ("451 try later", Some(451), None, "try later"),
            (
                "MAIL FROM: 553 5.1.8 bad sender",
                Some(553),
                Some("5.1.8"),
                "bad sender",
            ),
            (
                "DATA: 552 5.3.4 too big",
                Some(552),
                Some("5.3.4"),
                "too big",
            ),
            (
                "mx.example.org[192.0.2.1]:25: 421 4.4.2 bye",
                Some(421),
                Some("4.4.2"),
                "bye",
            ),
            // An enhanced code of another class than the reply is text, not a status.
            ("550 4.1.1 odd", Some(550), None, "4.1.1 odd"),
            ("550", Some(550), None, ""),
            ("550 5.1.1", Some(550), Some("5.1.1"), ""),
            ("", None, None, ""),
            ("   ", None, None, ""),
            ("connection refused", None, None, "connection refused"),
            (
                "remote.sink (127.0.0.1:2525): network error: timed out",
                None,
                None,
                "remote.sink (127.0.0.1:2525): network error: timed out",
            ),
            // Not codes: too long, out of range, not digits, a malformed enhanced code.
            ("1234 5.1.1 x", None, None, "1234 5.1.1 x"),
            ("199 ok", None, None, "199 ok"),
            ("600 nope", None, None, "600 nope"),
            ("55O 5.1.1 letter O", None, None, "55O 5.1.1 letter O"),
            ("550 5.1 short", Some(550), None, "5.1 short"),
            ("550 5.1.1.1 long", Some(550), None, "5.1.1.1 long"),
            ("550 5.1111.1 wide", Some(550), None, "5.1111.1 wide"),
            ("550 5.1.1 ünïcödé ✓", Some(550), Some("5.1.1"), "ünïcödé ✓"),
        ];
        for (recorded, code, enhanced, text) in cases {
            let reply = parse_reply(recorded);
            assert_eq!(reply.code, *code, "{recorded:?}");
            assert_eq!(reply.enhanced.as_deref(), *enhanced, "{recorded:?}");
            assert_eq!(reply.text, *text, "{recorded:?}");
        }
    }

    #[test]
    fn failures_are_classified_by_code_then_text_then_kind() {
        let cases: &[(&str, FailureKind, &str, Category)] = &[
            // The enhanced status code decides.
            (
                "550 5.1.1 user unknown",
                Permanent,
                "5.1.1",
                InvalidRecipient,
            ),
            ("550 5.1.10 null MX", Permanent, "5.1.10", InvalidRecipient),
            (
                "550 5.2.1 mailbox disabled",
                Permanent,
                "5.2.1",
                InvalidRecipient,
            ),
            ("553 5.1.8 sender domain", Permanent, "5.1.8", InvalidSender),
            ("452 4.2.2 mailbox full", Temporary, "4.2.2", MailboxFull),
            (
                "552 5.3.4 message too big",
                Permanent,
                "5.3.4",
                MessageTooLarge,
            ),
            ("552 5.2.3 exceeds", Permanent, "5.2.3", MessageTooLarge),
            ("451 4.4.3 DNS failure", Temporary, "4.4.3", Dns),
            (
                "451 4.4.4 no address for the MX hosts",
                Temporary,
                "4.4.4",
                Dns,
            ),
            (
                "421 4.4.2 connection dropped",
                Temporary,
                "4.4.2",
                Connection,
            ),
            ("451 4.4.7 too slow", Temporary, "4.4.7", Timeout),
            (
                "421 4.7.28 too many messages",
                Temporary,
                "4.7.28",
                RateLimit,
            ),
            ("530 5.7.10 encryption needed", Permanent, "5.7.10", Tls),
            ("550 5.7.1 relaying denied", Permanent, "5.7.1", Policy),
            ("550 5.7.26 DMARC", Permanent, "5.7.26", Policy),
            // A policy code whose text names a block list is a spam block.
            (
                "554 5.7.1 listed by Spamhaus",
                Permanent,
                "5.7.1",
                SpamBlock,
            ),
            ("550 5.7.1 client RBL listed", Permanent, "5.7.1", SpamBlock),
            // The code says nothing particular: the text decides.
            (
                "550 5.0.0 No such user here",
                Permanent,
                "5.0.0",
                InvalidRecipient,
            ),
            ("552 Mailbox is full", Permanent, "5.0.0", MailboxFull),
            (
                "554 Message rejected as spam",
                Permanent,
                "5.0.0",
                SpamBlock,
            ),
            (
                "452 Too many recipients, try again later",
                Temporary,
                "4.0.0",
                RateLimit,
            ),
            (
                "554 message size exceeds fixed limit",
                Permanent,
                "5.0.0",
                MessageTooLarge,
            ),
            (
                "remote.r (h:465): TLS error: invalid certificate",
                Temporary,
                "4.0.0",
                Tls,
            ),
            (
                "mx.example.org[192.0.2.1]:25: network error: connection refused",
                Temporary,
                "4.0.0",
                Connection,
            ),
            (
                "remote.r (h:25): network error: timed out",
                Temporary,
                "4.0.0",
                Timeout,
            ),
            ("554 relay access denied", Permanent, "5.0.0", Policy),
            (
                "cannot check the throttles: store unavailable",
                Temporary,
                "4.0.0",
                Other,
            ),
            // "rbl" must be a word of its own, not part of another.
            ("550 garbled reply", Permanent, "5.0.0", Other),
            // Nothing to go on: the kind of failure decides.
            ("", Permanent, "5.0.0", Other),
            ("", Temporary, "4.0.0", Other),
            (
                "expired: not delivered within queue.schedule.expire",
                FailureKind::Expired,
                "4.4.7",
                Expired,
            ),
            (
                "the session ended without a reply",
                Temporary,
                "4.0.0",
                Connection,
            ),
            ("\u{0}\u{7f}garbage", Temporary, "4.0.0", Other),
        ];
        for (recorded, kind, status_code, category) in cases {
            let reply = parse_reply(recorded);
            assert_eq!(status(&reply, *kind), *status_code, "{recorded:?}");
            assert_eq!(classify(&reply, *kind), *category, "{recorded:?}");
        }
    }

    #[test]
    fn category_names_are_kebab_case_and_distinct() {
        let all = [
            InvalidRecipient,
            InvalidSender,
            MailboxFull,
            MessageTooLarge,
            Policy,
            SpamBlock,
            RateLimit,
            Dns,
            Tls,
            Connection,
            Timeout,
            Expired,
            Other,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }
}
