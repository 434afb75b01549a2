//! The SMTP/LMTP front door through `ferrymail all`, with real clients (Python's smtplib,
//! swaks, Postfix's smtp-source) and Dovecot as the directory: relay control, TLS, AUTH,
//! limits, malformed input, and "250 only once the queue has the message".

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use ferrymail_e2e::{
    ALICE, BOB, Dovecot, DovecotOptions, EMBEDDED_STORE, FakeDns, Ferrymail, Postfix, SmtpClient,
    TEMPFAIL_USER, TestCertificates, http_get, logins_directory, mailboxes_directory, require_peer,
};
use ferrymail_rpc::queue::{GrpcQueue, QueueService};

struct Lab {
    _dovecot: Dovecot,
    /// Answers SERVFAIL for the local domain, so that queued messages stay in the queue (MX
    /// delivery fails temporarily) and the tests can count them.
    _dns: FakeDns,
    _certs: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    process: Ferrymail,
    smtp: SocketAddr,
    submissions: SocketAddr,
    lmtp: SocketAddr,
    admin: SocketAddr,
    grpc: SocketAddr,
}

fn lab(extra: &str) -> Lab {
    lab_with("", extra)
}

/// A lab whose `[session.rcpt]` table also holds `rcpt` (TOML allows one such table).
fn lab_with(rcpt: &str, extra: &str) -> Lab {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let dns = FakeDns::start();
    dns.fail("example.org");
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = TestCertificates::generate(certs_dir.path());
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.submissions]
bind = "127.0.0.1:0"
protocol = "smtp"
tls.implicit = true
[server.listener.lmtp]
bind = "127.0.0.1:0"
protocol = "lmtp"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
[certificate.default]
cert = "%{{file:{cert}}}%"
private-key = "%{{file:{key}}}%"
{store}{mailboxes}{logins}[session.rcpt]
directory = "mailboxes"
{rcpt}
[session.auth]
directory = "logins"
{resolver}{extra}
"#,
        cert = certs.cert_pem.display(),
        key = certs.key_pem.display(),
        store = EMBEDDED_STORE,
        mailboxes = mailboxes_directory(&dovecot),
        logins = logins_directory(&dovecot),
        resolver = dns.resolver_config(),
    );
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let submissions = process.address("submissions");
    let lmtp = process.address("lmtp");
    let admin = process.address("admin");
    let grpc = process.address("grpc");
    Lab {
        _dovecot: dovecot,
        _dns: dns,
        ca: certs.ca_pem.clone(),
        cert: certs.cert_pem.clone(),
        key: certs.key_pem.clone(),
        _certs: certs_dir,
        process,
        smtp,
        submissions,
        lmtp,
        admin,
        grpc,
    }
}

/// Runs a Python smtplib script; `{host}`, `{port}` and `{ca}` are filled in. Returns stdout.
fn python(script: &str, address: SocketAddr, ca: &std::path::Path) -> String {
    let script = script
        .replace("{host}", &address.ip().to_string())
        .replace("{port}", &address.port().to_string())
        .replace("{ca}", &ca.display().to_string());
    ferrymail_e2e::python(&script)
}

async fn queued(lab: &Lab) -> u64 {
    let queue = GrpcQueue::connect(&format!("http://{}", lab.grpc)).unwrap();
    queue.stats().await.unwrap().messages
}

