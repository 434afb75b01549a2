//! Process-wide logging: one `tracing` subscriber, filtered by `RUST_LOG`, writing text or JSON
//! lines to stderr.

use std::fmt;
use std::io::{self, IsTerminal};
use std::str::FromStr;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::TelemetryError;
use crate::trace_export::{self, TraceExport, TraceLayer, TraceSettings};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The name this format is parsed from and displayed as.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(TelemetryError::UnknownLogFormat(other.to_owned())),
        }
    }
}

/// Installs the global `tracing` subscriber, filtered by `RUST_LOG` (default `info`).
///
/// Both formats go to stderr so stdout stays free for a command's own output. JSON lines carry
/// `timestamp`, `level`, `target`, the event's fields (`message` among them) at the top level,
/// the current `span` and the list of enclosing `spans`. `log` records from dependencies are
/// forwarded too. Fails, rather than panics, when a global subscriber is already installed.
pub fn init_logging(format: LogFormat) -> Result<(), TelemetryError> {
    install(format, None)
}

/// Installs the global subscriber as [`init_logging`] does, plus OpenTelemetry trace export
/// when the `OTEL_*` environment asks for it (see the crate's documentation). `role` names
/// the service by default. Must run inside a Tokio runtime; keep the returned handle and
/// [`TraceExport::shutdown`] it before the runtime stops.
pub fn init_telemetry(
    format: LogFormat,
    role: &str,
    traces: &TraceSettings,
) -> Result<TraceExport, TelemetryError> {
    let (export, layer) = trace_export::start(role, traces)?;
    install(format, layer)?;
    if export.is_on() {
        tracing::info!("trace export is on (OTLP over gRPC)");
    }
    Ok(export)
}

/// Installs filter, log layer and the optional trace export layer as the global subscriber.
fn install(format: LogFormat, traces: Option<TraceLayer>) -> Result<(), TelemetryError> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(TelemetryError::InvalidLogFilter)?;
    let ansi = io::stderr().is_terminal();
    // The trace layer sits first, on the bare registry, so its type does not depend on the
    // others; the filter, applied to the whole stack, decides for both which spans exist.
    tracing_subscriber::registry()
        .with(traces)
        .with(filter)
        .with(log_layer(format, io::stderr, ansi))
        .try_init()
        .map_err(TelemetryError::LoggingAlreadyInitialized)
}

/// The formatting layer for `format`, writing to `writer`.
///
/// Kept apart from [`init_logging`] so that further layers (trace export) can sit next to it
/// in the same subscriber, and so tests can capture its output.
pub(crate) fn log_layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => json_subscriber::fmt::layer()
            .with_writer(writer)
            .flatten_event(true)
            // The list ends with the current span: a `span` field would repeat it.
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects everything written into one shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(format: LogFormat, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(log_layer(format, out.clone(), false));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn parses_known_formats() {
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse::<LogFormat>().unwrap(), format);
        }
    }

    #[test]
    fn rejects_unknown_format_with_clear_error() {
        for bad in ["xml", "", "JSON", " text"] {
            let err = bad.parse::<LogFormat>().unwrap_err();
            assert!(matches!(&err, TelemetryError::UnknownLogFormat(s) if s == bad));
            let message = err.to_string();
            assert!(message.contains("\"text\" or \"json\""), "{message}");
        }
    }

    #[test]
    fn json_lines_have_stable_field_names() {
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("session", peer = "192.0.2.1");
            let _entered = span.enter();
            tracing::info!(queue_id = 42, "message accepted");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line = lines[0];
        for needle in [
            "\"timestamp\":",
            "\"level\":\"INFO\"",
            "\"target\":",
            "\"message\":\"message accepted\"",
            "\"queue_id\":42",
            "\"spans\":[",
            "\"name\":\"session\"",
            "\"peer\":\"192.0.2.1\"",
        ] {
            assert!(line.contains(needle), "{needle} missing from {line}");
        }
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(
            !line.contains("\"span\":"),
            "the current span twice: {line}"
        );
    }

    #[test]
    fn text_lines_carry_level_and_message() {
        let out = capture(LogFormat::Text, || tracing::warn!("disk nearly full"));
        assert!(out.contains("WARN"), "{out}");
        assert!(out.contains("disk nearly full"), "{out}");
        assert!(
            !out.contains('\u{1b}'),
            "no colour codes when ansi is off: {out:?}"
        );
    }
}
