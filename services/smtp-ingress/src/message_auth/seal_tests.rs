//! ARC sealing against mail-auth's own verification, with the keys published on a local
//! fake DNS server: instance numbers, `cv=`, and the chains RFC 8617 forbids extending.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use ferrymail_config::Secret;
use ferrymail_config::model::certificate::PrivateKey;
use ferrymail_config::model::signature::{
    Canonicalization, CanonicalizationMode, Signature, SignatureAlgorithm,
};
use ferrymail_dns::MessageAuthenticator;
use ferrymail_e2e::FakeDns;
use mail_auth::{AuthenticatedMessage, DkimResult};

use super::Sealers;
use super::seal::Unsealed;
use super::verification_tests::{ed25519_key, resolver};

const MESSAGE: &str = "From: Alice <alice@example.org>\r\nTo: list@example.net\r\nSubject: hello\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello list.\r\n";

/// Results as the ingress writes them: folded one method per line.
const RESULTS: &str =
    "mx.example.net;\r\n\tspf=pass smtp.mailfrom=alice@example.org;\r\n\tdkim=none";

/// A sealer `arc` of `domain` with selector `arc`, its key published on `dns`.
fn sealers(dns: &FakeDns, domain: &str) -> Sealers {
    let (pem, record) = ed25519_key();
    dns.add_txt(&format!("arc._domainkey.{domain}"), &record);
    let mut config = BTreeMap::new();
    config.insert(
        "arc".to_string(),
        Signature {
            private_key: PrivateKey(Secret::new(&pem)),
            domain: domain.into(),
            selector: "arc".into(),
            headers: vec!["From".into(), "To".into(), "Subject".into(), "Date".into()],
            algorithm: SignatureAlgorithm::Ed25519Sha256,
            canonicalization: Canonicalization {
                header: CanonicalizationMode::Relaxed,
                body: CanonicalizationMode::Relaxed,
            },
            expire: None,
        },
    );
    Sealers::new(&config).unwrap()
}

/// Verifies the chain of `raw` and seals it with `sealers`: the sealed message, or why not.
async fn seal(
    dns: &MessageAuthenticator,
    sealers: &Sealers,
    raw: &str,
) -> Result<String, Unsealed> {
    let message = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
    let arc = dns.verify_arc(&message).await;
    let set = sealers
        .named("arc")
        .unwrap()
        .seal(raw.as_bytes(), RESULTS, &arc)?;
    Ok(format!("{set}{raw}"))
}

/// mail-auth's ARC result of `raw`, and the number of sets it found.
async fn verify(dns: &MessageAuthenticator, raw: &str) -> (DkimResult, usize) {
    let message = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
    let arc = dns.verify_arc(&message).await;
    (arc.result().clone(), arc.sets().len())
}

#[tokio::test]
async fn a_first_seal_is_instance_1_with_cv_none_and_verifies() {
    let fake = FakeDns::start();
    let sealers = sealers(&fake, "example.net");
    let dns = resolver(&fake);
    let sealed = seal(&dns, &sealers, MESSAGE).await.unwrap();
    assert!(
        sealed.starts_with("ARC-Seal: i=1; a=ed25519-sha256; s=arc; d=example.net; cv=none;"),
        "{sealed}"
    );
    assert!(sealed.contains("ARC-Message-Signature: i=1; "), "{sealed}");
    assert!(
        sealed.contains("ARC-Authentication-Results: i=1; mx.example.net; spf=pass smtp.mailfrom=alice@example.org; dkim=none\r\n"),
        "the results recorded are those of the server: {sealed}"
    );
    assert_eq!(verify(&dns, &sealed).await, (DkimResult::Pass, 1));
}

#[tokio::test]
async fn a_second_hop_seals_instance_2_with_cv_pass() {
    let fake = FakeDns::start();
    let first = sealers(&fake, "example.net");
    let second = sealers(&fake, "lists.example.com");
    let dns = resolver(&fake);
    let once = seal(&dns, &first, MESSAGE).await.unwrap();
    let twice = seal(&dns, &second, &once).await.unwrap();
    assert!(
        twice.starts_with("ARC-Seal: i=2; a=ed25519-sha256; s=arc; d=lists.example.com; cv=pass;"),
        "{twice}"
    );
    assert_eq!(verify(&dns, &twice).await, (DkimResult::Pass, 2));
}

