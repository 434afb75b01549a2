//! `webhook.<id>`: HTTP endpoints that delivery events are pushed to, with Stalwart's keys
//! (`url`, `events`, `timeout`, `throttle`, `signature-key`, `headers`, `auth.username`,
//! `auth.secret`, `allow-invalid-certs`), and `queue.events.*`: the outbox in the store that
//! holds events until every webhook has taken them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::bounds::require_nonzero;
use crate::keys;
use crate::reader::TableReader;
use crate::value::Secret;

/// Every event type a webhook may ask for, as named in `webhook.<id>.events` and in the
/// events' `type` field.
pub const EVENT_TYPES: &[&str] = &[
    "delivery.delivered",
    "delivery.deferred",
    "delivery.bounced",
    "delivery.expired",
    "queue.held",
    "queue.released",
    "queue.cancelled",
];

/// `webhook.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `url`: where events are `POST`ed (`http://` or `https://`).
    pub url: String,
    /// `events`: the event types sent, as patterns (`*`, `delivery.*`, or a type).
    pub events: Vec<String>,
    /// `timeout`: the longest one request may take.
    pub timeout: Duration,
    /// `throttle`: the shortest time between two requests.
    pub throttle: Duration,
    /// `signature-key`: HMAC-SHA256 key signing each body (`X-Signature`), if any.
    pub signature_key: Option<Secret>,
    /// `headers`: extra request headers, as (name, value).
    pub headers: Vec<(String, String)>,
    /// `auth.username` and `auth.secret`: HTTP Basic credentials, if any.
    pub auth: Option<(String, Secret)>,
    /// `allow-invalid-certs`: accept any certificate (testing only).
    pub allow_invalid_certs: bool,
}

impl Webhook {
    /// Whether events of `event_type` are sent to this webhook.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| pattern_matches(p, event_type))
    }
}

/// `queue.events.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutbox {
    /// `outbox.max-size`: most events waiting per webhook; more are dropped and counted.
    pub max_size: u64,
    /// `batch-size`: most events in one request.
    pub batch_size: u32,
    /// `retry.min-backoff`: the wait after a first failed request.
    pub min_backoff: Duration,
    /// `retry.max-backoff`: the longest wait between two failed requests.
    pub max_backoff: Duration,
}

