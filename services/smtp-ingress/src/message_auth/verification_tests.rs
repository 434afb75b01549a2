//! Verification, strict refusals, the results header and signing, against mail-auth with
//! records published on a local fake DNS server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferrymail_config::Secret;
use ferrymail_config::model::certificate::PrivateKey;
use ferrymail_config::model::message_auth::VerifyMode;
use ferrymail_config::model::resolver::{NameServer, Resolver, ResolverType};
use ferrymail_config::model::signature::{
    Canonicalization, CanonicalizationMode, Signature, SignatureAlgorithm,
};
use ferrymail_dns::MessageAuthenticator;
use ferrymail_e2e::FakeDns;
use ferrymail_rpc::queue::MAX_PREPEND;
use mail_auth::AuthenticatedMessage;
use mail_auth::common::crypto::Ed25519Key;

use super::results_header::{Report, TOO_LARGE, authentication_results};
use super::verify::{self, Modes, Outcome};
use super::{HashedMessage, MAX_COPY, Signers};

const CLIENT: &str = "127.0.0.1";
const MESSAGE: &str = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob.\r\n";

fn client() -> IpAddr {
    CLIENT.parse().unwrap()
}

/// A resolver asking only `dns`.
pub(super) fn resolver(dns: &FakeDns) -> MessageAuthenticator {
    ferrymail_dns::authenticator(&Resolver {
        kind: ResolverType::Custom,
        custom: vec![NameServer::parse(&format!("udp://{}", dns.address())).unwrap()],
        concurrency: 1,
        timeout: std::time::Duration::from_secs(2),
        attempts: 1,
        try_tcp_on_error: true,
        preserve_intermediates: true,
    })
    .unwrap()
}

/// A generated Ed25519 key as PEM, and its DKIM TXT record.
pub(super) fn ed25519_key() -> (String, String) {
    let der = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&der).unwrap().public_key();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(&der)
    );
    let record = format!("v=DKIM1; k=ed25519; p={}", STANDARD.encode(public));
    (pem, record)
}

fn signers(pem: &str) -> Signers {
    let mut config = BTreeMap::new();
    config.insert(
        "ed".to_string(),
        Signature {
            private_key: PrivateKey(Secret::new(pem)),
            domain: "example.org".into(),
            selector: "s1".into(),
            headers: vec!["From".into(), "To".into(), "Subject".into()],
            algorithm: SignatureAlgorithm::Ed25519Sha256,
            canonicalization: Canonicalization {
                header: CanonicalizationMode::Relaxed,
                body: CanonicalizationMode::Relaxed,
            },
            expire: None,
        },
    );
    Signers::new(&config).unwrap()
}

/// The example.org domain: SPF allows 127.0.0.1, DKIM key `s1`, DMARC `p=reject`.
fn publish_example_org(dns: &FakeDns) -> Signers {
    let (pem, record) = ed25519_key();
    dns.add_txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("s1._domainkey.example.org", &record);
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=reject");
    signers(&pem)
}

fn signed(signers: &Signers, message: &str) -> String {
    let header = signers.named(&["ed".to_string()])[0]
        .sign(message.as_bytes())
        .unwrap();
    format!("{header}{message}")
}

const ALL: Modes = Modes {
    dkim: VerifyMode::Relaxed,
    arc: VerifyMode::Relaxed,
    dmarc: VerifyMode::Relaxed,
};
const STRICT: Modes = Modes {
    dkim: VerifyMode::Strict,
    arc: VerifyMode::Strict,
    dmarc: VerifyMode::Strict,
};

/// Verifies `raw` as sent by 127.0.0.1 with MAIL FROM `sender`; the header and, under
/// `strict`, the refusal's first line.
async fn check(dns: &FakeDns, raw: &str, sender: &str, modes: Modes) -> (String, Option<String>) {
    let resolver = resolver(dns);
    let spf =
        verify::spf_mail_from(&resolver, client(), "mail.example.org", "mx.test", sender).await;
    // As a session keeps it: the header section, and the body hashed as it streams in.
    let mut hashed = HashedMessage::new(true);
    for piece in raw.as_bytes().chunks(7) {
        hashed.push(piece);
    }
    hashed.finish();
    let message = hashed.authenticated().unwrap();
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let outcome = verify::verify_message(&resolver, &message, modes, &spf, domain).await;
    let header = authentication_results(&Report {
        hostname: "mx.test",
        client_ip: client(),
        helo: "mail.example.org",
        sender,
        spf_helo: None,
        spf_mail_from: Some(&spf),
        modes,
        outcome: Some(&outcome),
        header_from: message.from(),
    });
    let strict = Modes { ..STRICT };
    let refusal = verify::message_refusal(strict, &outcome).map(|r| r.0);
    (header, refusal)
}

