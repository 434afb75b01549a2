//! Smoke tests of the real-peer lab: a private Dovecot and Postfix's smtp-sink start on
//! loopback and answer the way the directory-proxy and delivery tests rely on, and a private
//! PostgreSQL cluster stops and starts again as the store tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpStream;
use std::process::Command;

use ferrymail_e2e::{
    ALICE, BOB, DOVECOT_HOSTNAME, Dovecot, DovecotOptions, ImapClient, ImapResponse, Postgres,
    SmtpClient, SmtpSink, SmtpSinkOptions, TEMPFAIL_USER, require_peer, sasl_plain,
};

fn quick() -> DovecotOptions {
    DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    }
}

fn imap_login(dovecot: &Dovecot, user: &str, password: &str) -> ImapResponse {
    ImapClient::connect(dovecot.imap()).login(user, password)
}

#[test]
fn imap_login_succeeds_fails_permanently_or_temporarily() {
    let dovecot = Dovecot::start_with(quick());
    let log = || dovecot.log();

    let mut imap = ImapClient::connect(dovecot.imap());
    assert!(
        imap.greeting.starts_with("* OK [CAPABILITY IMAP4rev1")
            && imap.greeting.contains(" STARTTLS ")
            && imap.greeting.contains(" AUTH=PLAIN AUTH=LOGIN]"),
        "greeting {:?}",
        imap.greeting
    );
    // Without an earlier CAPABILITY command, the capabilities come in the tagged OK.
    let ok = imap.login(ALICE.0, ALICE.1);
    assert!(
        ok.tagged.starts_with("OK [CAPABILITY IMAP4rev1 ") && ok.tagged.ends_with("] Logged in"),
        "{ok:?}\n{}",
        log()
    );
    let bob = imap_login(&dovecot, BOB.0, BOB.1);
    assert_eq!(bob.status(), "OK", "{bob:?}\n{}", log());

    for (user, password) in [(ALICE.0, "wrong"), ("nosuch@example.org", "x")] {
        let failed = imap_login(&dovecot, user, password);
        assert_eq!(
            failed.tagged,
            "NO [AUTHENTICATIONFAILED] Authentication failed.",
            "{user}: {failed:?}\n{}",
            log()
        );
    }

    // `NO [UNAVAILABLE] Temporary authentication failure. [host:timestamp]`
    let tempfail = imap_login(&dovecot, TEMPFAIL_USER, "any");
    assert_eq!(tempfail.status(), "NO", "{tempfail:?}\n{}", log());
    assert_eq!(tempfail.code(), Some("UNAVAILABLE"), "{tempfail:?}");
    assert!(
        tempfail
            .tagged
            .starts_with("NO [UNAVAILABLE] Temporary authentication failure."),
        "{tempfail:?}"
    );
    // The checkpassword script's temporary failure is logged.
    dovecot.wait_for_log("exited with status 111");

    let mut tls = ImapClient::connect(dovecot.imap());
    let starttls = tls.command("STARTTLS");
    assert_eq!(starttls.tagged, "OK Begin TLS negotiation now.");
}

#[test]
fn after_a_failed_login_the_auth_penalty_delays_but_does_not_refuse_the_next() {
    // The default instance keeps Dovecot's auth penalty, as in production: the second
    // login waits about 2-4 s, well within the clients' patience.
    let dovecot = Dovecot::start();
    let failed = imap_login(&dovecot, ALICE.0, "wrong");
    assert_eq!(failed.code(), Some("AUTHENTICATIONFAILED"), "{failed:?}");
    let ok = imap_login(&dovecot, ALICE.0, ALICE.1);
    assert_eq!(ok.status(), "OK", "{ok:?}\n{}", dovecot.log());
}

