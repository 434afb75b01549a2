//! `webhook.<id>` and `queue.events.*`: Stalwart's defaults, values read as written, and
//! secrets never shown.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

#[test]
fn no_webhook_by_default_and_the_outbox_defaults() {
    let config = load_str("ok.toml", BASE).unwrap();
    assert!(config.webhooks.is_empty());
    let events = config.queue.events;
    assert_eq!(events.max_size, 100_000);
    assert_eq!(events.batch_size, 500);
    assert_eq!(events.min_backoff, Duration::from_secs(1));
    assert_eq!(events.max_backoff, Duration::from_secs(300));
}

#[test]
fn a_minimal_webhook_takes_stalwart_s_defaults() {
    let text = format!("{BASE}[webhook.ops]\nurl = \"https://hooks.example.org/in\"\n");
    let config = load_str("ok.toml", &text).unwrap();
    let hook = &config.webhooks["ops"];
    assert_eq!(hook.url, "https://hooks.example.org/in");
    assert_eq!(hook.events, vec!["*".to_owned()]);
    assert_eq!(hook.timeout, Duration::from_secs(30));
    assert_eq!(hook.throttle, Duration::from_secs(1));
    assert!(hook.signature_key.is_none() && hook.auth.is_none());
    assert!(!hook.allow_invalid_certs);
    assert!(hook.wants("queue.held"));
}

#[test]
fn every_key_is_read_and_secrets_stay_hidden() {
    let text = format!(
        "{BASE}[webhook.ops]\nurl = \"http://127.0.0.1:9000/events\"\nevents = [\"delivery.*\", \"queue.held\"]\n\
         timeout = \"5s\"\nthrottle = \"100ms\"\nsignature-key = \"s3cr3t-key\"\nheaders = [\"X-Team: mail\"]\n\
         auth.username = \"ops\"\nauth.secret = \"hunter2\"\nallow-invalid-certs = true\n\
         [webhook.off]\nurl = \"http://127.0.0.1:9001/\"\nenable = false\n\
         [queue.events]\nbatch-size = 50\noutbox.max-size = 10\nretry.min-backoff = \"2s\"\nretry.max-backoff = \"1m\"\n"
    );
    let config = load_str("ok.toml", &text).unwrap();
    assert_eq!(config.webhooks.len(), 1, "a disabled webhook is left out");
    let hook = &config.webhooks["ops"];
    assert!(hook.wants("delivery.bounced") && hook.wants("queue.held"));
    assert!(!hook.wants("queue.cancelled"));
    assert_eq!(hook.timeout, Duration::from_secs(5));
    assert_eq!(hook.throttle, Duration::from_millis(100));
    assert_eq!(hook.signature_key.as_ref().unwrap().expose(), "s3cr3t-key");
    assert_eq!(hook.headers, vec![("X-Team".to_owned(), "mail".to_owned())]);
    let (user, secret) = hook.auth.as_ref().unwrap();
    assert_eq!((user.as_str(), secret.expose()), ("ops", "hunter2"));
    assert!(hook.allow_invalid_certs);
    let shown = format!("{hook:?}");
    assert!(!shown.contains("s3cr3t-key") && !shown.contains("hunter2"));
    let events = &config.queue.events;
    assert_eq!((events.batch_size, events.max_size), (50, 10));
    assert_eq!(events.min_backoff, Duration::from_secs(2));
    assert_eq!(events.max_backoff, Duration::from_secs(60));
}
