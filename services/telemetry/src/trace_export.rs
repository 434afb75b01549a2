//! Trace export with OpenTelemetry: spans of the process's `tracing` subscriber sent over OTLP
//! (gRPC) to a collector.
//!
//! Configured only by the standard OpenTelemetry environment variables, read by the
//! OpenTelemetry SDK itself:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): the collector's
//!   OTLP gRPC endpoint, e.g. `http://otel-collector:4317`. Unset or empty: export is off.
//! - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`: the resource; without a service name
//!   the default is `ferrymail-<role>`.
//! - `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`: the sampler (default
//!   `parentbased_always_on`).
//! - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off whatever else is
//!   set; the `OTEL_BSP_*` variables tune the batching.
//!
//! When export is off no exporter, no OpenTelemetry layer and no propagation work exist: the
//! subscriber is the logging one alone.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::Registry;

use crate::TelemetryError;

/// The layer that turns spans into OpenTelemetry spans, on the bare registry.
pub(crate) type TraceLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Whether this process exports traces; read on the hot path before any propagation work.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The variables that name a collector; the signal-specific one first, as the SDK reads them.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Whether this process exports traces (an OTLP endpoint is configured).
pub fn trace_export_enabled() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The running exporter; [`TraceExport::shutdown`] sends the spans still buffered.
#[derive(Debug, Default)]
pub struct TraceExport {
    provider: Option<SdkTracerProvider>,
}

impl TraceExport {
    /// An exporter that exports nothing: trace export is off.
    pub fn off() -> Self {
        Self::default()
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter; call it before the Tokio
    /// runtime stops, since the gRPC exporter runs on it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "trace export did not shut down cleanly");
            }
        }
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where traces go when the `OTEL_*` variables do not say: the configuration's `tracing.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// The collector's OTLP/gRPC endpoint.
    pub endpoint: Option<String>,
    /// The service name of the spans.
    pub service_name: Option<String>,
}

/// Whether an `OTEL_*` endpoint variable is set.
fn endpoint_in_environment() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    ENDPOINT_VARIABLES.iter().any(|name| set(name))
}

/// Whether the environment, or else `settings`, asks for trace export.
pub(crate) fn wanted(settings: &TraceSettings) -> bool {
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    (endpoint_in_environment() || settings.endpoint.is_some())
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The resource: the SDK's (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), with
/// `tracing.service-name`, else `ferrymail-<role>`, as service name when the environment names
/// none.
fn resource(role: &str, settings: &TraceSettings) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder().with_attributes([
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("ferrymail.role", role.to_owned()),
    ]);
    if named {
        builder.build()
    } else {
        let name = settings
            .service_name
            .clone()
            .unwrap_or_else(|| format!("ferrymail-{role}"));
        builder.with_service_name(name).build()
    }
}

/// Starts the OTLP exporter and returns the layer feeding it, when the environment or
/// `settings` ask for export. Must run inside a Tokio runtime: the gRPC exporter lives on it.
pub(crate) fn start(
    role: &str,
    settings: &TraceSettings,
) -> Result<(TraceExport, Option<TraceLayer>), TelemetryError> {
    if !wanted(settings) {
        return Ok((TraceExport::off(), None));
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    // The variables win: the SDK reads them itself when no endpoint is given here.
    if !endpoint_in_environment()
        && let Some(endpoint) = &settings.endpoint
    {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let exporter = builder.build().map_err(TelemetryError::TraceExporter)?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(role, settings))
        .build();
    let tracer = provider.tracer("ferrymail");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .boxed();
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((
        TraceExport {
            provider: Some(provider),
        },
        Some(layer),
    ))
}
