//! Message authentication end to end: `ferrymail all` asks a fake DNS server (as
//! `resolver.type = "custom"`), checks SPF, DKIM and DMARC of mail sent with smtplib from
//! 127.0.0.1, records them in `Authentication-Results`, enforces DMARC `p=reject` when
//! strict, answers a DNS failure with 4xx at worst, and signs authenticated submissions.
//! Messages are delivered to Postfix's smtp-sink and read back there.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, FakeDns, Ferrymail, SmtpSink, SmtpSinkOptions,
    logins_directory,
};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{AuthenticatedMessage, DkimResult};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// A message from alice@example.org, CRLF line ends.
fn message(subject: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: {subject}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\nHello Bob, {subject}.\r\n"
    )
}

/// A fresh RSA key: the signer, and the TXT record publishing it.
fn rsa_key() -> (DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let signer = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
        .domain("example.org")
        .selector("rsa1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"]);
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        STANDARD.encode(key.public_key_raw())
    );
    (signer, record)
}

/// SPF allows 127.0.0.1 for example.org, the DKIM key is published, DMARC says reject;
/// forger.test's SPF lists another address; broken.test's name servers fail.
fn publish(dns: &FakeDns, dkim_record: &str) {
    dns.add_txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("rsa1._domainkey.example.org", dkim_record);
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=reject");
    dns.add_txt("forger.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt("client.example.org", "v=spf1 ip4:127.0.0.1 -all");
    for name in [
        "broken.test",
        "_dmarc.broken.test",
        "s._domainkey.broken.test",
    ] {
        dns.fail(name);
    }
}

/// `ferrymail all` relaying everything to `sink`, with `extra` configuration.
fn start(dns: &FakeDns, sink: &SmtpSink, extra: &str) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{store}[session.rcpt]
relay = true
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
{resolver}{extra}
"#,
        store = EMBEDDED_STORE,
        sink = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    Ferrymail::start("all", &config)
}