#[tokio::test]
async fn a_broken_chain_is_sealed_once_with_cv_fail_and_never_again() {
    let fake = FakeDns::start();
    let first = sealers(&fake, "example.net");
    let second = sealers(&fake, "lists.example.com");
    let dns = resolver(&fake);
    let once = seal(&dns, &first, MESSAGE).await.unwrap();
    let altered = once.replace("Hello list.", "Hello list, changed.");
    assert!(matches!(
        verify(&dns, &altered).await.0,
        DkimResult::Neutral(_) | DkimResult::Fail(_)
    ));
    let failed = seal(&dns, &second, &altered).await.unwrap();
    assert!(
        failed.starts_with("ARC-Seal: i=2; a=ed25519-sha256; s=arc; d=lists.example.com; cv=fail;"),
        "{failed}"
    );
    let third = sealers(&fake, "third.example");
    let refused = seal(&dns, &third, &failed).await.unwrap_err();
    assert!(matches!(refused, Unsealed::ChainEnded), "{refused}");
}

#[tokio::test]
async fn arc_fields_that_are_not_a_chain_are_not_sealed_over() {
    let fake = FakeDns::start();
    let sealers = sealers(&fake, "example.net");
    let dns = resolver(&fake);
    // A seal without its signature and results: no set to follow.
    let lone =
        format!("ARC-Seal: i=1; a=rsa-sha256; s=x; d=example.org; cv=none; b=AAAA\r\n{MESSAGE}");
    let refused = seal(&dns, &sealers, &lone).await.unwrap_err();
    assert!(matches!(refused, Unsealed::Malformed), "{refused}");
}

#[tokio::test]
async fn a_chain_of_fifty_sets_is_not_extended() {
    let fake = FakeDns::start();
    let sealers = sealers(&fake, "example.net");
    let dns = resolver(&fake);
    let mut raw = MESSAGE.to_string();
    for _ in 0..50 {
        raw = seal(&dns, &sealers, &raw).await.unwrap();
    }
    assert_eq!(verify(&dns, &raw).await, (DkimResult::Pass, 50));
    let refused = seal(&dns, &sealers, &raw).await.unwrap_err();
    assert!(matches!(refused, Unsealed::TooLong), "{refused}");
}

#[tokio::test]
async fn a_chain_that_cannot_be_verified_for_now_is_not_sealed() {
    let fake = FakeDns::start();
    let first = sealers(&fake, "example.net");
    let second = sealers(&fake, "lists.example.com");
    let dns = resolver(&fake);
    let once = seal(&dns, &first, MESSAGE).await.unwrap();
    fake.fail("arc._domainkey.example.net");
    let refused = seal(&dns, &second, &once).await.unwrap_err();
    assert!(matches!(refused, Unsealed::TemporaryFailure), "{refused}");
}

#[tokio::test]
async fn a_message_without_header_fields_is_not_sealed() {
    let fake = FakeDns::start();
    let sealers = sealers(&fake, "example.net");
    let arc = mail_auth::ArcOutput::default();
    let refused = sealers
        .named("arc")
        .unwrap()
        .seal(b"\r\njust a body\r\n", RESULTS, &arc)
        .unwrap_err();
    assert!(matches!(refused, Unsealed::NoHeader), "{refused}");
}

#[tokio::test]
async fn results_too_long_for_one_line_are_not_sealed() {
    let fake = FakeDns::start();
    let sealers = sealers(&fake, "example.net");
    let results = format!("{RESULTS};\r\n\tdkim=pass header.d={}", "x".repeat(1000));
    let refused = sealers
        .named("arc")
        .unwrap()
        .seal(
            MESSAGE.as_bytes(),
            &results,
            &mail_auth::ArcOutput::default(),
        )
        .unwrap_err();
    assert!(matches!(refused, Unsealed::ResultsTooLong), "{refused}");
}
