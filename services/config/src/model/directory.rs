//! `directory.<name>`: IMAP, SMTP and LMTP servers used as directories (seeds 000, 001).

use std::collections::BTreeMap;
use std::time::Duration;

use super::bounds::{require_nonzero, require_positive};
use super::cache::{CacheSettings, read_cache};
use super::remote::default_port;
use crate::keys;
use crate::reader::TableReader;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{DirectoryType, LookupList};

/// Name that cannot be used for a directory: `in-list = "remote/<id>"` refers to remotes.
pub const RESERVED_DIRECTORY_NAME: &str = "remote";

/// `directory.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// Kind of server.
    pub kind: DirectoryType,
    /// Host name or address.
    pub address: String,
    /// Port (explicit or derived from type and TLS mode).
    pub port: u16,
    /// Connect and command time limit.
    pub timeout: Duration,
    /// Most open connections.
    pub max_connections: u32,
    /// TLS from the first byte (else STARTTLS when offered).
    pub tls_implicit: bool,
    /// Accept invalid certificates.
    pub allow_invalid_certs: bool,
    /// `tls.allow-plain-text`: passwords may be sent without encryption.
    pub allow_plain_text: bool,
    /// `limits.rcpt`.
    pub max_rcpt: u32,
    /// `limits.auth-errors`.
    pub max_auth_errors: u32,
    /// `cache.*`.
    pub cache: CacheSettings,
    /// `lookup.<list>`, including `domains`.
    pub lists: BTreeMap<String, LookupList>,
}

impl Directory {
    /// The local domains (`lookup.domains`).
    pub fn domains(&self) -> &[String] {
        self.lists
            .get("domains")
            .map_or(&[], |list| list.values.as_slice())
    }
}

pub(crate) fn read(name: &str, t: &TableReader<'_>) -> Option<Directory> {
    if name == RESERVED_DIRECTORY_NAME {
        t.report("type", "\"remote\" is reserved (in-list = \"remote/<id>\" names remote hosts); choose another directory name");
    }
    let kind = t.get(&keys::DIRECTORY_TYPE);
    let address = t.get(&keys::DIRECTORY_ADDRESS);
    let port = t.get(&keys::DIRECTORY_PORT);
    let timeout = t.get(&keys::DIRECTORY_TIMEOUT);
    let pool = t.table("pool");
    let max_connections = pool.get(&keys::DIRECTORY_POOL_MAX_CONNECTIONS);
    let tls = t.table("tls");
    let tls_implicit = tls.get(&keys::DIRECTORY_TLS_IMPLICIT);
    let allow_invalid_certs = tls.get(&keys::DIRECTORY_TLS_ALLOW_INVALID_CERTS);
    let allow_plain_text = tls.get(&keys::DIRECTORY_TLS_ALLOW_PLAIN_TEXT);
    let limits = t.table("limits");
    let max_rcpt = limits.get(&keys::DIRECTORY_LIMITS_RCPT);
    let max_auth_errors = limits.get(&keys::DIRECTORY_LIMITS_AUTH_ERRORS);
    let cache = read_cache(
        &t.table("cache"),
        &keys::DIRECTORY_CACHE_ENTRIES,
        &keys::DIRECTORY_CACHE_TTL_POSITIVE,
        &keys::DIRECTORY_CACHE_TTL_NEGATIVE,
    );
    let lists = t
        .table("lookup")
        .values(&keys::DIRECTORY_LOOKUP_LIST)
        .into_iter()
        .collect();
    require_positive(&pool, "max-connections", max_connections);
    require_positive(&limits, "rcpt", max_rcpt);
    require_nonzero(t, "timeout", timeout);
    let kind = kind?;
    let tls_implicit = tls_implicit?;
    Some(Directory {
        kind,
        address: address?,
        port: port.unwrap_or_else(|| default_port(kind.as_str(), tls_implicit)),
        timeout: timeout?,
        max_connections: max_connections?,
        tls_implicit,
        allow_invalid_certs: allow_invalid_certs?,
        allow_plain_text: allow_plain_text?,
        max_rcpt: max_rcpt?,
        max_auth_errors: max_auth_errors?,
        cache: cache?,
        lists,
    })
}