#[test]
fn lmtp_rcpt_accepts_users_rejects_unknown_and_fails_temporarily_for_tempfail() {
    let dovecot = Dovecot::start_with(quick());
    let mut lmtp = SmtpClient::connect(dovecot.lmtp());
    assert_eq!(
        lmtp.greeting.to_string(),
        format!("220 {DOVECOT_HOSTNAME} Dovecot ferrymail-lab ready.\n")
    );
    let lhlo = lmtp.command("LHLO probe.example");
    assert_eq!(lhlo.code, 250, "{lhlo}");
    for extension in ["ENHANCEDSTATUSCODES", "PIPELINING", "STARTTLS"] {
        assert!(lhlo.lines.iter().any(|l| l == extension), "{lhlo}");
    }
    assert_eq!(lmtp.command("MAIL FROM:<sender@example.com>").code, 250);

    let expected = [
        ("alice@example.org", "250 2.1.5 OK"),
        ("Bob+tag@example.org", "250 2.1.5 OK"),
        (
            "nosuch@example.org",
            "550 5.1.1 <nosuch@example.org> User doesn't exist: nosuch@example.org",
        ),
        (
            TEMPFAIL_USER,
            "451 4.3.0 <tempfail@example.org> Temporary internal error",
        ),
        (
            "carol@example.org",
            "550 5.1.1 <carol@example.org> User doesn't exist: carol@example.org",
        ),
    ];
    for (rcpt, reply) in expected {
        let got = lmtp.command(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(got.to_string().trim_end(), reply, "\n{}", dovecot.log());
    }

    // Users added at run time are known once add_user returns.
    dovecot.add_user("carol@example.org", "carol-pass");
    let carol = lmtp.command("RCPT TO:<carol@example.org>");
    assert_eq!(carol.to_string().trim_end(), "250 2.1.5 OK");

    // One reply per accepted recipient, in RCPT order; delivered before the reply.
    assert_eq!(lmtp.command("DATA").code, 354);
    let first = lmtp.send_data("Subject: lab\n\nhello\n.leading dot\n");
    let replies = [first, lmtp.read_reply(), lmtp.read_reply()];
    for (reply, rcpt) in replies.iter().zip([
        "alice@example.org",
        "Bob+tag@example.org",
        "carol@example.org",
    ]) {
        assert_eq!(reply.code, 250, "{reply}");
        let text = reply.text();
        assert!(
            text.starts_with(&format!("2.0.0 <{rcpt}> ")) && text.ends_with(" Saved"),
            "{reply}"
        );
    }
    assert_eq!(lmtp.command("QUIT").code, 221);
    for user in [ALICE.0, BOB.0, "carol@example.org"] {
        assert_eq!(dovecot.delivered(user), 1, "{user}\n{}", dovecot.log());
    }
}

#[test]
fn submission_auth_succeeds_fails_permanently_or_temporarily() {
    let dovecot = Dovecot::start_with(quick());
    let log = || dovecot.log();

    let mut submission = SmtpClient::connect(dovecot.submission());
    assert_eq!(submission.greeting.code, 220);
    let ehlo = submission.command("EHLO probe.example");
    assert_eq!(ehlo.code, 250, "{ehlo}");
    for extension in ["AUTH PLAIN LOGIN", "STARTTLS", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.lines.iter().any(|l| l == extension), "{ehlo}");
    }
    let ok = submission.command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, ALICE.1)));
    assert_eq!(ok.to_string(), "235 2.7.0 Logged in.\n", "{}", log());
    // The default relay is down: after AUTH, Dovecot answers 421 and hangs up.
    if let Some(reply) = submission.try_command("MAIL FROM:<alice@example.org>") {
        assert_eq!(reply.code, 421, "{reply}");
        assert!(
            reply.text().contains("Failed to connect to relay server"),
            "{reply}"
        );
    }

    for (user, password) in [(BOB.0, "wrong"), ("nosuch@example.org", "x")] {
        let mut client = SmtpClient::connect(dovecot.submission());
        client.command("EHLO probe.example");
        let failed = client.command(&format!("AUTH PLAIN {}", sasl_plain(user, password)));
        assert_eq!(
            failed.to_string(),
            "535 5.7.8 Authentication failed.\n",
            "{user}\n{}",
            log()
        );
    }

    // `454 4.7.0 Temporary authentication failure. [host:timestamp]`
    let mut client = SmtpClient::connect(dovecot.submission());
    client.command("EHLO probe.example");
    let tempfail = client.command(&format!("AUTH PLAIN {}", sasl_plain(TEMPFAIL_USER, "any")));
    assert_eq!(tempfail.code, 454, "{tempfail}\n{}", log());
    assert!(
        tempfail
            .text()
            .starts_with("4.7.0 Temporary authentication failure."),
        "{tempfail}"
    );
}

