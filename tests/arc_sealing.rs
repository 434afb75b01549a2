//! ARC sealing end to end: `ferrymail all` receives mail from an unauthenticated client
//! (smtplib) for aliases of its local domain, one expanded to an outside address (forwarded)
//! and one to a local address; it delivers both to Postfix's smtp-sink, the forwarded one
//! sealed with `signature.arc`. The seal is checked by mail-auth and by dkimpy's
//! `arc_verify`, both looking the key up on the fake DNS server; a second pass through
//! ferrymail extends the chain (i=2, cv=pass), and a chain broken on the way is sealed once
//! with cv=fail and never again.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrymail_e2e::{
    EMBEDDED_STORE, FakeDns, Ferrymail, SmtpSink, SmtpSinkOptions, python_with_input, require_peer,
    test_venv_python,
};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// A message from alice@example.org to a list, CRLF line ends.
fn message(subject: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\r\nTo: list@local.test\r\nSubject: {subject}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\nHello list, {subject}.\r\n"
    )
}

/// A fresh 2048-bit RSA key: its PEM text and the DKIM TXT record publishing it.
fn rsa_key() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        STANDARD.encode(key.public_key_raw())
    );
    (key.serialize_pem(), record)
}

/// The author's DKIM signature, as example.org's own server would add it.
fn author_signed(pem: &str, message: &str) -> String {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let signer = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
        .domain("example.org")
        .selector("rsa1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"]);
    format!(
        "{}{message}",
        signer.sign(message.as_bytes()).unwrap().to_header()
    )
}

/// `ferrymail all` for local.test with the aliases of the test, sealing with an RSA key of
/// forwarder.test (selector `arc`) kept in `key_file`; everything goes to `sink`.
fn start(dns: &FakeDns, sink: &SmtpSink, key_file: &tempfile::NamedTempFile) -> Ferrymail {
    start_sealing(dns, sink, key_file, "\"arc\"")
}

/// As [`start`], with `seal` as the value of `auth.arc.seal`.
fn start_sealing(
    dns: &FakeDns,
    sink: &SmtpSink,
    key_file: &tempfile::NamedTempFile,
    seal: &str,
) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.forwarder.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
{store}[session.rcpt]
directory = "corp"
aliases = "corp/aliases"
[directory.corp]
type = "lmtp"
address = "127.0.0.1"
port = 9
lookup.domains = ["local.test"]
lookup.aliases = ["list@local.test = carol@remote.test", "team@local.test = bob@local.test"]
lookup.unsealed = ["example.org"]
[auth.arc]
seal = {seal}
[signature.arc]
private-key = "%{{file:{key}}}%"
domain = "forwarder.test"
selector = "arc"
algorithm = "rsa-sha256"
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
{resolver}
"#,
        store = EMBEDDED_STORE,
        key = key_file.path().display(),
        sink = sink.address().port(),
        resolver = dns.resolver_config(),
    );
    Ferrymail::start("all", &config)
}

/// Sends `message` from alice@example.org to `rcpt` with smtplib, without AUTH; the reply.
fn send(process: &mut Ferrymail, rcpt: &str, message: &str) -> String {
    send_from(process, "alice@example.org", rcpt, message)
}

/// Sends `message` from `sender` to `rcpt` with smtplib, without AUTH; the reply.
fn send_from(process: &mut Ferrymail, sender: &str, rcpt: &str, message: &str) -> String {
    let smtp = process.address("smtp");
    let script = format!(
        r#"
import smtplib, sys
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.example.org")
try:
    s.sendmail({sender:?}, [{rcpt:?}], sys.stdin.buffer.read())
    print("250")
except smtplib.SMTPException as e:
    print(e)
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
    );
    python_with_input(&require_peer("python3"), &script, &[], message.as_bytes())
}

