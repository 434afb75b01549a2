//! Times as the API writes them (RFC 3339, UTC, whole seconds, as Stalwart does) and reads
//! them (RFC 3339, or Unix seconds).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds as RFC 3339; `None` for a time no calendar can show.
pub fn format(unix: u64) -> Option<String> {
    let unix = i64::try_from(unix).ok()?;
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// An RFC 3339 time or Unix seconds, as Unix seconds (times before 1970 are 0).
pub fn parse(text: &str) -> Option<u64> {
    if let Ok(unix) = text.parse::<u64>() {
        return Some(unix);
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(u64::try_from(time.unix_timestamp()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_go_both_ways() {
        assert_eq!(
            format(1_736_087_595).as_deref(),
            Some("2025-01-05T14:33:15Z")
        );
        assert_eq!(parse("2025-01-05T14:33:15Z"), Some(1_736_087_595));
        assert_eq!(parse("2025-01-05T15:33:15+01:00"), Some(1_736_087_595));
        assert_eq!(parse("1736087595"), Some(1_736_087_595));
        assert_eq!(parse("1969-12-31T23:59:59Z"), Some(0));
        assert_eq!(format(u64::MAX), None);
    }

    #[test]
    fn malformed_times_are_refused() {
        for text in [
            "",
            "yesterday",
            "2025-01-05",
            "2025-13-05T00:00:00Z",
            "-5",
            "1e9",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
