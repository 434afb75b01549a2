//! `server.auto-ban.auth.rate`: Stalwart's key and default, `false` to turn it off, and every
//! malformed value named.

use std::time::Duration;

use ferrymail_config::load_str;
use ferrymail_config::model::queue_limits::Rate;

const BASE: &str = "[server]\nhostname = \"mx.test\"\n";

fn rate(extra: &str) -> Option<Rate> {
    load_str("ban.toml", &format!("{BASE}{extra}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .server
        .auto_ban_auth
}

#[test]
fn the_default_is_stalwarts_and_false_turns_it_off() {
    assert_eq!(
        rate(""),
        Some(Rate {
            count: 100,
            period: Duration::from_secs(86_400)
        })
    );
    assert_eq!(
        rate("[server.auto-ban.auth]\nrate = \"5/10m\"\n"),
        Some(Rate {
            count: 5,
            period: Duration::from_secs(600)
        })
    );
    assert_eq!(rate("[server.auto-ban.auth]\nrate = false\n"), None);
}

#[test]
fn malformed_rates_are_named() {
    for (value, message) in [
        ("true", "or false to turn the limit off"),
        ("42", "or false to turn the limit off"),
        ("\"100\"", "is not a rate"),
        ("\"ten/1d\"", "is not a count"),
        ("\"0/1d\"", "must be more than zero"),
        ("\"10/0s\"", "must be more than zero"),
        ("\"10/1 fortnight\"", "unknown unit"),
    ] {
        let text = format!("{BASE}[server.auto-ban.auth]\nrate = {value}\n");
        let errors = match load_str("ban.toml", &text) {
            Ok(_) => panic!("{value} accepted"),
            Err(errors) => errors.0,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.key == "server.auto-ban.auth.rate" && e.message.contains(message)),
            "{value}: {errors:?}"
        );
    }
    // Stalwart's other auto-ban categories are not ferrymail's: named as unknown.
    let text = format!("{BASE}[server.auto-ban.abuse]\nrate = \"35/1d\"\n");
    let errors = load_str("ban.toml", &text)
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.key == "server.auto-ban.abuse"),
        "{errors:?}"
    );
}
