//! `Directory`: one `directory.<name>` (seeds 000/001), the name being the resource's name.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Cache, ResourceStatus, Tls};

/// Kind of server a directory delegates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryType {
    /// IMAP4: authentication.
    Imap,
    /// SMTP: authentication and recipient validation.
    Smtp,
    /// LMTP: recipient validation.
    Lmtp,
}

impl DirectoryType {
    /// The value the configuration writes.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryType::Imap => "imap",
            DirectoryType::Smtp => "smtp",
            DirectoryType::Lmtp => "lmtp",
        }
    }
}

/// A remote IMAP, SMTP or LMTP server used as a directory: `directory.<name>`.
// Several printcolumn(...) share `type_ = "string"`, which the lint takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferrymail.io",
    version = "v1alpha1",
    kind = "Directory",
    plural = "directories",
    shortname = "dir",
    category = "ferrymail",
    annotation("helm.sh/resource-policy", "keep"),
    namespaced,
    status = "ResourceStatus",
    doc = "A remote IMAP, SMTP or LMTP server used for authentication and recipient validation, rendered into directory.<name>.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(
        name = "RemoteHost",
        type_ = "string",
        json_path = ".spec.remoteHostRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.address) != has(self.remoteHostRef)",
     "message": "set either address (with type) or remoteHostRef, not both"},
    {"rule": "has(self.remoteHostRef) || has(self.type)",
     "message": "type is required when address is set"},
    {"rule": "!has(self.remoteHostRef) || (!has(self.type) && !has(self.port) && !has(self.tls))",
     "message": "type, port and tls come from the referenced RemoteHost"},
    {"rule": "!has(self.lookups) || !('domains' in self.lookups)",
     "message": "list the local domains in domains, not in lookups"}
]))]
pub struct DirectorySpec {
    /// Kind of server (`type`); required with `address`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<DirectoryType>,
    /// Host name or IP address of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub address: Option<String>,
    /// Take type, address, port and TLS from this RemoteHost instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host_ref: Option<RemoteHostRef>,
    /// Port; by default 993/143 for imap, 465/25 for smtp, 24 for lmtp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Time limit for connecting and for each command, e.g. "30s" (default "30s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)$"))]
    pub timeout: Option<String>,
    /// Connection pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<DirectoryPool>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Session limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<DirectoryLimits>,
    /// Lookup cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// Local domains (`lookup.domains`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Custom lookup lists (`lookup.<list>`), e.g. blocked IP ranges; an entry
    /// `file:///path` reads one value per line from a file the pods mount.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookups: BTreeMap<String, Vec<String>>,
}

/// The RemoteHost a directory takes its connection from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteHostRef {
    /// Name of a RemoteHost in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// `pool.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryPool {
    /// Most open connections (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
}

/// `limits.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryLimits {
    /// Recipients tested in one session (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rcpt: Option<u32>,
    /// Authentication errors before the session is closed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_errors: Option<u32>,
}
