//! The fail2ban filter in `deploy/fail2ban` matches the lines the server actually writes,
//! checked with fail2ban's own `fail2ban-regex`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, Ferrymail, SmtpClient, logins_directory,
    mailboxes_directory, require_peer, sasl_plain,
};

#[test]
fn the_filter_matches_auth_failures_and_relay_denials() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let config = format!(
        r#"
[server]
hostname = "mx.test"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{store}{mailboxes}{logins}[session.rcpt]
directory = "mailboxes"
[session.auth]
directory = "logins"
# Only so this test can fail a login without TLS; never in production.
allow-plain-text = true
# One failure, and the next attempt is blocked (logged with reason=blocked).
[server.auto-ban.auth]
rate = "1/1h"
"#,
        store = EMBEDDED_STORE,
        mailboxes = mailboxes_directory(&dovecot),
        logins = logins_directory(&dovecot),
    );
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let mut client = SmtpClient::connect(smtp);
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(
        client
            .command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, "wrong")))
            .code,
        535
    );
    assert_eq!(
        client
            .command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, ALICE.1)))
            .code,
        454
    );
    assert_eq!(client.command("MAIL FROM:<s@remote.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<victim@other.test>").code, 554);
    let auth = process.wait_for("the auth line", |l| {
        l.message().starts_with("authentication failed:")
    });
    let blocked = process.wait_for("the blocked auth line", |l| {
        l.message().starts_with("authentication failed:") && l.message().ends_with("reason=blocked")
    });
    let relay = process.wait_for("the relay line", |l| {
        l.message().starts_with("relay denied:")
    });

    // The lines as the server wrote them (JSON), plus one unrelated line that must not match.
    let started = process.wait_for("start", |l| l.message() == "started");
    let log = process.dir.path().join("ferrymail.log");
    let lines: Vec<String> = [auth, blocked, relay, started]
        .iter()
        .map(|l| l.0.to_string())
        .collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/fail2ban/filter.d/ferrymail.conf");
    let out = Command::new(require_peer("fail2ban-regex"))
        .arg(&log)
        .arg(&filter)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Lines: 4 lines, 0 ignored, 3 matched, 1 missed"),
        "{report}"
    );
}