#[tokio::test]
async fn a_signed_message_from_an_allowed_address_passes_everything() {
    let dns = FakeDns::start();
    let signers = publish_example_org(&dns);
    let raw = signed(&signers, MESSAGE);
    let (header, refusal) = check(&dns, &raw, "alice@example.org", ALL).await;
    assert!(
        header.starts_with("Authentication-Results: mx.test;\r\n\t"),
        "{header}"
    );
    for expected in [
        "spf=pass",
        "smtp.mailfrom=alice@example.org",
        "dkim=pass header.d=example.org header.s=s1",
        "arc=none",
        "dmarc=pass header.from=example.org policy.dmarc=reject",
    ] {
        assert!(header.contains(expected), "{expected} missing:\n{header}");
    }
    assert!(header.ends_with("\r\n") && !header.ends_with("\r\n\r\n"));
    assert_eq!(refusal, None);
}

#[tokio::test]
async fn a_message_larger_than_any_copy_is_verified_whole() {
    let dns = FakeDns::start();
    let signers = publish_example_org(&dns);
    let line = format!("{}\r\n", "z".repeat(998));
    let large = format!("{MESSAGE}{}", line.repeat(MAX_COPY / line.len() + 1));
    let raw = signed(&signers, &large);
    assert!(raw.len() > MAX_COPY);
    let (header, refusal) = check(&dns, &raw, "alice@example.org", STRICT).await;
    assert!(header.contains("dkim=pass"), "{header}");
    assert!(header.contains("dmarc=pass"), "{header}");
    assert_eq!(refusal, None);
    // One byte changed at the very end breaks the signature.
    let altered = format!("{}y\r\n", raw.trim_end_matches("\r\n"));
    let (header, refusal) = check(&dns, &altered, "alice@example.org", STRICT).await;
    assert!(
        header.contains("dkim=neutral") || header.contains("dkim=fail"),
        "{header}"
    );
    assert!(refusal.is_some());
}

#[tokio::test]
async fn a_forged_message_fails_and_strict_dmarc_rejects_it() {
    let dns = FakeDns::start();
    let signers = publish_example_org(&dns);
    // Signed, then altered on the way; and sent from an address SPF does not list.
    let raw = signed(&signers, MESSAGE).replace("Subject: hello", "Subject: pay this invoice");
    dns.add_txt("forger.test", "v=spf1 ip4:192.0.2.1 -all");
    let (header, refusal) = check(&dns, &raw, "x@forger.test", ALL).await;
    assert!(header.contains("spf=fail"), "{header}");
    assert!(header.contains("dkim=fail"), "{header}");
    assert!(header.contains("dmarc=fail"), "{header}");
    let refusal = refusal.unwrap();
    assert!(refusal.starts_with("550 5.7.1 "), "{refusal}");
    assert!(refusal.contains("DMARC policy of example.org"), "{refusal}");
}

#[tokio::test]
async fn dmarc_quarantine_is_recorded_and_never_refused() {
    let dns = FakeDns::start();
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=quarantine");
    let (header, refusal) = check(&dns, MESSAGE, "x@forger.test", ALL).await;
    assert!(header.contains("dmarc=fail"), "{header}");
    assert!(header.contains("policy.dmarc=quarantine"), "{header}");
    // Strict DKIM still refuses an unsigned message; DMARC itself does not.
    assert!(refusal.unwrap().starts_with("550 5.7.20 "));
}

#[tokio::test]
async fn a_dns_failure_is_temperror_and_never_a_5xx() {
    let dns = FakeDns::start();
    let signers = publish_example_org(&dns);
    let raw = signed(&signers, MESSAGE);
    // Every name of the domain fails from now on.
    for name in [
        "example.org",
        "s1._domainkey.example.org",
        "_dmarc.example.org",
    ] {
        dns.fail(name);
    }
    let (header, refusal) = check(&dns, &raw, "alice@example.org", ALL).await;
    assert!(header.contains("spf=temperror"), "{header}");
    assert!(header.contains("dkim=temperror"), "{header}");
    assert!(header.contains("dmarc=temperror"), "{header}");
    let refusal = refusal.unwrap();
    assert!(refusal.starts_with("451 4.7."), "{refusal}");
    let resolver = resolver(&dns);
    let spf = verify::spf_mail_from(&resolver, client(), "h", "mx.test", "a@example.org").await;
    let spf_refusal = verify::spf_refusal(VerifyMode::Strict, &spf).unwrap().0;
    assert!(spf_refusal.starts_with("451 4.7.24 "), "{spf_refusal}");
    assert!(verify::spf_refusal(VerifyMode::Relaxed, &spf).is_none());
}

