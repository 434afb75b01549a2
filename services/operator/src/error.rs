//! Errors of the operator library.

/// What can go wrong outside of a resource's own content (which is reported in its status).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A manifest or CRD could not be turned into or read from YAML or JSON.
    #[error("{0}")]
    Manifest(String),
    /// The rendered configuration as a whole did not load; nothing was applied.
    #[error("the rendered configuration does not load; nothing was applied:\n{0}")]
    Rendered(String),
    /// A manifest file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}
