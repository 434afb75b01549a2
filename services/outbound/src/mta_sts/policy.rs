//! The MTA-STS policy file (RFC 8461 §3.2): `version: STSv1`, `mode`, `mx` patterns and
//! `max_age`, one `key: value` per line.
//!
//! Written here because no maintained crate parses it: `mail-auth` parses only the
//! `_mta-sts` TXT record, and Stalwart keeps its policy parser inside its server. The format
//! is a handful of lines, and the checks below are the RFC's.

use std::time::Duration;

/// The longest `max_age` a policy may give (RFC 8461 §3.2: about one year).
pub(crate) const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Deliver as usual; report what enforcing would have refused.
    Testing,
    /// The domain has withdrawn its policy.
    None,
}

impl Mode {
    /// The name used in the policy file, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// One `mx` pattern: a host name, or `*.` and a domain for any host one label below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPattern {
    /// Exactly this host (lower case, no trailing dot).
    Exact(String),
    /// Any host whose name is one label followed by this domain.
    Wildcard(String),
}

impl MxPattern {
    fn parse(value: &str) -> Result<Self, PolicyError> {
        let name = value.trim_end_matches('.').to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        match name.strip_prefix("*.") {
            Some(domain) if valid_name(domain) => Ok(MxPattern::Wildcard(domain.to_owned())),
            None if valid_name(&name) => Ok(MxPattern::Exact(name)),
            _ => Err(PolicyError::BadMx(value.to_owned())),
        }
    }

    /// Whether `host` matches (RFC 8461 §4.1: a wildcard stands for exactly one label).
    pub(crate) fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            MxPattern::Exact(name) => host == *name,
            MxPattern::Wildcard(domain) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        }
    }
}

impl std::fmt::Display for MxPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MxPattern::Exact(name) => f.write_str(name),
            MxPattern::Wildcard(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What it asks.
    pub mode: Mode,
    /// The MX hosts it allows (at least one unless the mode is `none`).
    pub mx: Vec<MxPattern>,
    /// How long it may be cached.
    pub max_age: Duration,
}

impl Policy {
    /// Whether the policy allows MX host `host`.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|pattern| pattern.matches(host))
    }

    /// The `mx` patterns, comma-separated, for replies and logs.
    pub fn patterns(&self) -> String {
        let patterns: Vec<String> = self.mx.iter().map(ToString::to_string).collect();
        patterns.join(", ")
    }

    /// The policy as a policy file that [`parse`] reads back as it is.
    pub fn to_text(&self) -> String {
        let mx: String = self.mx.iter().map(|m| format!("mx: {m}\n")).collect();
        format!(
            "version: STSv1\nmode: {}\n{mx}max_age: {}\n",
            self.mode.name(),
            self.max_age.as_secs()
        )
    }
}

/// Why a policy file was refused (the domain then has no usable policy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A line is not `key: value`.
    #[error("line {0} is not \"key: value\"")]
    NotAField(usize),
    /// `version` is missing or not `STSv1`.
    #[error("the policy has no \"version: STSv1\"")]
    Version,
    /// `mode` is missing or unknown.
    #[error("mode must be enforce, testing or none, not {0:?}")]
    Mode(String),
    /// `max_age` is missing, not a number of seconds, or longer than a year.
    #[error("max_age must be a number of seconds up to {MAX_AGE_LIMIT}, not {0:?}")]
    MaxAge(String),
    /// An `mx` value is not a host name or `*.` domain.
    #[error("mx {0:?} is not a host name or a \"*.\" wildcard")]
    BadMx(String),
    /// An `enforce` or `testing` policy names no MX host.
    #[error("the policy names no mx host")]
    NoMx,
    /// A field that may appear once appears again.
    #[error("{0} appears more than once")]
    Repeated(&'static str),
}

/// Parses a policy file. Unknown fields are ignored, as RFC 8461 §3.2 asks.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or(PolicyError::NotAField(number + 1))?;
        let value = value.trim();
        match key.trim() {
            "version" => once(&mut version, "version", value)?,
            "mode" => once(&mut mode, "mode", value)?,
            "max_age" => once(&mut max_age, "max_age", value)?,
            "mx" => mx.push(MxPattern::parse(value)?),
            _ => {}
        }
    }
    if version != Some("STSv1") {
        return Err(PolicyError::Version);
    }
    let mode = match mode {
        Some("enforce") => Mode::Enforce,
        Some("testing") => Mode::Testing,
        Some("none") => Mode::None,
        other => return Err(PolicyError::Mode(other.unwrap_or_default().to_owned())),
    };
    let max_age = parse_max_age(max_age.unwrap_or_default())?;
    if mx.is_empty() && mode != Mode::None {
        return Err(PolicyError::NoMx);
    }
    Ok(Policy { mode, mx, max_age })
}

