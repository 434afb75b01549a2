//! Why the ingress could not start.

/// A start-up failure of the ingress.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A DKIM signing key cannot be used.
    #[error("DKIM: {0}")]
    Dkim(String),
    /// The DNS resolver cannot be built.
    #[error(transparent)]
    Dns(#[from] ferrymail_dns::DnsError),
}