#[tokio::test(flavor = "multi_thread")]
async fn smtplib_message_to_a_local_user_is_queued_before_250() {
    let lab = lab("");
    let out = python(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
print(s.mail("sender@remote.test"))
print(s.rcpt("alice@example.org"))
print(s.data(b"Subject: hi\r\n\r\nhello\r\n"))
s.quit()
"#,
        lab.smtp,
        &lab.ca,
    );
    assert!(out.contains("(250, b'2.1.0 OK')"), "{out}");
    assert!(
        out.contains("(250, b'2.1.5 <alice@example.org> OK')"),
        "{out}"
    );
    assert!(out.contains("(250, b'2.0.0 Message queued as "), "{out}");
    assert_eq!(queued(&lab).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_temporarily_failing_recipients() {
    let lab = lab("");
    let mut c = SmtpClient::connect(lab.smtp);
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<s@remote.test>").code, 250);
    let unknown = c.command("RCPT TO:<nosuch@example.org>");
    assert_eq!(
        (unknown.code, unknown.text().starts_with("5.1.1")),
        (550, true),
        "{unknown:?}"
    );
    let temp = c.command(&format!("RCPT TO:<{TEMPFAIL_USER}>"));
    assert_eq!(
        temp.code, 451,
        "a directory temporary failure is 451, never 5xx: {temp:?}"
    );
    assert!(temp.text().starts_with("4.4.3"), "{temp:?}");
    assert_eq!(c.command(&format!("RCPT TO:<{}>", BOB.0)).code, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_open_relay_for_unauthenticated_clients() {
    // Every refusal counts against session.errors.total; allow the whole matrix in one session.
    let lab = lab("[session.errors]\ntotal = 50\n");
    let mut c = SmtpClient::connect(lab.smtp);
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<s@remote.test> SMTPUTF8").code, 250);
    for rcpt in [
        "<victim@other.test>",
        "<VICTIM@OTHER.TEST>",
        "<victim@other.test.>",
        "<victim%other.test@example.org>",
        "<other.test!victim@example.org>",
        "<\"victim@other.test\"@example.org>",
        "<@example.org:victim@other.test>",
        "<victim@exämple.org>",
        "<postmaster>",
        "<postmaster@other.test>",
        "<victim@[192.0.2.1]>",
    ] {
        let reply = c.command(&format!("RCPT TO:{rcpt}"));
        assert!(
            reply.code >= 500,
            "{rcpt} was accepted for relay: {reply:?}"
        );
    }
    // A local domain still works, also with a trailing dot and mixed case.
    assert_eq!(c.command("RCPT TO:<Alice@Example.ORG.>").code, 250);
    let mut process = lab.process;
    let line = process.wait_for("the relay-denied line", |l| {
        l.message().starts_with("relay denied:")
    });
    assert_eq!(
        line.message(),
        "relay denied: client=127.0.0.1 helo=\"client.test\" rcpt=\"victim@other.test\" listener=smtp"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_only_over_tls_then_relay_is_allowed() {
    let lab = lab("");
    let mut c = SmtpClient::connect(lab.smtp);
    let ehlo = c.command("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "no AUTH in clear text: {ehlo:?}"
    );
    assert_eq!(
        c.command("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXBhc3M=")
            .code,
        538
    );
    let out = python(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile="{ca}")
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.starttls(context=ctx)
print(s.login("alice@example.org", "alice-pass"))
print(s.mail("alice@example.org"))
print(s.rcpt("friend@elsewhere.test"))
print(s.data(b"Subject: relayed\r\n\r\nhi\r\n"))
s.quit()
"#,
        lab.smtp,
        &lab.ca,
    );
    assert!(
        out.contains("(235, b'2.7.0 Authentication successful')"),
        "{out}"
    );
    assert!(
        out.contains("(250, b'2.1.5 <friend@elsewhere.test> OK')"),
        "{out}"
    );
    assert!(out.contains("Message queued as"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_logged_for_fail2ban_and_end_the_session() {
    let mut lab = lab("");
    let out = python(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile="{ca}")
s = smtplib.SMTP_SSL("{host}", {port}, timeout=30, context=ctx)
s.ehlo("client.test")
for i in range(3):
    try:
        s.login("alice@example.org", "wrong")
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code)
    except smtplib.SMTPServerDisconnected:
        print("disconnected")
        break
"#,
        lab.submissions,
        &lab.ca,
    );
    // smtplib tries PLAIN, then LOGIN, within one login(): three failures end the session.
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["535", "disconnected"],
        "{out}"
    );
    let line = lab.process.wait_for("the auth failure line", |l| {
        l.message().starts_with("authentication failed:")
    });
    assert_eq!(
        line.message(),
        "authentication failed: client=127.0.0.1 user=\"alice@example.org\" mechanism=PLAIN listener=submissions"
    );
    assert!(
        !lab.process.dump().contains("wrong"),
        "the password never reaches the log"
    );
    let metrics = http_get(lab.admin, "/metrics").unwrap().body;
    assert!(metrics.contains("auth_failures_total 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lmtp_answers_once_per_recipient() {
    let lab = lab("");
    let mut c = SmtpClient::connect(lab.lmtp);
    assert_eq!(c.command("EHLO x").code, 500, "LMTP speaks LHLO only");
    assert_eq!(c.command("LHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<s@remote.test>").code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", BOB.0)).code, 250);
    assert_eq!(c.command("DATA").code, 354);
    let first = c.send_data("Subject: lmtp\r\n\r\nbody");
    let second = c.read_reply();
    assert_eq!(
        (first.code, second.code),
        (250, 250),
        "{first:?} {second:?}"
    );
    assert_eq!(queued(&lab).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn size_and_recipient_limits() {
    let lab = lab_with(
        "max-recipients = 2",
        "[session.data.limits]\nsize = \"64KB\"\n",
    );
    let mut c = SmtpClient::connect(lab.smtp);
    let ehlo = c.command("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 65536"), "{ehlo:?}");
    assert_eq!(c.command("MAIL FROM:<s@remote.test> SIZE=70000").code, 552);
    assert_eq!(c.command("MAIL FROM:<s@remote.test> SIZE=1000").code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", BOB.0)).code, 250);
    assert_eq!(c.command("RCPT TO:<alice+3@example.org>").code, 452);
    assert_eq!(c.command("DATA").code, 354);
    let big = "X".repeat(78);
    let body: String = std::iter::repeat_n(big.as_str(), 1000)
        .collect::<Vec<_>>()
        .join("\r\n");
    let reply = c.send_data(&body);
    assert_eq!(reply.code, 552, "{reply:?}");
    // The session is still in step: a small message goes through.
    assert_eq!(c.command("MAIL FROM:<s@remote.test>").code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: small\r\n\r\nok").code, 250);
    assert_eq!(queued(&lab).await, 1, "the oversize message was not queued");
}

/// Sends raw bytes and reads whatever comes back within a moment's quiet.
fn raw(address: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer and close before reading everything (that is allowed); what
    // it answered is what the test checks.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"221 2.0.0 Bye\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_gets_replies_and_never_a_crash() {
    let lab = lab("");
    let long = format!("NOOP {}\r\n", "A".repeat(10 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("commands out of order", b"RCPT TO:<a@example.org>\r\nDATA\r\nEHLO x\r\nDATA\r\nQUIT\r\n".to_vec(), "503 5.5.1 Need MAIL"),
        // A bare LF is not a line end; accepting it as one is how SMTP smuggling starts.
        ("bare LF line endings", b"EHLO x\nMAIL FROM:<a@b.test>\nQUIT\n".to_vec(), "500 5.5.2 Bare LF in command"),
        ("NUL bytes", b"EHLO x\r\nMAIL FROM:<a\0b@c.test>\r\nQUIT\r\n".to_vec(), "221 2.0.0 Bye"),
        ("a 10 MB line", long.into_bytes(), "500 5.5.2 Line too long"),
        ("unknown commands", b"EHLO x\r\nFOO BAR\r\nQUIT\r\n".to_vec(), "500 5.5.1 Unknown command"),
        (
            "pipelined junk after DATA",
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nJUNK\r\n\x01\x02\r\nQUIT\r\n".to_vec(),
            "250 2.0.0 Message queued",
        ),
    ];
    for (what, bytes, expected) in cases {
        let out = raw(lab.smtp, &bytes);
        assert!(
            out.contains(expected),
            "{what}: expected {expected:?} in\n{out}"
        );
    }
    assert_eq!(
        http_get(lab.admin, "/healthz").unwrap().status,
        200,
        "still serving"
    );
    assert!(
        raw(lab.smtp, b"QUIT\r\n").contains("221"),
        "new sessions still work"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bdat_chunks_build_one_message() {
    let lab = lab("");
    let mut c = SmtpClient::connect(lab.smtp);
    let ehlo = c.command("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "CHUNKING"), "{ehlo:?}");
    assert_eq!(
        ehlo.lines[0], "mx.test",
        "the first EHLO line is the host name alone"
    );
    let release = ehlo
        .lines
        .iter()
        .find(|l| l.starts_with("FUTURERELEASE "))
        .expect("FUTURERELEASE offered");
    let year: u32 = release
        .split(' ')
        .nth(2)
        .and_then(|d| d.get(..4))
        .and_then(|y| y.parse().ok())
        .unwrap_or(0);
    assert!(
        release.starts_with("FUTURERELEASE 604800 ") && year >= 2026,
        "{release}"
    );
    assert_eq!(c.command("MAIL FROM:<s@remote.test>").code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    // The client adds CRLF after each command line, which ends each chunk here.
    assert_eq!(c.command("BDAT 15\r\nSubject: bdat").code, 250);
    let last = c.command("BDAT 6 LAST\r\n\r\nhi");
    assert_eq!(last.code, 250, "{last:?}");
    assert!(last.text().contains("Message queued as"), "{last:?}");
    assert_eq!(queued(&lab).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_source_and_swaks_deliver() {
    let lab = lab("");
    let smtp_source = require_peer("smtp-source");
    // HELO, five messages on one connection, no RSET between them (-d).
    let out = Command::new(smtp_source)
        .args([
            "-m",
            "5",
            "-d",
            "-s",
            "1",
            "-l",
            "2000",
            "-f",
            "sender@remote.test",
            "-t",
            ALICE.0,
        ])
        .arg(format!("{}:{}", lab.smtp.ip(), lab.smtp.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let swaks = require_peer("swaks");
    let out = Command::new(swaks)
        .args([
            "--server",
            &lab.smtp.ip().to_string(),
            "--port",
            &lab.smtp.port().to_string(),
        ])
        .args([
            "--from",
            "sender@remote.test",
            "--to",
            BOB.0,
            "--helo",
            "swaks.test",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("<-  250 2.0.0 Message queued as"), "{text}");
    assert_eq!(queued(&lab).await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_is_served_without_dropping_sessions() {
    let mut lab = lab("");
    // A session in the middle of a transaction when the certificate changes.
    let mut open = SmtpClient::connect(lab.smtp);
    assert_eq!(open.command("EHLO client.test").code, 250);
    assert_eq!(open.command("MAIL FROM:<s@remote.test>").code, 250);
    let served = |lab: &Lab| {
        python(
            "import ssl\nprint(ssl.get_server_certificate(('{host}', {port})))",
            lab.submissions,
            &lab.ca,
        )
    };
    let pem = |text: &str| text.split_whitespace().collect::<String>();
    assert_eq!(
        pem(&served(&lab)),
        pem(&std::fs::read_to_string(&lab.cert).unwrap())
    );
    // What cert-manager does: new files in place of the old ones.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = TestCertificates::generate(fresh_dir.path());
    std::fs::copy(&fresh.key_pem, &lab.key).unwrap();
    std::fs::copy(&fresh.cert_pem, &lab.cert).unwrap();
    lab.process
        .wait_for("the reload", |l| l.message() == "configuration reloaded");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let expected = pem(&std::fs::read_to_string(&lab.cert).unwrap());
    while pem(&served(&lab)) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is never served"
        );
    }
    // The session that was open carries on.
    assert_eq!(open.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(open.command("DATA").code, 354);
    assert_eq!(open.send_data("Subject: still here\r\n\r\nhi").code, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_certificate_is_chosen_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other.test".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("other.pem"), dir.path().join("other.key"));
    std::fs::write(&cert, other.cert.pem()).unwrap();
    std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
    let lab = lab(&format!(
        "[certificate.other]\ncert = \"%{{file:{}}}%\"\nprivate-key = \"%{{file:{}}}%\"\n[server.tls]\ncertificate = \"default\"\n",
        cert.display(),
        key.display()
    ));
    let served = |name: &str| {
        python(
            &format!(
                "import socket, ssl\nctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\ns = ctx.wrap_socket(socket.create_connection(('{{host}}', {{port}})), server_hostname='{name}')\nprint(ssl.DER_cert_to_PEM_cert(s.getpeercert(binary_form=True)))"
            ),
            lab.submissions,
            &lab.ca,
        )
    };
    let pem = |text: &str| text.split_whitespace().collect::<String>();
    assert_eq!(
        pem(&served("other.test")),
        pem(&other.cert.pem()),
        "SNI other.test"
    );
    let default = std::fs::read_to_string(&lab.cert).unwrap();
    assert_eq!(pem(&served("localhost")), pem(&default), "SNI localhost");
    assert_eq!(
        pem(&served("unknown.test")),
        pem(&default),
        "no match: the default"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_rcpt_relay_lets_trusted_networks_relay() {
    let trusted = |network: &str| {
        format!(
            "[directory.corp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = 9\nlookup.trusted = [\"{network}\"]\n"
        )
    };
    let rule = "relay = [ { if = \"remote-ip\", in-list = \"corp/trusted\", then = true }, { else = false } ]";
    // Like Postfix's mynetworks: clients from a trusted network may relay without AUTH.
    let lab = lab_with(rule, &trusted("127.0.0.0/8"));
    let mut c = SmtpClient::connect(lab.smtp);
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<s@inside.test>").code, 250);
    assert_eq!(c.command("RCPT TO:<friend@other.test>").code, 250);
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: relayed\r\n\r\nhi").code, 250);
    // Local recipients are still checked.
    assert_eq!(c.command("MAIL FROM:<s@inside.test>").code, 250);
    assert_eq!(c.command("RCPT TO:<nosuch@example.org>").code, 550);
    drop(lab);

    let lab = lab_with(rule, &trusted("10.0.0.0/8"));
    let mut c = SmtpClient::connect(lab.smtp);
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<s@inside.test>").code, 250);
    assert_eq!(
        c.command("RCPT TO:<friend@other.test>").code,
        554,
        "not from a trusted network"
    );
}

/// A `directory.corp` whose lookup lists are `lists` (`name = [values]` lines); its server is
/// never asked, lists are answered locally.
fn corp_lists(lists: &str) -> String {
    format!(
        "[directory.corp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = 9\n[directory.corp.lookup]\n{lists}\n"
    )
}

/// Connects and reads everything the server sends until it closes the connection.
fn until_closed(address: SocketAddr) -> String {
    let mut s = TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// `smtp_messages_rejected_total{reason="<reason>"}`, 0 when absent.
fn rejected(lab: &Lab, reason: &str) -> u64 {
    let metrics = http_get(lab.admin, "/metrics").unwrap().body;
    let prefix = format!("smtp_messages_rejected_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn session_connect_reject_answers_instead_of_the_greeting_and_closes() {
    let lists = "blocked = [\"192.0.2.0/24\", \"127.0.0.0/8\"]\nbusy-listeners = [\"lmtp\"]";
    let rule = r#"
[session.connect]
reject = [ { if = "listener", in-list = "corp/busy-listeners", then = "450 4.3.2 Come back later" },
           { if = "remote-ip", in-list = "corp/blocked", then = "554 5.7.1 Your address is blocked" },
           { else = false } ]
"#;
    let mut lab = lab(&format!("{}{rule}", corp_lists(lists)));
    // 127.0.0.1 is in the list through its CIDR range 127.0.0.0/8.
    assert_eq!(
        until_closed(lab.smtp),
        "554 5.7.1 Your address is blocked\r\n"
    );
    // A 4xx refuses a connection as 421 (RFC 5321 §3.1); the first matching branch decides.
    assert_eq!(until_closed(lab.lmtp), "421 4.3.2 Come back later\r\n");
    let line = lab.process.wait_for("the rule's log line", |l| {
        l.message() == "refused by session.connect.reject" && l.field("listener") == Some("smtp")
    });
    assert_eq!(line.field("stage"), Some("connect"));
    assert_eq!(line.field("client"), Some("127.0.0.1"));
    assert_eq!(line.field("list"), Some("corp/blocked"));
    assert_eq!(rejected(&lab, "rule"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_ehlo_and_mail_reject_refuse_the_command_and_the_session_goes_on() {
    let lists = "bad-helo = [\"spammer.test\"]\nblocked-domains = [\"spam.test\"]";
    let rules = r#"
[session.ehlo]
reject = [ { if = "helo-domain", in-list = "corp/bad-helo", then = "550 5.7.1 Go away" }, { else = false } ]
[session.mail]
reject = [ { if = "sender-domain", in-list = "corp/blocked-domains", then = "550 5.7.1 Sender domain blocked" },
           { else = false } ]
[session.errors]
total = 4
"#;
    let mut lab = lab(&format!("{}{rules}", corp_lists(lists)));
    let mut c = SmtpClient::connect(lab.smtp);
    assert_eq!(c.greeting.code, 220);
    let helo = c.command("EHLO spammer.test");
    assert_eq!((helo.code, helo.text()), (550, "5.7.1 Go away".into()));
    assert_eq!(c.command("EHLO client.test").code, 250);
    let mail = c.command("MAIL FROM:<someone@Spam.Test>");
    assert_eq!(
        (mail.code, mail.text()),
        (550, "5.7.1 Sender domain blocked".into())
    );
    // The session is in step: another sender gets through and its message is queued.
    assert_eq!(c.command("MAIL FROM:<s@remote.test>").code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: fine\r\n\r\nhi").code, 250);
    assert_eq!(queued(&lab).await, 1);
    // Each refusal counts against session.errors.total (4 here).
    assert_eq!(c.command("MAIL FROM:<a@spam.test>").code, 550);
    assert_eq!(c.command("MAIL FROM:<b@spam.test>").code, 550);
    assert_eq!(c.read_reply().code, 421, "too many errors");
    let line = lab.process.wait_for("the mail rule's log line", |l| {
        l.message() == "refused by session.mail.reject"
    });
    assert_eq!(
        (line.field("stage"), line.field("client")),
        (Some("mail"), Some("127.0.0.1"))
    );
    assert_eq!(rejected(&lab, "rule"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_rcpt_and_data_reject_and_a_list_that_cannot_answer() {
    // A remote whose port nobody listens on: lookups there fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lists = "known = [\"alice@example.org\"]\nno-mail = [\"bob@example.org\"]\nquarantined = [\"held@remote.test\"]";
    let rcpt = r#"reject = [ { if = "rcpt", in-list = "corp/known", then = false },
           { if = "rcpt", in-list = "corp/no-mail", then = "550 5.7.1 This mailbox takes no mail" },
           { if = "rcpt", in-list = "remote/down", then = false },
           { else = false } ]"#;
    let extra = format!(
        "{}[remote.down]\naddress = \"127.0.0.1\"\nport = {closed}\nprotocol = \"lmtp\"\nlookup = true\n[session.data]\nreject = [ {{ if = \"sender\", in-list = \"corp/quarantined\", then = \"451 4.7.1 Try again later\" }}, {{ else = false }} ]\n",
        corp_lists(lists)
    );
    let lab = lab_with(rcpt, &extra);
    let mut c = SmtpClient::connect(lab.smtp);
    assert_eq!(c.command("EHLO client.test").code, 250);
    assert_eq!(c.command("MAIL FROM:<s@remote.test>").code, 250);
    // Bob exists, but the rule refuses him before the directory is asked.
    let bob = c.command(&format!("RCPT TO:<{}>", BOB.0));
    assert_eq!(
        (bob.code, bob.text()),
        (550, "5.7.1 This mailbox takes no mail".into())
    );
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    let unknown = c.command("RCPT TO:<carol@example.org>");
    assert_eq!(
        (unknown.code, unknown.text().starts_with("4.4.3")),
        (451, true),
        "a list that cannot be asked is 451, never 5xx: {unknown:?}"
    );
    assert_eq!(c.command("DATA").code, 354);
    assert_eq!(c.send_data("Subject: to alice\r\n\r\nhi").code, 250);
    // The data rule answers DATA and BDAT before the body.
    assert_eq!(c.command("MAIL FROM:<held@remote.test>").code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    let data = c.command("DATA");
    assert_eq!(
        (data.code, data.text()),
        (451, "4.7.1 Try again later".into())
    );
    assert_eq!(c.command("BDAT 7 LAST\r\nhello").code, 451);
    assert_eq!(
        c.command("RSET").code,
        250,
        "still in step after the refused chunk"
    );
    assert_eq!(queued(&lab).await, 1);
    assert_eq!(rejected(&lab, "rule"), 3);
    assert!(rejected(&lab, "temporary") >= 1);
}

/// Postfix's smtpd as the recipient directory: its relay recipient table knows alice, full
/// and policy; an access map refuses full as a full mailbox and policy as a site policy.
const POSTFIX_RECIPIENTS: &str = "\
relay_domains = example.org
relay_recipient_maps = inline:{ alice@example.org=ok, full@example.org=ok, policy@example.org=ok }
smtpd_recipient_restrictions = check_recipient_access inline:{ { full@example.org = 552 5.2.2 Mailbox full }, { policy@example.org = 550 5.7.1 Not for this client } }, permit_mynetworks, reject_unauth_destination
";

#[tokio::test(flavor = "multi_thread")]
async fn each_refusal_of_the_directory_reaches_the_client_with_its_own_meaning() {
    let nowhere = "127.0.0.1:1".parse().unwrap();
    let postfix = Postfix::start_with_settings(nowhere, POSTFIX_RECIPIENTS);
    let config = format!(
        "[server]\nhostname = \"mx.test\"\n[server.listener.smtp]\nbind = \"127.0.0.1:0\"\n\
         protocol = \"smtp\"\n{EMBEDDED_STORE}[directory.postfix]\ntype = \"smtp\"\n\
         address = \"127.0.0.1\"\nport = {}\nlookup.domains = [\"example.org\"]\n\
         [session.rcpt]\ndirectory = \"postfix\"\n",
        postfix.address().port()
    );
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let out = ferrymail_e2e::python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.ehlo("client.test")
s.mail("sender@remote.test")
for rcpt in ["alice", "nosuch", "full", "policy", "full", "nosuch"]:
    print(rcpt, s.rcpt(rcpt + "@example.org"))
s.quit()
"#,
        port = smtp.port()
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("alice (250, "), "{out}");
    // No such user: the one refusal that is cached, as 550 5.1.1.
    assert!(lines[1].starts_with("nosuch (550, b'5.1.1 "), "{out}");
    // A full mailbox: the server's own code and status, passed on.
    assert!(
        lines[2].starts_with("full (552, b'5.2.2 <full@example.org> Recipient address rejected: "),
        "{out}"
    );
    // A policy refusal of the proxy's own session: temporary, never a 5xx.
    assert!(lines[3].starts_with("policy (451, b'4.4.3 "), "{out}");
    assert!(lines[4].starts_with("full (552, b'5.2.2 "), "{out}");
    assert!(lines[5].starts_with("nosuch (550, b'5.1.1 "), "{out}");
    drop(process);
}
