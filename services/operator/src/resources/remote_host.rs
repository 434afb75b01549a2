//! `RemoteHost`: one `remote.<id>` (seed 002), the id being the resource's name.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ResourceStatus, SecretKeyRef};

/// Protocol spoken to the remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RemoteProtocol {
    /// SMTP: relaying, authentication and recipient validation.
    Smtp,
    /// LMTP: local delivery and recipient validation.
    Lmtp,
    /// IMAP4: authentication lookups only.
    Imap,
}

impl RemoteProtocol {
    /// The value the configuration writes.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteProtocol::Smtp => "smtp",
            RemoteProtocol::Lmtp => "lmtp",
            RemoteProtocol::Imap => "imap",
        }
    }
}

/// A remote SMTP, LMTP or IMAP server used for relaying or lookups: `remote.<name>`.
// Several printcolumn(...) share `type_ = "string"`, which the lint takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferrymail.io",
    version = "v1alpha1",
    kind = "RemoteHost",
    plural = "remotehosts",
    shortname = "rh",
    category = "ferrymail",
    annotation("helm.sh/resource-policy", "keep"),
    namespaced,
    status = "ResourceStatus",
    doc = "A remote SMTP, LMTP or IMAP server, rendered into remote.<name> of ferrymail's configuration.",
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Port", type_ = "integer", json_path = ".spec.port"),
    printcolumn(name = "Lookup", type_ = "boolean", json_path = ".spec.lookup"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reachable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Reachable\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.auth) || self.protocol != 'imap'",
     "message": "auth applies only to smtp and lmtp remote hosts"}
]))]
pub struct RemoteHostSpec {
    /// Host name or IP address of the remote server (`address`).
    #[schemars(length(min = 1, max = 253))]
    pub address: String,
    /// Port on the remote server; by default 465/25 for smtp, 24 for lmtp, 993/143 for imap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Protocol spoken to the remote server.
    pub protocol: RemoteProtocol,
    /// Most connections open to the host at any time (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Time limit for connecting and for each command, e.g. "60s" (default "60s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)$"))]
    pub timeout: Option<String>,
    /// Whether the host may be used for lookups (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<bool>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Credentials for smtp and lmtp hosts; the password comes from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RemoteAuth>,
    /// Connection pool limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RemoteLimits>,
    /// Lookup cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// How the directory-proxy checks that the host answers (the `Reachable` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<RemoteProbe>,
}

/// `probe.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteProbe {
    /// How often the host is probed, e.g. "1m" (default "1m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)$"))]
    pub interval: Option<String>,
}

/// `tls.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// TLS from the first byte; false means plain text upgraded with STARTTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit: Option<bool>,
    /// Accept self-signed and invalid certificates (testing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_invalid_certs: Option<bool>,
    /// Send passwords in clear text when the server offers no STARTTLS (default false: such
    /// a lookup or relay attempt fails temporarily instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plain_text: Option<bool>,
}

/// `auth.username` and `auth.secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteAuth {
    /// User name.
    #[schemars(length(min = 1))]
    pub username: String,
    /// The Secret key holding the password.
    pub secret_ref: SecretKeyRef,
}

/// `limits.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteLimits {
    /// Errors before a pooled connection is closed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub errors: Option<u32>,
    /// Requests sent on one connection before it is replaced (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests: Option<u32>,
}

/// `cache.*`, shared by both resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    /// Most entries in the LRU cache (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Lifetimes of cached answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<CacheTtl>,
}

/// `cache.ttl.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheTtl {
    /// Lifetime of a positive answer, e.g. "1d" (default "1d").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)$"))]
    pub positive: Option<String>,
    /// Lifetime of a negative answer, e.g. "1h" (default "1h").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)$"))]
    pub negative: Option<String>,
}
