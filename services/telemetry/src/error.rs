//! The error type of this crate.
//!
//! Causes are chained as `source()`, not repeated in the message, so a report that prints the
//! chain shows each one once.

/// Everything that can go wrong while setting up or serving telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A log format other than `text` or `json` was asked for.
    #[error("unknown log format {0:?}: expected \"text\" or \"json\"")]
    UnknownLogFormat(String),

    /// `RUST_LOG` holds a directive that does not parse.
    #[error("invalid RUST_LOG filter")]
    InvalidLogFilter(#[source] tracing_subscriber::filter::FromEnvError),

    /// A global logger was already installed, by an earlier call or by someone else.
    #[error("logging is already initialised")]
    LoggingAlreadyInitialized(#[source] tracing_subscriber::util::TryInitError),

    /// The OTLP trace exporter could not be built from the `OTEL_*` settings.
    #[error("cannot start trace export")]
    TraceExporter(#[source] opentelemetry_otlp::ExporterBuildError),

    /// The metrics registry could not be rendered as OpenMetrics text.
    #[error("encoding metrics failed")]
    MetricsEncoding(#[from] std::fmt::Error),

    /// The admin HTTP server failed.
    #[error("admin server failed")]
    AdminServer(#[source] std::io::Error),
}
