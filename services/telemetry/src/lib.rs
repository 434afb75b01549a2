//! Telemetry shared by every ferrymail role: logging, Prometheus metrics, health and the admin
//! HTTP server that exposes them.
//!
//! A role starts up in this order:
//!
//! 1. [`init_logging`] once, early in `main`.
//! 2. [`Metrics::new`] and [`Health::new`]; each subsystem registers its metrics with
//!    [`Metrics::register`] and takes a [`ComponentHealth`] with [`Health::component`].
//! 3. [`serve_admin`] on the admin port, serving `/healthz`, `/readyz` and `/metrics`.
//!
//! On shutdown the role calls [`Health::start_draining`] first, so `/readyz` fails and
//! Kubernetes stops routing traffic, and only then cancels the admin server's token.
//!
//! ```no_run
//! use ferrymail_telemetry::{Health, LogFormat, Metrics, init_logging, serve_admin};
//! use prometheus_client::metrics::counter::Counter;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! init_logging(LogFormat::Json)?;
//! let metrics = Metrics::new("smtp-ingress");
//! let health = Health::new();
//!
//! let received = Counter::<u64>::default();
//! metrics.register("smtp_messages_received_total", "Messages received.", received.clone());
//! let listener = health.component("smtp-listener");
//!
//! let shutdown = CancellationToken::new();
//! let admin = tokio::net::TcpListener::bind("0.0.0.0:9090").await?;
//! let server = tokio::spawn(serve_admin(admin, health.clone(), metrics, shutdown.clone()));
//!
//! listener.set_ready();
//! received.inc();
//!
//! // On SIGTERM: fail readiness, let traffic move away, then stop the admin server.
//! health.start_draining();
//! shutdown.cancel();
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! A role that exports traces calls [`init_telemetry`] instead of [`init_logging`]: the same
//! subscriber, plus an OpenTelemetry layer when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see
//! `trace_export` for the variables read). Work that crosses a process boundary carries its
//! trace with the W3C context helpers: [`context_headers`] and [`set_remote_parent`] for gRPC
//! calls, [`traceparent`] and [`set_stored_parent`] for a queued message.

mod admin_listener;
mod admin_server;
mod error;
mod health;
mod log_limit;
mod logging;
mod metrics;
mod trace_context;
mod trace_export;

pub use admin_listener::{AdminClient, AdminListener, AdminStream};
pub use admin_server::{OPENMETRICS_CONTENT_TYPE, serve_admin, serve_admin_with};
pub use error::TelemetryError;
pub use health::{ComponentHealth, DRAINING_REASON, Health, NotReady, Readiness};
pub use log_limit::LogLimit;
pub use logging::{LogFormat, init_logging, init_telemetry};
pub use metrics::Metrics;
pub use trace_context::{
    TRACEPARENT, TRACESTATE, context_headers, set_remote_parent, set_stored_parent, trace_id,
    traceparent,
};
pub use trace_export::{TraceExport, TraceSettings, trace_export_enabled};
