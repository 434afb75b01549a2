//! Replies: code, enhanced status code, text — one place for their wording.

use std::fmt::Write as _;

/// A complete reply line (or lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply(pub(crate) String);

impl Reply {
    /// `code e0.e1.e2 text`.
    pub(crate) fn new(code: u16, enhanced: &str, text: impl AsRef<str>) -> Self {
        let text = text.as_ref();
        let mut out = String::with_capacity(text.len() + 16);
        let lines: Vec<&str> = text.lines().collect();
        // Greetings and HELO replies carry no enhanced code.
        let enhanced = if enhanced.is_empty() {
            String::new()
        } else {
            format!("{enhanced} ")
        };
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let _ = write!(out, "{code}{sep}{enhanced}{line}\r\n");
        }
        if lines.is_empty() {
            let _ = write!(out, "{code} {}\r\n", enhanced.trim_end());
        }
        Self(out)
    }

    /// Whether the reply is a permanent error (5xx), which counts against the session.
    pub(crate) fn is_error(&self) -> bool {
        self.0.starts_with('5')
    }
}

/// A mail address in angle brackets for reply texts, stripped of anything that could break
/// the reply line.
pub(crate) fn quoted(address: &str) -> String {
    let clean: String = address
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    format!("<{clean}>")
}
