//! Installing the global logger. Its own test binary, since the logger is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferrymail_telemetry::{LogFormat, TelemetryError, init_logging};

#[test]
fn second_initialisation_is_an_error_not_a_panic() {
    init_logging(LogFormat::Json).unwrap();
    tracing::info!("logging is up");
    let err = init_logging(LogFormat::Text).unwrap_err();
    assert!(
        matches!(err, TelemetryError::LoggingAlreadyInitialized(_)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "logging is already initialised");
    assert!(std::error::Error::source(&err).is_some());
}
