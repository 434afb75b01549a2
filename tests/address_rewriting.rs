//! `session.mail.rewrite` and `session.rcpt.rewrite` against the real binary: the new
//! addresses are what relay control sees and what the next hop (smtp-sink) receives; a rule
//! that makes an invalid address refuses the command.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{EMBEDDED_STORE, Ferrymail, SmtpClient, SmtpSink, SmtpSinkOptions};

/// `ferrymail all` relaying to `sink`; only `partner.test` may be relayed to, by a lookup
/// list of a directory that is never asked.
fn rewriting_server(sink: &SmtpSink) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.test"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{EMBEDDED_STORE}
[directory.corp]
type = "lmtp"
address = "127.0.0.1"
port = 9
[directory.corp.lookup]
partners = ["partner.test"]
aliases = ["team@old.test = lead@partner.test, ops@elsewhere.test", "solo@alias.test = one@partner.test"]
[session.mail]
rewrite = [ {{ if = "sender-domain", matches = "^internal\\.test$", then = "bounces@partner.test" }},
            {{ else = false }} ]
[session.rcpt]
aliases = "corp/aliases"
max-recipients = 3
relay = [ {{ if = "rcpt-domain", in-list = "corp/partners", then = true }}, {{ else = false }} ]
rewrite = [ {{ if = "rcpt", matches = "^([^.@]+)\\.([^.@]+)@old\\.test$", then = "${{1}}+${{2}}@partner.test" }},
            {{ if = "rcpt", matches = "^(.+)@elsewhere\\.test$", then = "${{1}}@denied.test" }},
            {{ if = "rcpt-domain", matches = "^broken\\.test$", then = "no-domain" }},
            {{ else = false }} ]
[remote.sink]
address = "127.0.0.1"
port = {}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
"#,
        sink.address().port()
    );
    Ferrymail::start("all", &config)
}

#[test]
fn rewritten_addresses_are_checked_and_delivered_as_new() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut server = rewriting_server(&sink);
    let mut c = SmtpClient::connect(server.address("smtp"));
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<app@internal.test>").code, 250);
    // Not local and not a partner, but rewritten to a partner: relayed.
    assert_eq!(c.command("RCPT TO:<john.doe@old.test>").code, 250);
    // Rewritten to a domain that may not be relayed to: refused as the new address.
    let denied = c.command("RCPT TO:<jane@elsewhere.test>");
    assert_eq!(denied.code, 554, "{:?}", denied.lines);
    assert!(
        denied.lines[0].contains("jane@denied.test"),
        "{:?}",
        denied.lines
    );
    // Rewritten to something that is not an address: refused, and logged.
    let broken = c.command("RCPT TO:<x@broken.test>");
    assert_eq!(broken.code, 550, "{:?}", broken.lines);
    assert!(broken.lines[0].contains("5.1.3") && broken.lines[0].contains("invalid address"));
    // No rule: checked as it is.
    assert_eq!(c.command("RCPT TO:<plain@nowhere.test>").code, 554);
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: rewritten\r\n\r\nhi").code, 250);

    sink.wait_for_messages(1);
    let message = &sink.messages()[0];
    assert!(
        message.contains("X-Rcpt-Args: <john+doe@partner.test>"),
        "{message}"
    );
    assert!(
        message.contains("X-Mail-Args: <bounces@partner.test>"),
        "{message}"
    );
    assert!(
        !message.contains("denied.test") && !message.contains("nowhere.test"),
        "{message}"
    );
    server.read_log();
    let log = server.dump();
    assert!(
        log.contains("a rewrite rule made an invalid address"),
        "{log}"
    );
}

#[test]
fn the_null_sender_is_never_rewritten() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut server = rewriting_server(&sink);
    let mut c = SmtpClient::connect(server.address("smtp"));
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<>").code, 250);
    assert_eq!(c.command("RCPT TO:<a.b@old.test>").code, 250);
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: bounce\r\n\r\nhi").code, 250);
    sink.wait_for_messages(1);
    let message = &sink.messages()[0];
    assert!(message.contains("X-Mail-Args: <>"), "{message}");
    assert!(
        message.contains("X-Rcpt-Args: <a+b@partner.test>"),
        "{message}"
    );
}

#[test]
fn an_alias_becomes_its_targets() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut server = rewriting_server(&sink);
    let mut c = SmtpClient::connect(server.address("smtp"));
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<someone@example.net>").code, 250);
    // The alias is accepted though its domain is not relayed to, and so is a target that
    // could not be relayed to on its own: both are the administrator's.
    let team = c.command("RCPT TO:<Team@OLD.test>");
    assert_eq!(team.code, 250, "{:?}", team.lines);
    let again = c.command("RCPT TO:<team@old.test>");
    assert_eq!(again.code, 250, "nothing new: {:?}", again.lines);
    // Two recipients so far; this one's single target makes three, the most allowed.
    assert_eq!(c.command("RCPT TO:<solo@alias.test>").code, 250);
    assert_eq!(c.command("RCPT TO:<x@partner.test>").code, 452, "a fourth");
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: aliased\r\n\r\nhi").code, 250);
    sink.wait_for_messages(1);
    let message = &sink.messages()[0];
    for target in [
        "lead@partner.test",
        "ops@elsewhere.test",
        "one@partner.test",
    ] {
        assert!(
            message.contains(&format!("X-Rcpt-Args: <{target}>")),
            "{message}"
        );
    }
    assert!(!message.contains("team@old.test"), "{message}");
}
