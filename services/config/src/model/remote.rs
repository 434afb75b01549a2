//! `remote.<id>`: external SMTP, LMTP and IMAP hosts (seed 002).

use std::time::Duration;

use super::bounds::{require_nonzero, require_positive};
use super::cache::{CacheSettings, read_cache};
use crate::keys;
use crate::reader::TableReader;
use crate::value::Secret;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::RemoteProtocol;

/// Credentials a remote host is given.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub secret: Secret,
}

/// `remote.<id>`.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Host name or address.
    pub address: String,
    /// Port (explicit or derived from protocol and TLS mode).
    pub port: u16,
    /// Protocol.
    pub protocol: RemoteProtocol,
    /// Most open connections.
    pub concurrency: u32,
    /// Connect and command time limit.
    pub timeout: Duration,
    /// Usable for lookups.
    pub lookup: bool,
    /// TLS from the first byte (else STARTTLS when offered).
    pub tls_implicit: bool,
    /// Accept invalid certificates.
    pub allow_invalid_certs: bool,
    /// `tls.allow-plain-text`: passwords may be sent without encryption.
    pub allow_plain_text: bool,
    /// `auth.username` and `auth.secret`.
    pub auth: Option<Credentials>,
    /// `limits.errors`.
    pub max_errors: u32,
    /// `limits.requests`.
    pub max_requests: u32,
    /// `cache.*`.
    pub cache: CacheSettings,
    /// `probe.interval`: how often the directory-proxy checks the host answers.
    pub probe_interval: Duration,
}

/// The conventional port of a protocol.
pub(crate) fn default_port(protocol: &str, tls_implicit: bool) -> u16 {
    match (protocol, tls_implicit) {
        ("imap", true) => 993,
        ("imap", false) => 143,
        ("lmtp", _) => 24,
        (_, true) => 465,
        (_, false) => 25,
    }
}

pub(crate) fn read(t: &TableReader<'_>) -> Option<Remote> {
    let address = t.get(&keys::REMOTE_ADDRESS);
    let port = t.get(&keys::REMOTE_PORT);
    let protocol = t.get(&keys::REMOTE_PROTOCOL);
    let concurrency = t.get(&keys::REMOTE_CONCURRENCY);
    let timeout = t.get(&keys::REMOTE_TIMEOUT);
    let lookup = t.get(&keys::REMOTE_LOOKUP);
    let probe = t.table("probe");
    let probe_interval = probe.get(&keys::REMOTE_PROBE_INTERVAL);
    let tls = t.table("tls");
    let tls_implicit = tls.get(&keys::REMOTE_TLS_IMPLICIT);
    let allow_invalid_certs = tls.get(&keys::REMOTE_TLS_ALLOW_INVALID_CERTS);
    let allow_plain_text = tls.get(&keys::REMOTE_TLS_ALLOW_PLAIN_TEXT);
    let auth_table = t.table("auth");
    let username = auth_table.get(&keys::REMOTE_AUTH_USERNAME);
    let secret = auth_table.get(&keys::REMOTE_AUTH_SECRET);
    let limits = t.table("limits");
    let max_errors = limits.get(&keys::REMOTE_LIMITS_ERRORS);
    let max_requests = limits.get(&keys::REMOTE_LIMITS_REQUESTS);
    let cache = read_cache(
        &t.table("cache"),
        &keys::REMOTE_CACHE_ENTRIES,
        &keys::REMOTE_CACHE_TTL_POSITIVE,
        &keys::REMOTE_CACHE_TTL_NEGATIVE,
    );
    let auth = match (username, secret) {
        (Some(username), Some(secret)) => Some(Credentials { username, secret }),
        (None, None) => None,
        (Some(_), None) => {
            auth_table.report("secret", "auth.username is set but auth.secret is not");
            None
        }
        (None, Some(_)) => {
            auth_table.report("username", "auth.secret is set but auth.username is not");
            None
        }
    };
    let protocol = protocol?;
    if auth.is_some() && protocol == RemoteProtocol::Imap {
        auth_table.report(
            "username",
            "authentication credentials apply only to smtp and lmtp remotes",
        );
    }
    require_positive(t, "concurrency", concurrency);
    require_positive(&limits, "requests", max_requests);
    require_positive(&limits, "errors", max_errors);
    require_nonzero(t, "timeout", timeout);
    require_nonzero(&probe, "interval", probe_interval);
    let tls_implicit = tls_implicit?;
    Some(Remote {
        address: address?,
        port: port.unwrap_or_else(|| default_port(protocol.as_str(), tls_implicit)),
        protocol,
        concurrency: concurrency?,
        timeout: timeout?,
        lookup: lookup?,
        tls_implicit,
        allow_invalid_certs: allow_invalid_certs?,
        allow_plain_text: allow_plain_text?,
        auth,
        max_errors: max_errors?,
        max_requests: max_requests?,
        cache: cache?,
        probe_interval: probe_interval?,
    })
}
