//! Why the ingress could not start.

/// A start-up failure of the ingress.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}