/// Sets `slot` to `value`, refusing a second value: two versions or modes are ambiguous.
fn once<'a>(
    slot: &mut Option<&'a str>,
    name: &'static str,
    value: &'a str,
) -> Result<(), PolicyError> {
    if slot.replace(value).is_some() {
        return Err(PolicyError::Repeated(name));
    }
    Ok(())
}

/// `max_age`: 1 to 10 digits (RFC 8461 §3.2), at most [`MAX_AGE_LIMIT`].
fn parse_max_age(value: &str) -> Result<Duration, PolicyError> {
    let bad = || PolicyError::MaxAge(value.to_owned());
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds: u64 = value.parse().map_err(|_| bad())?;
    if seconds > MAX_AGE_LIMIT {
        return Err(bad());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n";

    #[test]
    fn a_policy_reads_back_from_its_text() {
        for text in [
            ENFORCE,
            "version: STSv1\nmode: testing\nmx: MX.Example.ORG.\nmax_age: 0\n",
            "version: STSv1\nmode: none\nmax_age: 60\n",
        ] {
            let policy = parse(text).unwrap_or_else(|e| panic!("{e}"));
            let again = parse(&policy.to_text()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, policy, "{text}");
        }
    }

    #[test]
    fn the_rfc_example_parses() {
        let policy = parse(ENFORCE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age, Duration::from_secs(86400));
        assert_eq!(policy.patterns(), "mail.example.com, *.example.net");
    }

    #[test]
    fn line_feeds_spaces_and_unknown_fields_are_accepted() {
        let text =
            "version:STSv1\nmode:   testing  \nmx: MX.Example.ORG.\nextension: 1\nmax_age: 0\n";
        let policy = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.mode, Mode::Testing);
        assert!(policy.allows("mx.example.org"));
        assert_eq!(policy.max_age, Duration::ZERO);
    }

    #[test]
    fn a_none_policy_needs_no_mx() {
        let policy = parse("version: STSv1\nmode: none\nmax_age: 60\n");
        assert_eq!(policy.map(|p| p.mode), Ok(Mode::None));
    }

    #[test]
    fn wildcards_stand_for_one_label() {
        let policy = parse(ENFORCE).unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.allows("mail.example.com"));
        assert!(policy.allows("MAIL.example.com."));
        assert!(policy.allows("mx1.example.net"));
        assert!(!policy.allows("example.net"), "the wildcard needs a label");
        assert!(!policy.allows("a.b.example.net"), "only one label");
        assert!(!policy.allows("other.example.com"));
        assert!(!policy.allows("mail.example.com.evil.test"));
    }

    #[test]
    fn malformed_policies_are_refused() {
        let cases: [(&str, PolicyError); 12] = [
            (
                "mode: enforce\nmx: a.test\nmax_age: 60\n",
                PolicyError::Version,
            ),
            (
                "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 60\n",
                PolicyError::Version,
            ),
            (
                "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 60\n",
                PolicyError::Mode("strict".into()),
            ),
            (
                "version: STSv1\nmx: a.test\nmax_age: 60\n",
                PolicyError::Mode(String::new()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\n",
                PolicyError::MaxAge(String::new()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -5\n",
                PolicyError::MaxAge("-5".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1d\n",
                PolicyError::MaxAge("1d".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999999999999\n",
                PolicyError::MaxAge("99999999999999999999".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
                PolicyError::MaxAge("31557601".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmax_age: 60\n",
                PolicyError::NoMx,
            ),
            (
                "version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 60\n",
                PolicyError::BadMx("*.*.test".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 60\n",
                PolicyError::Repeated("mode"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for text in [
            "",
            "\n\n",
            "<html><body>Not found</body></html>",
            "version STSv1",
            "mx: \nversion: STSv1\nmode: enforce\nmax_age: 1\n",
            "mx: a..b\nversion: STSv1\nmode: enforce\nmax_age: 1\n",
            ":::::",
            "\u{feff}version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }
}