/// dkimpy's verdict on the ARC chain of `message`: `cv` of the chain (`None` for a chain a
/// seal ended with cv=fail), one `i=<instance> cv=<cv>` per set, newest first, and after `|`
/// its reason. Keys are looked up on `dns` with dnspython.
fn dkimpy_arc_verify(dns: &FakeDns, message: &str) -> String {
    let script = r#"
import sys
import dkim
import dns.rdatatype
import dns.resolver

resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = [sys.argv[1]]
resolver.port = int(sys.argv[2])

def lookup(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    try:
        answer = resolver.resolve(name, dns.rdatatype.TXT, lifetime=timeout, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None
    for record in answer.rrset or []:
        return b"".join(record.strings)
    return None

def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)

cv, sets, reason = dkim.arc_verify(sys.stdin.buffer.read(), dnsfunc=lookup)
print(text(cv), " ".join("i=%s cv=%s" % (s["instance"], text(s["cv"])) for s in sets), "|", reason)
"#;
    let address = dns.address();
    python_with_input(
        &test_venv_python("dkim"),
        script,
        &[&address.ip().to_string(), &address.port().to_string()],
        message.as_bytes(),
    )
}

/// A mail-auth resolver asking only `dns`.
fn resolver(dns: &FakeDns) -> MessageAuthenticator {
    ferrymail_dns::authenticator(
        &ferrymail_config::load_str(
            "dns.toml",
            &format!("[server]\nhostname = \"t\"\n{}", dns.resolver_config()),
        )
        .unwrap()
        .resolver,
    )
    .unwrap()
}

/// mail-auth's verdict on the ARC chain of `message`: the result and the number of sets.
async fn mail_auth_arc_verify(dns: &MessageAuthenticator, message: &str) -> (DkimResult, usize) {
    let parsed = AuthenticatedMessage::parse(message.as_bytes()).unwrap();
    let arc = dns.verify_arc(&parsed).await;
    (arc.result().clone(), arc.sets().len())
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

/// The first line of header field `name` in `message`.
fn first_line<'m>(message: &'m str, name: &str) -> &'m str {
    let start = message
        .find(&format!("{name}: "))
        .unwrap_or_else(|| panic!("no {name} in:\n{message}"));
    message[start..].lines().next().unwrap_or_default()
}

