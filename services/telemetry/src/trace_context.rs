//! W3C trace context (`traceparent`, `tracestate`) to and from `tracing` spans: how a trace
//! crosses a gRPC call, and how a queued message carries its trace to later delivery attempts.
//!
//! Every function returns at once, doing nothing, when trace export is off.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_export::trace_export_enabled;

/// The W3C header carrying trace id, parent span id and flags.
pub const TRACEPARENT: &str = "traceparent";

/// The W3C header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// The trace context headers of `span`, to send with a request made inside it: empty when
/// trace export is off or the span is not recorded.
pub fn context_headers(span: &Span) -> Vec<(&'static str, String)> {
    if !trace_export_enabled() {
        return Vec::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|name| carrier.remove(name).map(|value| (name, value)))
        .collect()
}

/// The `traceparent` of `span`, to store with a message so that later work joins its trace;
/// `None` when trace export is off or the span is not recorded.
pub fn traceparent(span: &Span) -> Option<String> {
    context_headers(span)
        .into_iter()
        .find_map(|(name, value)| (name == TRACEPARENT).then_some(value))
}

/// Makes `span` a child of the remote context that `header` looks up (`traceparent`,
/// `tracestate`). Call it right after creating `span`, before it is entered. A missing or
/// malformed context leaves `span` a root: bad input never fails the work it traces.
pub fn set_remote_parent<'a>(span: &Span, header: impl Fn(&str) -> Option<&'a str>) {
    if !trace_export_enabled() {
        return;
    }
    let Some(parent) = header(TRACEPARENT) else {
        return;
    };
    let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), parent.to_owned())]);
    if let Some(state) = header(TRACESTATE) {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only for a span that is disabled or already started: it then stays as it is.
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of a stored `traceparent` (see [`traceparent`]).
pub fn set_stored_parent(span: &Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        set_remote_parent(span, |name| (name == TRACEPARENT).then_some(value));
    }
}

/// The trace id of `span` in hex, to log next to a queue id; `None` when trace export is off
/// or the span is not recorded.
pub fn trace_id(span: &Span) -> Option<String> {
    if !trace_export_enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
