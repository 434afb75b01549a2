//! W3C trace context in gRPC metadata: the client side adds the caller's span context to every
//! request ([`PropagateTrace`]), the server side opens each call's span as its child
//! ([`server_span`]). So one message stays one trace across the roles.
//!
//! Both do nothing but create the server span when trace export is off.

use ferrymail_telemetry::{context_headers, set_remote_parent};
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tracing::Span;

/// The path prefix of the standard gRPC health service's methods.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Client interceptor adding `traceparent` and `tracestate` of the current span to a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateTrace;

impl Interceptor for PropagateTrace {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        for (name, value) in context_headers(&Span::current()) {
            // A value the propagator wrote is always valid ASCII; skip it rather than fail the
            // call if it ever is not.
            if let Ok(value) = MetadataValue::try_from(value) {
                request.metadata_mut().insert(name, value);
            }
        }
        Ok(request)
    }
}

/// The span of one served call, a child of the caller's span when the request carries its
/// trace context. For `tonic::transport::Server::trace_fn`.
pub fn server_span(request: &http::Request<()>) -> Span {
    // Probes call the health service every few seconds: a trace each would drown the others.
    if request.uri().path().starts_with(HEALTH_PREFIX) {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %request.uri().path(),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    set_remote_parent(&span, |name| {
        request.headers().get(name).and_then(|v| v.to_str().ok())
    });
    span
}
