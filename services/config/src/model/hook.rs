//! `session.hook.<id>`: MTA hooks, HTTP endpoints asked at the SMTP stages, with Stalwart's
//! keys and defaults (`enable`, `url`, `stages`, `timeout`, `tempfail-on-error`,
//! `max-response-size`, `allow-invalid-certs`, `headers`, `auth.username`, `auth.secret`).

use std::time::Duration;

use super::bounds::require_nonzero;
use super::store::is_local;
use super::webhook::{check_url, parse_headers};
use crate::keys;
use crate::reader::TableReader;
use crate::value::Secret;
use crate::value::stage_rules::Stage;

/// `session.hook.<id>`, an enabled one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `<id>`.
    pub id: String,
    /// `url`: where requests are `POST`ed (`http://` or `https://`).
    pub url: String,
    /// `stages`: the stages at which the hook is asked.
    pub stages: Vec<Stage>,
    /// `timeout`: the longest one request may take.
    pub timeout: Duration,
    /// `tempfail-on-error`: a failed hook refuses with `451 4.3.0` (else it is skipped).
    pub tempfail_on_error: bool,
    /// `max-response-size`: the longest answer read, in bytes.
    pub max_response_size: u64,
    /// `allow-invalid-certs`: accept any certificate (testing only).
    pub allow_invalid_certs: bool,
    /// `headers`: extra request headers, as (name, value).
    pub headers: Vec<(String, String)>,
    /// `auth.username` and `auth.secret`: HTTP Basic credentials, if any.
    pub auth: Option<(String, Secret)>,
}

/// Every `session.hook.<id>`, the enabled ones in the order of their ids; `None` when one
/// is invalid.
pub(crate) fn read_all(session: &TableReader<'_>) -> Option<Vec<Hook>> {
    let mut hooks = Vec::new();
    let mut valid = true;
    let mut entries = session.table("hook").entries();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, t) in entries {
        let enabled = t.get(&keys::SESSION_HOOK_ENABLE);
        match read(id, &t) {
            Some(hook) if enabled == Some(true) => hooks.push(hook),
            Some(_) => {}
            None => valid = false,
        }
    }
    valid.then_some(hooks)
}

fn read(id: String, t: &TableReader<'_>) -> Option<Hook> {
    let url = t.get(&keys::SESSION_HOOK_URL);
    let stages = t.get(&keys::SESSION_HOOK_STAGES);
    let timeout = t.get(&keys::SESSION_HOOK_TIMEOUT);
    let tempfail_on_error = t.get(&keys::SESSION_HOOK_TEMPFAIL_ON_ERROR);
    let max_response_size = t.get(&keys::SESSION_HOOK_MAX_RESPONSE_SIZE);
    let allow_invalid_certs = t.get(&keys::SESSION_HOOK_ALLOW_INVALID_CERTS);
    let headers: Option<Vec<String>> = t.get(&keys::SESSION_HOOK_HEADERS);
    let auth_table = t.table("auth");
    let username = auth_table.get(&keys::SESSION_HOOK_AUTH_USERNAME);
    let secret = auth_table.get(&keys::SESSION_HOOK_AUTH_SECRET);
    require_nonzero(t, "timeout", timeout);
    let mut valid = timeout.is_some_and(|d| !d.is_zero());
    if let Some(url) = &url
        && let Err(problem) = check_url(url)
    {
        t.report("url", problem);
        valid = false;
    }
    if stages.as_ref().is_some_and(Vec::is_empty) {
        t.report(
            "stages",
            "needs at least one stage (the default is [\"data\"])",
        );
        valid = false;
    }
    if max_response_size.is_some_and(|s| s.0 == 0) {
        t.report("max-response-size", "must be at least 1 byte");
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
    // Passwords are never sent in clear over a network.
    if let (Some(url), Some(_)) = (&url, &auth)
        && let Some(host) = plain_http_host(url)
        && !is_local(host)
    {
        auth_table.report(
            "secret",
            format!("would be sent to {host} without TLS: use an https:// URL"),
        );
        valid = false;
    }
    valid.then_some(())?;
    Some(Hook {
        id,
        url: url?,
        stages: stages?,
        timeout: timeout?,
        tempfail_on_error: tempfail_on_error?,
        max_response_size: max_response_size?.0,
        allow_invalid_certs: allow_invalid_certs?,
        headers: headers?,
        auth,
    })
}

/// The host of an `http://` URL (an IPv6 address in its brackets); `None` for `https://`.
fn plain_http_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(match host.find(']') {
        Some(end) if host.starts_with('[') => &host[..=end],
        _ => host.split(':').next().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_plain_url() {
        assert_eq!(
            plain_http_host("http://127.0.0.1:8080/x"),
            Some("127.0.0.1")
        );
        assert_eq!(
            plain_http_host("http://hooks.example.org"),
            Some("hooks.example.org")
        );
        assert_eq!(plain_http_host("http://[::1]:80/"), Some("[::1]"));
        assert_eq!(plain_http_host("https://hooks.example.org"), None);
    }
}