/// Checks every TLS entry point with Python's clients: IMAPS, and STARTTLS on IMAP, LMTP
/// and submission, trusting the lab's CA; then that an untrusting client fails to verify.
const TLS_PROBE: &str = r#"
import imaplib, smtplib, ssl, sys
imap, imaps, lmtp, submission, ca, user, password = sys.argv[1:]
trusted = ssl.create_default_context(cafile=ca)
for host in ("localhost", "127.0.0.1"):
    client = imaplib.IMAP4_SSL(host, int(imaps), ssl_context=trusted)
    print("imaps", host, client.sock.version(), client.login(user, password)[0])
    client.logout()
client = imaplib.IMAP4("127.0.0.1", int(imap))
client.starttls(ssl_context=trusted)
print("imap starttls", client.login(user, password)[0])
client.logout()
client = smtplib.LMTP("127.0.0.1", int(lmtp))
client.ehlo("probe.example")
client.starttls(context=trusted)
client.ehlo("probe.example")
client.mail("<>")
print("lmtp starttls", client.rcpt(user)[0])
client = smtplib.SMTP("127.0.0.1", int(submission))
client.starttls(context=trusted)
print("submission starttls", client.login(user, password)[0])
untrusted = ssl.create_default_context()
try:
    imaplib.IMAP4_SSL("localhost", int(imaps), ssl_context=untrusted)
    print("untrusted: verified?!")
except ssl.SSLCertVerificationError as error:
    print("untrusted:", error.verify_message)
"#;

#[test]
fn tls_handshakes_verify_against_the_generated_ca_and_fail_without_it() {
    let python = require_peer("python3");
    let dovecot = Dovecot::start_with(quick());
    let output = Command::new(python)
        .args(["-c", TLS_PROBE])
        .args([dovecot.ports.imap, dovecot.ports.imaps, dovecot.ports.lmtp].map(|p| p.to_string()))
        .arg(dovecot.ports.submission.to_string())
        .arg(dovecot.ca_pem())
        .args([ALICE.0, ALICE.1])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        dovecot.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "one line per check:\n{stdout}{}",
        dovecot.log()
    );
    for (line, host) in lines.iter().zip(["localhost", "127.0.0.1"]) {
        assert!(
            line.starts_with(&format!("imaps {host} TLSv1.")) && line.ends_with(" OK"),
            "{stdout}"
        );
    }
    assert_eq!(
        lines[2..],
        [
            "imap starttls OK",
            "lmtp starttls 250",
            "submission starttls 235",
            "untrusted: unable to get local issuer certificate",
        ],
        "{stdout}"
    );
}

#[test]
fn submission_relays_through_the_relay_the_test_gives() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let dovecot = Dovecot::start_with(DovecotOptions {
        relay: Some(sink.address()),
        ..quick()
    });
    let mut submission = SmtpClient::connect(dovecot.submission());
    submission.command("EHLO probe.example");
    let auth = submission.command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, ALICE.1)));
    assert_eq!(auth.code, 235, "{auth}\n{}", dovecot.log());
    // smtp-sink's replies pass through.
    let mail = submission.command("MAIL FROM:<alice@example.org>");
    assert_eq!(mail.to_string(), "250 2.1.0 Ok\n", "{}", dovecot.log());
    assert_eq!(submission.command("RCPT TO:<bob@example.org>").code, 250);
    assert_eq!(submission.command("DATA").code, 354);
    let queued = submission.send_data("Subject: relayed\n\nhello\n");
    assert_eq!(queued.code, 250, "{queued}");
    assert_eq!(submission.command("QUIT").code, 221);

    sink.wait_for_messages(1);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("X-Mail-Args: <alice@example.org>")
            && messages[0].contains("X-Rcpt-Args: <bob@example.org>")
            && messages[0].contains("Subject: relayed"),
        "{}",
        messages[0]
    );
}

