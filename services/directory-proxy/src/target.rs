//! A server lookups go to: a `directory.<name>` or a `remote.<id>` with `lookup = true`,
//! reduced to what connecting and pooling need.

use std::time::Duration;

use ferrymail_config::model::cache::CacheSettings;
use ferrymail_config::model::directory::{Directory, DirectoryType};
use ferrymail_config::model::remote::{Remote, RemoteProtocol};

use crate::error::ConnectionError;

/// Protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// IMAP4rev1: authentication only.
    Imap,
    /// SMTP (submission): authentication, RCPT, VRFY, EXPN.
    Smtp,
    /// LMTP: RCPT, VRFY, EXPN.
    Lmtp,
}

impl Protocol {
    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Lmtp => "lmtp",
        }
    }
}

/// Connection settings of one lookup server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `directory/<name>` or `remote/<id>`: unique, used in logs, metrics and cache keys.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Host name or address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// TLS from the first byte; otherwise STARTTLS when the server offers it.
    pub tls_implicit: bool,
    /// Skip certificate and host name verification.
    pub allow_invalid_certs: bool,
    /// Passwords may be sent on a connection that is not encrypted (`tls.allow-plain-text`).
    pub allow_plain_text: bool,
    /// Connect and command time limit.
    pub timeout: Duration,
    /// Most open connections.
    pub concurrency: usize,
    /// Requests on one connection before it is replaced.
    pub max_requests: u32,
    /// Failed authentications on one connection before it is closed.
    pub max_auth_errors: u32,
    /// Recipients tested before `RSET` and a new `MAIL FROM:<>`.
    pub max_rcpt: u32,
    /// Name given in EHLO/LHLO.
    pub helo_name: String,
    /// Cache settings.
    pub cache: CacheSettings,
}

impl Target {
    /// A `directory.<name>`.
    pub fn from_directory(name: &str, directory: &Directory, helo_name: &str) -> Self {
        Self {
            name: format!("directory/{name}"),
            protocol: match directory.kind {
                DirectoryType::Imap => Protocol::Imap,
                DirectoryType::Smtp => Protocol::Smtp,
                DirectoryType::Lmtp => Protocol::Lmtp,
            },
            address: directory.address.clone(),
            port: directory.port,
            tls_implicit: directory.tls_implicit,
            allow_invalid_certs: directory.allow_invalid_certs,
            allow_plain_text: directory.allow_plain_text,
            timeout: directory.timeout,
            concurrency: directory.max_connections as usize,
            // Directories have no `limits.requests`; Stalwart's remote default applies.
            max_requests: 50,
            max_auth_errors: directory.max_auth_errors,
            max_rcpt: directory.max_rcpt,
            helo_name: helo_name.to_string(),
            cache: directory.cache,
        }
    }

    /// A `remote.<id>` (used for lookups only when `lookup = true`).
    pub fn from_remote(id: &str, remote: &Remote, helo_name: &str) -> Self {
        Self {
            name: format!("remote/{id}"),
            protocol: match remote.protocol {
                RemoteProtocol::Imap => Protocol::Imap,
                RemoteProtocol::Smtp => Protocol::Smtp,
                RemoteProtocol::Lmtp => Protocol::Lmtp,
            },
            address: remote.address.clone(),
            port: remote.port,
            tls_implicit: remote.tls_implicit,
            allow_invalid_certs: remote.allow_invalid_certs,
            allow_plain_text: remote.allow_plain_text,
            timeout: remote.timeout,
            concurrency: remote.concurrency as usize,
            max_requests: remote.max_requests,
            max_auth_errors: remote.max_errors,
            // Remotes have no `limits.rcpt`; the directory default applies.
            max_rcpt: 10,
            helo_name: helo_name.to_string(),
            cache: remote.cache,
        }
    }

    /// `error` as a log line or a status message: which server, and what went wrong.
    pub(crate) fn describe(&self, error: &ConnectionError) -> String {
        match error {
            // The protocol clients do not know the limit they hit; this is it.
            ConnectionError::Timeout(_) => format!(
                "{}:{} timed out after {:?}",
                self.address, self.port, self.timeout
            ),
            other => format!("{}:{}: {other}", self.address, self.port),
        }
    }

    /// An SMTP `remote/<id>` on loopback `port`, for unit tests.
    #[cfg(test)]
    pub(crate) fn loopback(id: &str, port: u16) -> Self {
        Self {
            name: format!("remote/{id}"),
            protocol: Protocol::Smtp,
            address: "127.0.0.1".into(),
            port,
            tls_implicit: false,
            allow_invalid_certs: false,
            allow_plain_text: false,
            timeout: Duration::from_secs(5),
            concurrency: 1,
            max_requests: 50,
            max_auth_errors: 3,
            max_rcpt: 10,
            helo_name: "proxy.test".into(),
            cache: CacheSettings {
                entries: 0,
                ttl_positive: Duration::ZERO,
                ttl_negative: Duration::ZERO,
            },
        }
    }
}