/// Publishes example.org (SPF for 127.0.0.1, DKIM `rsa1`, DMARC reject) and the sealing key
/// of forwarder.test; the author's key PEM and the sealing key file.
fn publish(dns: &FakeDns) -> (String, tempfile::NamedTempFile) {
    let (author_pem, author_record) = rsa_key();
    dns.add_txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("rsa1._domainkey.example.org", &author_record);
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=reject");
    let (seal_pem, seal_record) = rsa_key();
    dns.add_txt("arc._domainkey.forwarder.test", &seal_record);
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), seal_pem).unwrap();
    (author_pem, key_file)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_mail_is_sealed_and_both_verifiers_accept_the_seal() {
    let dns = FakeDns::start();
    let (author_pem, key_file) = publish(&dns);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &key_file);
    let resolver = resolver(&dns);

    // list@local.test expands to carol@remote.test: forwarded, so sealed.
    let signed = author_signed(&author_pem, &message("forwarded"));
    assert_eq!(send(&mut process, "list@local.test", &signed), "250");
    let sealed = delivered(&sink, 1, "Subject: forwarded");
    assert!(
        first_line(&sealed, "ARC-Seal")
            .starts_with("ARC-Seal: i=1; a=rsa-sha256; s=arc; d=forwarder.test; cv=none;"),
        "{sealed}"
    );
    let aar = first_line(&sealed, "ARC-Authentication-Results");
    for expected in [
        "i=1; mx.forwarder.test;",
        "spf=pass",
        "dkim=pass header.d=example.org",
        "dmarc=pass",
    ] {
        assert!(aar.contains(expected), "{expected} missing: {aar}");
    }
    assert_eq!(
        mail_auth_arc_verify(&resolver, &sealed).await,
        (DkimResult::Pass, 1)
    );
    let verdict = dkimpy_arc_verify(&dns, &sealed);
    assert_eq!(verdict, "pass i=1 cv=none | success");

    // team@local.test expands to bob@local.test: it stays here, so it is not sealed.
    assert_eq!(
        send(&mut process, "team@local.test", &message("local")),
        "250"
    );
    let local = delivered(&sink, 2, "Subject: local");
    assert!(
        local.contains("Authentication-Results: mx.forwarder.test"),
        "{local}"
    );
    assert!(!local.contains("ARC-"), "{local}");

    // The sealed message forwarded once more: the chain grows to i=2 with cv=pass.
    assert_eq!(send(&mut process, "list@local.test", &sealed), "250");
    tokio::task::block_in_place(|| sink.wait_for_messages(3));
    let twice = sink
        .messages()
        .into_iter()
        .map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n"))
        .find(|m| m.contains("ARC-Seal: i=2"))
        .expect("the message forwarded twice");
    assert!(
        first_line(&twice, "ARC-Seal")
            .starts_with("ARC-Seal: i=2; a=rsa-sha256; s=arc; d=forwarder.test; cv=pass;"),
        "{twice}"
    );
    assert!(
        first_line(&twice, "ARC-Authentication-Results").contains("arc=pass"),
        "{twice}"
    );
    assert_eq!(
        mail_auth_arc_verify(&resolver, &twice).await,
        (DkimResult::Pass, 2)
    );
    let verdict = dkimpy_arc_verify(&dns, &twice);
    assert_eq!(verdict, "pass i=2 cv=pass i=1 cv=none | success");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_broken_on_the_way_is_sealed_with_cv_fail_once_and_never_again() {
    let dns = FakeDns::start();
    let (author_pem, key_file) = publish(&dns);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &key_file);
    let resolver = resolver(&dns);

    let signed = author_signed(&author_pem, &message("altered"));
    assert_eq!(send(&mut process, "list@local.test", &signed), "250");
    let sealed = delivered(&sink, 1, "Subject: altered");
    // A hop after this one changes the body, as a list footer would, without sealing.
    let altered = sealed.replace("Hello list, altered.", "Hello list, altered on the way.");
    assert_eq!(send(&mut process, "list@local.test", &altered), "250");
    tokio::task::block_in_place(|| sink.wait_for_messages(2));
    let failed = sink
        .messages()
        .into_iter()
        .map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n"))
        .find(|m| m.contains("ARC-Seal: i=2"))
        .expect("the altered message, sealed again");
    assert!(
        first_line(&failed, "ARC-Seal")
            .starts_with("ARC-Seal: i=2; a=rsa-sha256; s=arc; d=forwarder.test; cv=fail;"),
        "{failed}"
    );
    let (result, _) = mail_auth_arc_verify(&resolver, &failed).await;
    assert!(matches!(result, DkimResult::Fail(_)), "{result:?}");
    // dkimpy first checks this server's newest message signature (it fails otherwise with
    // "Most recent ARC-Message-Signature did not validate"), then stops at the cv=fail seal.
    let verdict = dkimpy_arc_verify(&dns, &failed);
    assert_eq!(
        verdict,
        "None i=2 cv=fail i=1 cv=none | ARC-Seal[2] reported failure, the chain is terminated"
    );

    // A chain that ends in cv=fail is not extended (RFC 8617 §5.1.1): delivered, unsealed.
    let again = failed.replace("Subject: altered", "Subject: altered again");
    assert_eq!(send(&mut process, "list@local.test", &again), "250");
    let last = delivered(&sink, 3, "Subject: altered again");
    assert!(!last.contains("ARC-Seal: i=3"), "{last}");
    assert_eq!(last.matches("ARC-Seal: ").count(), 2, "{last}");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_mail_larger_than_the_sealing_bound_goes_unsealed_and_says_why() {
    let dns = FakeDns::start();
    let (_, key_file) = publish(&dns);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = start(&dns, &sink, &key_file);

    // 17 MiB of body: past the 16 MiB copy sealing keeps, within the 100 MB size limit.
    let line = format!("{}\r\n", "y".repeat(1022));
    let large = format!("{}{}", message("large"), line.repeat(17 * 1024));
    assert_eq!(send(&mut process, "list@local.test", &large), "250");
    let logged = process.wait_for("the reason the seal is missing", |l| {
        l.message() == "forwarded message larger than the sealing bound: sent without an ARC seal"
    });
    assert_eq!(logged.field("signature"), Some("arc"), "{logged:?}");
    let delivered = delivered(&sink, 1, "Subject: large");
    assert!(
        delivered.contains("Authentication-Results: mx.forwarder.test"),
        "still verified"
    );
    assert!(!delivered.contains("ARC-Seal"), "not sealed");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rule_list_chooses_which_forwarded_mail_is_sealed() {
    let dns = FakeDns::start();
    let (_, key_file) = publish(&dns);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let rule =
        r#"[{ if = "sender-domain", in-list = "corp/unsealed", then = false }, { else = "arc" }]"#;
    let mut process = start_sealing(&dns, &sink, &key_file, rule);

    assert_eq!(
        send(&mut process, "list@local.test", &message("listed")),
        "250"
    );
    let listed = delivered(&sink, 1, "Subject: listed");
    assert!(!listed.contains("ARC-Seal"), "{listed}");

    let other = message("other").replace("alice@example.org", "dave@other.test");
    assert_eq!(
        send_from(&mut process, "dave@other.test", "list@local.test", &other),
        "250"
    );
    let sealed = delivered(&sink, 2, "Subject: other");
    assert!(
        first_line(&sealed, "ARC-Seal")
            .starts_with("ARC-Seal: i=1; a=rsa-sha256; s=arc; d=forwarder.test; cv=none;"),
        "{sealed}"
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
