//! Passwords reach the upstream only over TLS: with a Dovecot that offers no STARTTLS, AUTH
//! at the SMTP door fails temporarily (`454`) and Dovecot never sees the attempt, unless the
//! directory allows plain text; recipients, which need no password, are checked all the same.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, Ferrymail, SmtpClient, sasl_plain,
};

/// `ferrymail all` with Dovecot's LMTP checking recipients and its submission service
/// checking AUTH, both in clear text; `allow` is the logins directory's
/// `tls.allow-plain-text`.
fn config(dovecot: &Dovecot, allow: bool) -> String {
    format!(
        r#"
[server]
hostname = "mx.test"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{EMBEDDED_STORE}
[directory.mailboxes]
type = "lmtp"
address = "127.0.0.1"
port = {lmtp}
lookup.domains = ["example.org"]
[directory.logins]
type = "smtp"
address = "127.0.0.1"
port = {submission}
tls.allow-plain-text = {allow}
[session.rcpt]
directory = "mailboxes"
[session.auth]
directory = "logins"
# The test's client speaks clear text to ferrymail; what matters here is the other side.
allow-plain-text = true
"#,
        lmtp = dovecot.ports.lmtp,
        submission = dovecot.ports.submission,
    )
}

fn auth_reply(process: &mut Ferrymail) -> (u16, String) {
    let mut client = SmtpClient::connect(process.address("smtp"));
    assert_eq!(client.command("EHLO client.test").code, 250);
    let reply = client.command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, ALICE.1)));
    (reply.code, reply.text())
}

#[test]
fn auth_fails_temporarily_without_tls_to_the_upstream_unless_allowed() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        tls: false,
        ..DovecotOptions::default()
    });
    let mut strict = Ferrymail::start("all", &config(&dovecot, false));
    let (code, text) = auth_reply(&mut strict);
    assert_eq!(code, 454, "{text}");
    assert!(text.starts_with("4.7.0"), "{text}");
    strict.wait_for("the reason in the log", |l| {
        l.message().contains("lookup failed") && l.0.to_string().contains("not encrypted")
    });
    let attempts: Vec<String> = dovecot
        .log()
        .lines()
        .filter(|l| l.contains("Login: user=") || l.contains("auth failed"))
        .map(str::to_owned)
        .collect();
    assert_eq!(attempts, Vec::<String>::new(), "Dovecot saw a login");

    // Recipients carry no password: they are checked in clear text.
    let mut client = SmtpClient::connect(strict.address("smtp"));
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@remote.test>").code, 250);
    assert_eq!(client.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(client.command("RCPT TO:<nosuch@example.org>").code, 550);
    drop(strict);

    let mut allowed = Ferrymail::start("all", &config(&dovecot, true));
    let (code, text) = auth_reply(&mut allowed);
    assert_eq!(code, 235, "{text}");
    dovecot.wait_for_log("Login: user=<alice@example.org>");
}
