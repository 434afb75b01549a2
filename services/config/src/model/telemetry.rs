//! `tracing.*`: where traces are exported, for deployments configured by file rather than by
//! the `OTEL_*` environment variables (which win when both are set).

use crate::keys;
use crate::reader::TableReader;

/// `tracing.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracing {
    /// `tracing.endpoint`: the collector's OTLP/gRPC endpoint; `None` exports nothing.
    pub endpoint: Option<String>,
    /// `tracing.service-name`.
    pub service_name: Option<String>,
}

pub(crate) fn read(root: &TableReader<'_>) -> Tracing {
    let t = root.table("tracing");
    let endpoint: Option<String> = t.get(&keys::TRACING_ENDPOINT);
    if let Some(endpoint) = &endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        t.report(
            "endpoint",
            format!("{endpoint:?} is not an http:// or https:// URL"),
        );
    }
    Tracing {
        endpoint,
        service_name: t.get(&keys::TRACING_SERVICE_NAME),
    }
}
