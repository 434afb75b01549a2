//! The milter client against real milters started by the test: rspamd's proxy worker in
//! milter mode and OpenDKIM signing, both from Debian.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::model::milter::Milter;
use ferrymail_config::model::resolver::{NameServer, Resolver, ResolverType};
use ferrymail_config::model::stage_rules::Stage;
use ferrymail_e2e::{FakeDns, OpenDkim, Rspamd, TlsTunnel};
use mail_auth::{AuthenticatedMessage, DkimResult};

use super::session::MilterSession;
use crate::filter::{
    Action, Filter, FilterRequest, Modification, SessionFacts, TransactionFacts, Verdict,
};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn config(address: std::net::SocketAddr, stages: &[Stage]) -> Arc<Milter> {
    Arc::new(Milter {
        id: "real".into(),
        hostname: address.ip().to_string(),
        port: address.port(),
        stages: stages.to_vec(),
        tls: false,
        allow_invalid_certs: false,
        timeout_connect: Duration::from_secs(30),
        timeout_command: Duration::from_secs(30),
        timeout_data: Duration::from_secs(60),
        tempfail_on_error: true,
        max_response_size: 52_428_800,
        version: 6,
        actions: 0xff,
        protocol: 0x42,
    })
}

fn session() -> SessionFacts {
    SessionFacts {
        client: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
        client_name: Some("localhost".into()),
        hostname: "mx.example.org".into(),
        listener: "smtp".into(),
        lmtp: false,
        helo: Some("client.example.org".into()),
        tls: None,
        authenticated_as: None,
        auth_mechanism: None,
    }
}

fn transaction() -> TransactionFacts {
    TransactionFacts {
        sender: "alice@example.org".into(),
        sender_params: Vec::new(),
        recipients: vec!["bob@example.net".into()],
        queue_id: Some("00f1e2d3c4b5a697".into()),
    }
}

fn message(body: &str) -> String {
    format!(
        "Received: from client.example.org (localhost [127.0.0.1])\r\n\tby mx.example.org with ESMTP id 00f1e2d3c4b5a697\r\n\
         From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: lunch\r\n\
         Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <lunch-1@example.org>\r\n\r\n{body}\r\n"
    )
}

/// Asks every stage in turn, as a session does, and returns the verdict at DATA.
async fn through_every_stage(filter: &mut MilterSession, raw: &str) -> Verdict {
    let session = session();
    let transaction = transaction();
    let mut ask = TransactionFacts {
        recipients: Vec::new(),
        ..transaction.clone()
    };
    for stage in [Stage::Connect, Stage::Ehlo, Stage::Mail, Stage::Rcpt] {
        if !filter.wants(stage) {
            continue;
        }
        let request = FilterRequest {
            stage,
            session: &session,
            transaction: matches!(stage, Stage::Mail | Stage::Rcpt).then_some(&ask),
            recipient: (stage == Stage::Rcpt).then_some(("bob@example.net", &[][..])),
            message: None,
        };
        let verdict = filter.check(&request).await;
        assert!(
            matches!(verdict.action, Action::Continue),
            "{stage}: {verdict:?}"
        );
    }
    ask.recipients = transaction.recipients.clone();
    let request = FilterRequest {
        stage: Stage::Data,
        session: &session,
        transaction: Some(&ask),
        recipient: None,
        message: Some(raw.as_bytes()),
    };
    filter.check(&request).await
}