#[tokio::test]
async fn spf_of_the_helo_name_and_of_a_sender_without_record() {
    let dns = FakeDns::start();
    dns.add_txt("mail.example.org", "v=spf1 ip4:192.0.2.7 -all");
    let resolver = resolver(&dns);
    let helo = verify::spf_helo(&resolver, client(), "mail.example.org", "mx.test")
        .await
        .unwrap();
    assert_eq!(helo.result(), mail_auth::SpfResult::Fail);
    let refusal = verify::spf_refusal(VerifyMode::Strict, &helo).unwrap().0;
    assert!(refusal.starts_with("550 5.7.23 "), "{refusal}");
    // An address literal has no SPF record to ask for.
    assert!(
        verify::spf_helo(&resolver, client(), "[127.0.0.1]", "mx.test")
            .await
            .is_none()
    );
    let none = verify::spf_mail_from(&resolver, client(), "h", "mx.test", "a@nowhere.test").await;
    assert_eq!(none.result(), mail_auth::SpfResult::None);
    assert!(verify::spf_refusal(VerifyMode::Strict, &none).is_none());
}

#[tokio::test]
async fn broken_signatures_and_huge_header_counts_get_results_not_panics() {
    let dns = FakeDns::start();
    let mut raw = String::new();
    for i in 0..5000 {
        raw.push_str(&format!(
            "DKIM-Signature: v=1; a=rsa-sha256; d=x{i}.test; s=\r\n"
        ));
    }
    raw.push_str("DKIM-Signature: ;;;===\r\nDKIM-Signature: v=1; b=!!!; bh=@@@\r\n");
    raw.push_str(MESSAGE);
    let mut message = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
    message.dkim_headers.truncate(10);
    message.errors.truncate(10);
    let resolver = resolver(&dns);
    let spf = mail_auth::SpfOutput::default();
    let outcome = verify::verify_message(&resolver, &message, ALL, &spf, "example.org").await;
    assert!(outcome.dkim.len() <= 20);
    let header = authentication_results(&Report {
        hostname: "mx.test",
        client_ip: client(),
        helo: "h",
        sender: "",
        spf_helo: None,
        spf_mail_from: None,
        modes: ALL,
        outcome: Some(&outcome),
        header_from: message.from(),
    });
    assert!(header.contains("\tdkim="), "{header}");
    assert!(header.len() < MAX_PREPEND, "{} bytes", header.len());
}

#[test]
fn a_message_too_large_to_verify_says_so() {
    let header = authentication_results(&Report {
        hostname: "mx.test",
        client_ip: client(),
        helo: "h.test",
        sender: "a@b.test",
        spf_helo: None,
        spf_mail_from: None,
        modes: Modes {
            arc: VerifyMode::Disable,
            ..ALL
        },
        outcome: None,
        header_from: "",
    });
    assert_eq!(
        header,
        format!(
            "Authentication-Results: mx.test;\r\n\tdkim=neutral reason=\"{TOO_LARGE}\";\r\n\tdmarc=none reason=\"{TOO_LARGE}\"\r\n"
        )
    );
}

#[test]
fn nothing_checked_is_none() {
    let disabled = Modes {
        dkim: VerifyMode::Disable,
        arc: VerifyMode::Disable,
        dmarc: VerifyMode::Disable,
    };
    let outcome = Outcome {
        dkim: Vec::new(),
        arc: None,
        dmarc: None,
    };
    let header = authentication_results(&Report {
        hostname: "mx.test",
        client_ip: client(),
        helo: "h.test",
        sender: "",
        spf_helo: None,
        spf_mail_from: None,
        modes: disabled,
        outcome: Some(&outcome),
        header_from: "",
    });
    assert_eq!(header, "Authentication-Results: mx.test; none\r\n");
}

#[tokio::test]
async fn an_unsigned_message_is_dkim_none_and_strict_dkim_refuses_it() {
    let dns = FakeDns::start();
    let (header, refusal) = check(&dns, MESSAGE, "alice@example.org", ALL).await;
    assert!(header.contains("dkim=none"), "{header}");
    // The DKIM result comes before ARC's and DMARC's.
    assert!(header.find("dkim=none") < header.find("arc="), "{header}");
    assert!(refusal.unwrap().starts_with("550 5.7.20 "));
}

#[test]
fn a_key_that_cannot_sign_is_refused_at_start() {
    let mut config = BTreeMap::new();
    let (pem, _) = ed25519_key();
    config.insert(
        "bad".to_string(),
        Signature {
            private_key: PrivateKey(Secret::new(pem)),
            domain: "example.org".into(),
            selector: "s1".into(),
            headers: vec!["From".into()],
            algorithm: SignatureAlgorithm::RsaSha256,
            canonicalization: Canonicalization {
                header: CanonicalizationMode::Relaxed,
                body: CanonicalizationMode::Simple,
            },
            expire: None,
        },
    );
    let error = Signers::new(&config).err().unwrap().to_string();
    assert!(
        error.contains("signature.bad.private-key cannot sign"),
        "{error}"
    );
}