#[test]
fn smtp_sink_accepts_and_counts_messages() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    assert_eq!(sink.received(), 0);
    let mut smtp = SmtpClient::connect(sink.address());
    assert_eq!(smtp.greeting.to_string(), "220 smtp-sink ESMTP\n");
    assert_eq!(smtp.command("EHLO probe.example").code, 250);
    for n in 1..=2 {
        assert_eq!(smtp.command("MAIL FROM:<a@example.com>").code, 250);
        assert_eq!(smtp.command("RCPT TO:<b@example.net>").code, 250);
        assert_eq!(smtp.command("DATA").code, 354);
        let queued = smtp.send_data(&format!("Subject: message {n}\n\nbody\n"));
        assert_eq!(queued.to_string(), "250 2.0.0 Ok\n");
    }
    // An abandoned transaction is not a message.
    assert_eq!(smtp.command("MAIL FROM:<a@example.com>").code, 250);
    assert_eq!(smtp.command("RSET").code, 250);
    assert_eq!(smtp.command("QUIT").code, 221);

    sink.wait_for_messages(2);
    assert_eq!(sink.received(), 2);
    let mut subjects: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["message 1", "message 2"]);
}

#[test]
fn smtp_sink_rejects_the_commands_it_is_told_to() {
    let temporary = SmtpSink::start(SmtpSinkOptions {
        reject_temporarily: vec!["RCPT".into()],
        temporary_reply: Some("451 4.3.0 Try again later".into()),
        ..SmtpSinkOptions::default()
    });
    let mut smtp = SmtpClient::connect(temporary.address());
    smtp.command("EHLO probe.example");
    assert_eq!(smtp.command("MAIL FROM:<a@example.com>").code, 250);
    let rcpt = smtp.command("RCPT TO:<b@example.net>");
    assert_eq!(rcpt.to_string(), "451 4.3.0 Try again later\n");

    let permanent = SmtpSink::start(SmtpSinkOptions {
        lmtp: true,
        reject_permanently: vec!["MAIL".into()],
        ..SmtpSinkOptions::default()
    });
    let mut lmtp = SmtpClient::connect(permanent.address());
    assert_eq!(lmtp.command("LHLO probe.example").code, 250);
    let mail = lmtp.command("MAIL FROM:<a@example.com>");
    assert_eq!(mail.to_string(), "500 5.3.0 Error: command failed\n");
}

#[test]
fn stopped_peers_release_their_ports() {
    let mut dovecot = Dovecot::start();
    let mut sink = SmtpSink::start(SmtpSinkOptions::default());
    let (imap, lmtp, address) = (dovecot.imap(), dovecot.lmtp(), sink.address());
    dovecot.stop();
    sink.stop();
    for addr in [imap, lmtp, address] {
        assert!(
            TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
    dovecot.stop(); // a second stop (and the drop) does nothing
}

#[test]
#[should_panic(expected = "run `make test-deps`")]
fn a_missing_peer_fails_the_test_instead_of_skipping_it() {
    require_peer("ferrymail-no-such-peer");
}

#[test]
fn postgres_keeps_its_data_across_a_stop_and_a_restart_on_the_same_port() {
    let mut postgres = Postgres::start();
    let port = postgres.port();
    postgres.create_database("lab");
    postgres.sql("lab", "CREATE TABLE t (n int); INSERT INTO t VALUES (42)");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(TcpStream::connect(address).is_ok());
    postgres.stop();
    assert!(
        TcpStream::connect(address).is_err(),
        "{address} still accepts connections"
    );
    postgres.stop(); // a second stop does nothing
    postgres.restart();
    assert_eq!(postgres.port(), port);
    assert_eq!(postgres.sql("lab", "SELECT n FROM t"), "42");
    let config = postgres.store_config("shared", "lab", port);
    assert!(
        config.contains(&format!("port = {port}")) && config.contains("data = \"shared\""),
        "{config}"
    );
}