/// Sends `message` with smtplib (EHLO client.example.org) and returns the final reply:
/// `250 …` or the refusal's code and text. `login` authenticates first.
fn send(
    process: &mut Ferrymail,
    sender: &str,
    message: &str,
    login: Option<(&str, &str)>,
) -> String {
    let smtp = process.address("smtp");
    let login = login
        .map(|(user, password)| format!("s.login({user:?}, {password:?})"))
        .unwrap_or_default();
    let script = format!(
        r#"
import smtplib, sys
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.example.org")
{login}
try:
    s.sendmail({sender:?}, ["bob@remote.test"], sys.stdin.buffer.read())
    print("250")
except smtplib.SMTPSenderRefused as e:
    print(e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The delivered message whose text contains `needle`, with CRLF line ends.
fn delivered(sink: &SmtpSink, count: usize, needle: &str) -> String {
    tokio::task::block_in_place(|| sink.wait_for_messages(count));
    let messages = sink.messages();
    let found = messages
        .iter()
        .find(|m| m.contains(needle))
        .unwrap_or_else(|| panic!("no delivered message contains {needle:?}: {messages:?}"));
    found.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The `Authentication-Results` field of a delivered message, unfolded.
fn results(message: &str) -> String {
    let start = message
        .find("Authentication-Results: ")
        .unwrap_or_else(|| panic!("no Authentication-Results in:\n{message}"));
    let rest = &message[start..];
    let mut end = 0;
    for line in rest.split_inclusive("\r\n") {
        if end > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        end += line.len();
    }
    rest[..end].replace("\r\n", "")
}

#[tokio::test(flavor = "multi_thread")]
async fn relaxed_checks_record_pass_fail_and_temperror_and_deliver() {
    let dns = FakeDns::start();
    let (signer, record) = rsa_key();
    publish(&dns, &record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, "");

    // Signed by example.org, sent from an address its SPF lists.
    let good = message("signed");
    let signed = format!(
        "{}{good}",
        signer.sign(good.as_bytes()).unwrap().to_header()
    );
    assert_eq!(
        send(&mut process, "alice@example.org", &signed, None),
        "250"
    );
    let header = results(&delivered(&sink, 1, "Subject: signed"));
    for expected in [
        "Authentication-Results: mx.test;",
        "spf=pass",
        "smtp.helo=client.example.org",
        "smtp.mailfrom=alice@example.org",
        "dkim=pass header.d=example.org header.s=rsa1",
        "dmarc=pass header.from=example.org policy.dmarc=reject",
    ] {
        assert!(header.contains(expected), "{expected} missing: {header}");
    }

    // From an address forger.test's SPF does not list: recorded, delivered (relaxed). The
    // sender also wrote a passing verdict in this server's name: it is removed (RFC 8601 §5).
    let forged = format!(
        "Authentication-Results: mx.test;\r\n spf=pass smtp.mailfrom=x@forger.test\r\n{}",
        message("forged")
    );
    assert_eq!(send(&mut process, "x@forger.test", &forged, None), "250");
    let forged_delivered = delivered(&sink, 2, "Subject: forged");
    assert_eq!(
        forged_delivered
            .matches("Authentication-Results: mx.test")
            .count(),
        1,
        "only this server's own verdict remains: {forged_delivered}"
    );
    let header = results(&forged_delivered);
    assert!(header.contains("spf=fail"), "{header}");
    assert!(header.contains("smtp.mailfrom=x@forger.test"), "{header}");
    assert!(header.contains("dkim=none"), "{header}");
    assert!(header.contains("dmarc=fail"), "{header}");

    // DNS fails for the sender's domain: temperror recorded, the message accepted.
    let broken = message("broken").replace("alice@example.org", "carol@broken.test");
    assert_eq!(
        send(&mut process, "carol@broken.test", &broken, None),
        "250"
    );
    let header = results(&delivered(&sink, 3, "Subject: broken"));
    assert!(header.contains("spf=temperror"), "{header}");
    assert!(header.contains("dmarc=temperror"), "{header}");
    // Nothing was signed: the client did not authenticate.
    let unsigned = delivered(&sink, 3, "Subject: forged");
    assert!(!unsigned.contains("DKIM-Signature"), "{unsigned}");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_checks_refuse_spf_and_dmarc_failures_and_defer_dns_failures() {
    let dns = FakeDns::start();
    let (signer, record) = rsa_key();
    publish(&dns, &record);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let strict = "[auth.dmarc]\nverify = \"strict\"\n[auth.spf.verify]\nmail-from = [{ if = \"sender-domain\", in-list = \"lists/spf-strict\", then = \"strict\" }, { else = \"relaxed\" }]\n[directory.lists]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = 9\nlookup.spf-strict = [\"forger.test\"]\n";
    let mut process = start(&dns, &sink, strict);

    // SPF strict for forger.test: MAIL FROM is refused.
    let reply = send(&mut process, "x@forger.test", &message("spf"), None);
    assert!(reply.starts_with("550 5.7.23"), "{reply}");

    // DMARC p=reject: an unsigned message with example.org's From from elsewhere is refused.
    let reply = send(
        &mut process,
        "someone@other.test",
        &message("spoofed"),
        None,
    );
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(reply.contains("DMARC policy of example.org"), "{reply}");

    // A DNS failure of the author's domain: try again later, never 5xx.
    let broken = message("broken").replace("alice@example.org", "carol@broken.test");
    let reply = send(&mut process, "carol@other.test", &broken, None);
    assert!(reply.starts_with("451 4.7.1"), "{reply}");

    // A message that passes is still accepted and delivered.
    let good = message("good");
    let signed = format!(
        "{}{good}",
        signer.sign(good.as_bytes()).unwrap().to_header()
    );
    assert_eq!(
        send(&mut process, "alice@example.org", &signed, None),
        "250"
    );
    delivered(&sink, 1, "Subject: good");
    // Nothing refused reached the sink.
    assert_eq!(sink.messages().len(), 1);
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_submissions_are_signed_and_verify() {
    let dns = FakeDns::start();
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    // An Ed25519 signing key for example.org, in a file as operators keep it.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), key.serialize_pem()).unwrap();
    // RFC 8463: the record holds the raw 32-byte public key.
    let raw_public = key.public_key_raw();
    dns.add_txt(
        "ed1._domainkey.example.org",
        &format!("v=DKIM1; k=ed25519; p={}", STANDARD.encode(raw_public)),
    );
    let extra = format!(
        "{logins}[session.auth]\ndirectory = \"logins\"\nallow-plain-text = true\n[signature.ed]\nprivate-key = \"%{{file:{key}}}%\"\ndomain = \"example.org\"\nselector = \"ed1\"\nalgorithm = \"ed25519-sha256\"\n",
        logins = logins_directory(&dovecot),
        key = key_file.path().display(),
    );
    let mut process = start(&dns, &sink, &extra);

    let reply = send(&mut process, ALICE.0, &message("submitted"), Some(ALICE));
    assert_eq!(reply, "250");
    let delivered = delivered(&sink, 1, "Subject: submitted");
    assert!(delivered.contains("DKIM-Signature: "), "{delivered}");
    assert!(
        !delivered.contains("Authentication-Results"),
        "submissions are not verified: {delivered}"
    );
    // The delivered message verifies against the published key.
    let resolver = ferrymail_dns::authenticator(
        &ferrymail_config::load_str(
            "dns.toml",
            &format!("[server]\nhostname = \"t\"\n{}", dns.resolver_config()),
        )
        .unwrap()
        .resolver,
    )
    .unwrap();
    let parsed = AuthenticatedMessage::parse(delivered.as_bytes()).unwrap();
    let outputs = resolver.verify_dkim(&parsed).await;
    assert!(
        outputs.iter().any(|o| o.result() == &DkimResult::Pass
            && o.signature()
                .is_some_and(|s| s.d == "example.org" && s.s == "ed1")),
        "{outputs:?}"
    );

    // The same sender without AUTH (relay allowed) is verified, not signed.
    assert_eq!(
        send(&mut process, ALICE.0, &message("inbound"), None),
        "250"
    );
    let inbound = self::delivered(&sink, 2, "Subject: inbound");
    assert!(!inbound.contains("DKIM-Signature"), "{inbound}");
    assert!(
        inbound.contains("Authentication-Results: mx.test"),
        "{inbound}"
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