impl Default for EventOutbox {
    /// The defaults of the keys.
    fn default() -> Self {
        Self {
            max_size: 100_000,
            batch_size: 500,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Whether `pattern` (`*`, `prefix.*`, `*.suffix` or an exact type) names `event_type`.
fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        event_type.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        event_type.ends_with(suffix)
    } else {
        pattern == event_type
    }
}

/// Every `webhook.<id>`, the enabled ones; `None` when one is invalid.
pub(crate) fn read_all(root: &TableReader<'_>) -> Option<BTreeMap<String, Webhook>> {
    let mut webhooks = BTreeMap::new();
    let mut valid = true;
    for (id, t) in root.table("webhook").entries() {
        let enabled = t.get(&keys::WEBHOOK_ENABLE);
        match read(&t) {
            Some(webhook) if enabled == Some(true) => {
                webhooks.insert(id, webhook);
            }
            Some(_) => {}
            None => valid = false,
        }
    }
    valid.then_some(webhooks)
}

fn read(t: &TableReader<'_>) -> Option<Webhook> {
    let url = t.get(&keys::WEBHOOK_URL);
    let events: Option<Vec<String>> = t.get(&keys::WEBHOOK_EVENTS);
    let timeout = t.get(&keys::WEBHOOK_TIMEOUT);
    let throttle = t.get(&keys::WEBHOOK_THROTTLE);
    let signature_key: Option<Secret> = t.get(&keys::WEBHOOK_SIGNATURE_KEY);
    let headers: Option<Vec<String>> = t.get(&keys::WEBHOOK_HEADERS);
    let allow_invalid_certs = t.get(&keys::WEBHOOK_ALLOW_INVALID_CERTS);
    let auth_table = t.table("auth");
    let username = auth_table.get(&keys::WEBHOOK_AUTH_USERNAME);
    let secret = auth_table.get(&keys::WEBHOOK_AUTH_SECRET);
    require_nonzero(t, "timeout", timeout);
    let mut valid = true;
    if let Some(url) = &url
        && let Err(problem) = check_url(url)
    {
        t.report("url", problem);
        valid = false;
    }
    if let Some(events) = &events
        && let Err(problem) = check_events(events)
    {
        t.report("events", problem);
        valid = false;
    }
    if signature_key
        .as_ref()
        .is_some_and(|k| k.expose().is_empty())
    {
        t.report(
            "signature-key",
            "must not be empty (leave it out to send unsigned)",
        );
        valid = false;
    }
    let headers = match headers.map(|h| parse_headers(&h)).transpose() {
        Ok(headers) => headers,
        Err(problem) => {
            t.report("headers", problem);
            valid = false;
            None
        }
    };
    let auth = match (username, secret) {
        (Some(username), Some(secret)) => Some((username, secret)),
        (None, None) => None,
        (Some(_), None) => {
            auth_table.report("secret", "auth.username is set but auth.secret is not");
            return None;
        }
        (None, Some(_)) => {
            auth_table.report("username", "auth.secret is set but auth.username is not");
            return None;
        }
    };
    valid.then_some(())?;
    Some(Webhook {
        url: url?,
        events: events?,
        timeout: timeout?,
        throttle: throttle?,
        signature_key,
        headers: headers?,
        auth,
        allow_invalid_certs: allow_invalid_certs?,
    })
}

/// `queue.events.*`.
pub(crate) fn read_outbox(queue: &TableReader<'_>) -> Option<EventOutbox> {
    let t = queue.table("events");
    let outbox = t.table("outbox");
    let max_size = outbox.get(&keys::QUEUE_EVENTS_OUTBOX_MAX_SIZE);
    let batch_size = t.get(&keys::QUEUE_EVENTS_BATCH_SIZE);
    let retry = t.table("retry");
    let min_backoff = retry.get(&keys::QUEUE_EVENTS_RETRY_MIN_BACKOFF);
    let max_backoff = retry.get(&keys::QUEUE_EVENTS_RETRY_MAX_BACKOFF);
    if max_size == Some(0) {
        outbox.report("max-size", "must be at least 1");
    }
    if batch_size == Some(0) {
        t.report("batch-size", "must be at least 1");
    }
    require_nonzero(&retry, "min-backoff", min_backoff);
    if let (Some(min), Some(max)) = (min_backoff, max_backoff)
        && max < min
    {
        retry.report(
            "max-backoff",
            format!("must be at least min-backoff ({min:?})"),
        );
        return None;
    }
    Some(EventOutbox {
        max_size: max_size.filter(|&n| n > 0)?,
        batch_size: batch_size.filter(|&n| n > 0)?,
        min_backoff: min_backoff.filter(|d| !d.is_zero())?,
        max_backoff: max_backoff?,
    })
}

/// Refuses a URL that is not `http://` or `https://` with a host.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains spaces or control characters"));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("{url:?} has an invalid port {port:?}"));
    }
    Ok(())
}

/// Refuses an empty list, and a pattern that names no event type.
fn check_events(events: &[String]) -> Result<(), String> {
    if events.is_empty() {
        return Err("needs at least one event type (\"*\" for all)".to_owned());
    }
    for pattern in events {
        if !EVENT_TYPES.iter().any(|t| pattern_matches(pattern, t)) {
            return Err(format!(
                "{pattern:?} matches no event type (known: {})",
                EVENT_TYPES.join(", ")
            ));
        }
    }
    Ok(())
}

/// `"Name: value"` strings as (name, value), refusing what is not a valid header line.
pub(crate) fn parse_headers(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    lines
        .iter()
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("{line:?} is not of the form \"Name: value\""))?;
            let (name, value) = (name.trim(), value.trim());
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(format!("{name:?} is not a valid header name"));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(format!(
                    "the value of header {name:?} has control characters"
                ));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_in_stalwart() {
        let cases = [
            ("*", "delivery.delivered", true),
            ("delivery.*", "delivery.bounced", true),
            ("delivery.*", "queue.held", false),
            ("*.held", "queue.held", true),
            ("queue.held", "queue.held", true),
            ("queue.held", "queue.released", false),
        ];
        for (pattern, event_type, expected) in cases {
            assert_eq!(
                pattern_matches(pattern, event_type),
                expected,
                "{pattern} {event_type}"
            );
        }
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert!(check_url("https://hooks.example.org/ferrymail").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("ftp://example.org").is_err());
        assert!(check_url("https:///path").is_err());
        assert!(check_url("http://host:port/").is_err());
        assert!(check_url("http://a b/").is_err());
    }

    #[test]
    fn headers_are_name_colon_value() {
        let ok = parse_headers(&["X-Team: mail".to_owned()]);
        assert_eq!(ok, Ok(vec![("X-Team".to_owned(), "mail".to_owned())]));
        assert!(parse_headers(&["no colon".to_owned()]).is_err());
        assert!(parse_headers(&["Bad Name: x".to_owned()]).is_err());
        assert!(parse_headers(&["X: a\nb".to_owned()]).is_err());
    }
}
