//! `cluster.*`: where split roles find each other's gRPC services, how they prove who they
//! are to each other (mutual TLS), and the key of the shared lookup cache.

use crate::keys;
use crate::reader::TableReader;
use crate::value::{CertificateChain, PrivateKey, Secret};

/// `cluster.*`.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// `cluster.directory.endpoint`.
    pub directory_endpoint: Option<String>,
    /// `cluster.queue.endpoint`.
    pub queue_endpoint: Option<String>,
    /// `cluster.tls.*`.
    pub tls: ClusterTls,
    /// `cluster.cache-key`.
    pub cache_key: Option<Secret>,
}

/// `cluster.tls.*`: how the roles speak gRPC to each other.
#[derive(Debug, Clone, Default)]
pub enum ClusterTls {
    /// `cluster.tls.enable = true` (the default) with nothing to speak it with: the process
    /// neither serves nor calls gRPC.
    #[default]
    Unused,
    /// Mutual TLS with this identity.
    Mutual(ClusterIdentity),
    /// `cluster.tls.enable = false`: plain text, no identities.
    PlainText,
}

/// The process's identity and the authorities it trusts, for mutual TLS.
#[derive(Debug, Clone)]
pub struct ClusterIdentity {
    /// `cluster.tls.certificate`.
    pub certificate: CertificateChain,
    /// `cluster.tls.private-key`.
    pub private_key: PrivateKey,
    /// `cluster.tls.ca`.
    pub ca: CertificateChain,
    /// `cluster.tls.domain`.
    pub domain: String,
}

impl ClusterTls {
    /// Whether gRPC is plain text.
    pub fn is_plain_text(&self) -> bool {
        matches!(self, ClusterTls::PlainText)
    }
}

/// The endpoint of `key`, checked to use the scheme `tls_on` asks for.
fn endpoint(t: &TableReader<'_>, key: &crate::key::Key<String>, tls_on: bool) -> Option<String> {
    let value = t.get(key)?;
    let (expected, other) = if tls_on {
        ("https://", "http://")
    } else {
        ("http://", "https://")
    };
    if value.starts_with(other) {
        let why = if tls_on {
            "gRPC between the roles is mutual TLS (cluster.tls.enable = true): use https://"
        } else {
            "cluster.tls.enable = false speaks plain text: use http://"
        };
        t.report(key.name(), format!("invalid endpoint {value:?}: {why}"));
    } else if !value.starts_with(expected) {
        t.report(
            key.name(),
            format!("invalid endpoint {value:?}: expected {expected}host:port"),
        );
    }
    Some(value)
}

/// Reads `cluster.*`; `uses_grpc` says whether the configuration serves gRPC (a `grpc`
/// listener), which needs an identity with TLS on, as calling it does (an endpoint).
pub(crate) fn read(root: &TableReader<'_>, uses_grpc: bool) -> Cluster {
    let t = root.table("cluster");
    let tls_table = t.table("tls");
    let enabled = tls_table.get(&keys::CLUSTER_TLS_ENABLE).unwrap_or(true);
    let directory_endpoint = endpoint(
        &t.table("directory"),
        &keys::CLUSTER_DIRECTORY_ENDPOINT,
        enabled,
    );
    let queue_endpoint = endpoint(&t.table("queue"), &keys::CLUSTER_QUEUE_ENDPOINT, enabled);
    let needed = uses_grpc || directory_endpoint.is_some() || queue_endpoint.is_some();
    Cluster {
        directory_endpoint,
        queue_endpoint,
        tls: read_tls(&tls_table, enabled, needed),
        cache_key: read_cache_key(&t),
    }
}

/// Fewest bytes a `cluster.cache-key` may have: the HMAC-SHA256 key size, so that a guessable
/// key cannot be what stands between a copy of the store and the answers it holds.
pub const MIN_CACHE_KEY_BYTES: usize = 32;

fn read_cache_key(t: &TableReader<'_>) -> Option<Secret> {
    let key = t.get(&keys::CLUSTER_CACHE_KEY)?;
    let length = key.expose().len();
    if length < MIN_CACHE_KEY_BYTES {
        // The length only: the key itself is never printed, not even in part.
        t.report(
            "cache-key",
            format!(
                "too short: {length} bytes, at least {MIN_CACHE_KEY_BYTES} are needed \
                 (e.g. `openssl rand -base64 48`)"
            ),
        );
        return None;
    }
    Some(key)
}

fn read_tls(t: &TableReader<'_>, enabled: bool, needed: bool) -> ClusterTls {
    let certificate = t.get(&keys::CLUSTER_TLS_CERTIFICATE);
    let private_key = t.get(&keys::CLUSTER_TLS_PRIVATE_KEY);
    let ca = t.get(&keys::CLUSTER_TLS_CA);
    let domain = t
        .get(&keys::CLUSTER_TLS_DOMAIN)
        .unwrap_or_else(|| "ferrymail.internal".to_owned());
    if !enabled {
        return ClusterTls::PlainText;
    }
    match (certificate, private_key, ca) {
        (Some(certificate), Some(private_key), Some(ca)) => ClusterTls::Mutual(ClusterIdentity {
            certificate,
            private_key,
            ca,
            domain,
        }),
        (None, None, None) if !needed => ClusterTls::Unused,
        (certificate, private_key, ca) => {
            for (name, missing) in [
                ("certificate", certificate.is_none()),
                ("private-key", private_key.is_none()),
                ("ca", ca.is_none()),
            ] {
                // A key that is there but invalid has been reported as such already.
                if missing && !t.contains(name) {
                    t.report(
                        name,
                        "required: gRPC between the roles is mutual TLS; give this process its \
                         certificate, key and the roles' CA, or set cluster.tls.enable = false \
                         for plain text (loopback, tests)",
                    );
                }
            }
            ClusterTls::Unused
        }
    }
}