#[tokio::test]
async fn rspamd_rejects_gtube_and_adds_headers_to_a_clean_message() {
    let rspamd = Rspamd::start();
    let every = [
        Stage::Connect,
        Stage::Ehlo,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
    ];
    let mut filter = MilterSession::new(config(rspamd.address(), &every));
    let clean = through_every_stage(&mut filter, &message("Shall we have lunch on Friday?")).await;
    assert!(
        matches!(clean.action, Action::Continue | Action::Accept),
        "{clean:?}"
    );
    let added: Vec<&str> = clean
        .modifications
        .iter()
        .filter_map(|m| match m {
            Modification::AddHeader { name, .. } | Modification::InsertHeader { name, .. } => {
                Some(name.as_str())
            }
            Modification::ChangeHeader {
                name,
                value: Some(_),
                ..
            } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        added
            .iter()
            .any(|n| n.eq_ignore_ascii_case("X-Spamd-Result")),
        "{:?}",
        clean.modifications
    );
    // A second message on the same connection (the default stages: data only).
    let mut filter = MilterSession::new(config(rspamd.address(), &[Stage::Data]));
    let spam = through_every_stage(&mut filter, &message(GTUBE)).await;
    match &spam.action {
        Action::Reject(reply) => assert!(reply.0.starts_with("554 5.7.1"), "{reply:?}"),
        other => panic!("GTUBE was not rejected: {other:?}"),
    }
    assert!(spam.modifications.is_empty());
    filter.close().await;
}

/// `raw` with the header modifications of `verdict` applied (the session's message editing
/// is tested on its own; here only header additions are expected).
fn with_added_headers(raw: &str, verdict: &Verdict) -> String {
    let (header, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut fields: Vec<String> = Vec::new();
    for line in header.split("\r\n") {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push_str("\r\n");
                last.push_str(line);
            }
            _ => fields.push(line.to_owned()),
        }
    }
    for m in &verdict.modifications {
        match m {
            Modification::InsertHeader { index, name, value } => {
                fields.insert((*index).min(fields.len()), format!("{name}: {value}"));
            }
            Modification::AddHeader { name, value } => fields.push(format!("{name}: {value}")),
            other => panic!("unexpected modification {other:?}"),
        }
    }
    format!("{}\r\n\r\n{body}", fields.join("\r\n"))
}

#[tokio::test]
async fn opendkim_signs_and_the_signature_verifies() {
    let opendkim = OpenDkim::start("example.org", "mx2026");
    let mut filter = MilterSession::new(config(opendkim.address(), &[Stage::Data]));
    let raw = message("Shall we have lunch on Friday?");
    let verdict = through_every_stage(&mut filter, &raw).await;
    assert!(
        matches!(verdict.action, Action::Continue | Action::Accept),
        "{verdict:?}"
    );
    let signed = with_added_headers(&raw, &verdict);
    assert!(signed.contains("DKIM-Signature: v=1;"), "{signed}");

    let dns = FakeDns::start();
    dns.add_txt(
        &format!("{}._domainkey.{}", opendkim.selector, opendkim.domain),
        &opendkim.dns_record,
    );
    let resolver = ferrymail_dns::authenticator(&Resolver {
        kind: ResolverType::Custom,
        custom: vec![NameServer::parse(&format!("udp://{}", dns.address())).unwrap()],
        concurrency: 1,
        timeout: Duration::from_secs(2),
        attempts: 1,
        try_tcp_on_error: true,
        preserve_intermediates: true,
    })
    .unwrap();
    let parsed = AuthenticatedMessage::parse(signed.as_bytes()).unwrap();
    let results = resolver.verify_dkim(&parsed).await;
    assert!(
        results.iter().any(|r| r.result() == &DkimResult::Pass),
        "{results:?}\n{signed}"
    );
    filter.close().await;
}

#[tokio::test]
async fn opendkim_behind_tls_signs_and_an_untrusted_certificate_defers() {
    let opendkim = OpenDkim::start("example.org", "tls2026");
    let tunnel = TlsTunnel::start(opendkim.address());
    let raw = message("Over TLS.");
    // The tunnel's CA is not trusted: allowed only with allow-invalid-certs.
    let mut trusting = (*config(tunnel.address(), &[Stage::Data])).clone();
    (trusting.tls, trusting.allow_invalid_certs) = (true, true);
    let mut filter = MilterSession::new(Arc::new(trusting.clone()));
    let verdict = through_every_stage(&mut filter, &raw).await;
    assert!(
        matches!(verdict.action, Action::Continue | Action::Accept),
        "{verdict:?}"
    );
    assert!(
        with_added_headers(&raw, &verdict).contains("DKIM-Signature: v=1;"),
        "{verdict:?}"
    );
    filter.close().await;

    let verifying = Milter {
        allow_invalid_certs: false,
        ..trusting
    };
    let verdict = through_every_stage(&mut MilterSession::new(Arc::new(verifying)), &raw).await;
    assert!(
        matches!(&verdict.action, Action::TempFail(r) if r.0.starts_with("451 4.3.0")),
        "{verdict:?}"
    );
}
