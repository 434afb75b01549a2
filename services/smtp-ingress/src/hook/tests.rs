//! The request written at each stage, every kind of unusable answer, the Basic credentials,
//! and the whole path through HTTP and HTTPS against the test hook server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::model::hook::Hook;
use ferrymail_config::model::stage_rules::Stage;
use ferrymail_config::value::Secret;
use ferrymail_e2e::{HookAnswer, HookServer, TestCertificates};
use ferrymail_tls::{HttpEndpoint, TlsSettings};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};

use super::client::{HookClient, build_request};
use super::filter::MtaHook;
use super::request::HookRequest;
use super::response::{ResponseError, parse};
use crate::filter::{Action, Filter, FilterRequest, Modification, SessionFacts, TransactionFacts};

fn session() -> SessionFacts {
    SessionFacts {
        client: "192.0.2.7:40001".parse().unwrap(),
        local: "198.51.100.1:25".parse().unwrap(),
        client_name: Some("mail.client.test".into()),
        hostname: "mx.test".into(),
        listener: "smtp".into(),
        lmtp: false,
        helo: None,
        tls: None,
        authenticated_as: None,
        auth_mechanism: None,
    }
}

fn json_of(request: &FilterRequest<'_>) -> Value {
    serde_json::to_value(HookRequest::new(request, 2)).unwrap()
}

const MESSAGE: &[u8] =
    b"Received: from client.test\r\n\tby mx.test; Mon, 7 Dec 2026 10:00:00 +0000\r\n\
Subject: hello\r\nFrom: <a@client.test>\r\n\r\nline one\r\nline two\r\n";

#[test]
fn the_connect_request_has_the_context_only() {
    let facts = session();
    let request = FilterRequest {
        stage: Stage::Connect,
        session: &facts,
        transaction: None,
        recipient: None,
        message: None,
    };
    let body = json_of(&request);
    assert_eq!(
        body,
        json!({
            "context": {
                "stage": "connect",
                "client": {"ip": "192.0.2.7", "port": 40001, "ptr": "mail.client.test",
                           "helo": null, "activeConnections": 2},
                "server": {"name": "mx.test", "port": 25, "ip": "198.51.100.1"},
                "protocol": {"version": 1}
            }
        })
    );
}

#[test]
fn the_ehlo_request_names_the_helo() {
    let mut facts = session();
    facts.helo = Some("client.test".into());
    let request = FilterRequest {
        stage: Stage::Ehlo,
        session: &facts,
        transaction: None,
        recipient: None,
        message: None,
    };
    let body = json_of(&request);
    assert_eq!(body["context"]["stage"], "ehlo");
    assert_eq!(body["context"]["client"]["helo"], "client.test");
    assert!(body.get("envelope").is_none());
}

#[test]
fn the_mail_and_rcpt_requests_carry_the_envelope_with_parameters() {
    let mut facts = session();
    facts.authenticated_as = Some("alice".into());
    facts.auth_mechanism = Some("PLAIN".into());
    facts.tls = Some(("TLSv1_3".into(), "TLS13_AES_256_GCM_SHA384".into()));
    let transaction = TransactionFacts {
        sender: "alice@client.test".into(),
        sender_params: vec!["SIZE=1000".into(), "SMTPUTF8".into()],
        recipients: vec!["first@mx.test".into()],
        queue_id: None,
    };
    let mail = FilterRequest {
        stage: Stage::Mail,
        session: &facts,
        transaction: Some(&transaction),
        recipient: None,
        message: None,
    };
    let body = json_of(&mail);
    assert_eq!(body["context"]["stage"], "mail");
    assert_eq!(
        body["context"]["sasl"],
        json!({"login": "alice", "method": "PLAIN"})
    );
    assert_eq!(
        body["context"]["tls"],
        json!({"version": "TLSv1_3", "cipher": "TLS13_AES_256_GCM_SHA384"})
    );
    assert_eq!(
        body["envelope"]["from"],
        json!({"address": "alice@client.test", "parameters": {"SIZE": "1000", "SMTPUTF8": ""}})
    );
    let params = vec!["NOTIFY=NEVER".to_owned()];
    let rcpt = FilterRequest {
        stage: Stage::Rcpt,
        recipient: Some(("second@mx.test", &params)),
        ..mail
    };
    let body = json_of(&rcpt);
    assert_eq!(body["context"]["stage"], "rcpt");
    assert_eq!(
        body["envelope"]["to"],
        json!([{"address": "first@mx.test"},
               {"address": "second@mx.test", "parameters": {"NOTIFY": "NEVER"}}])
    );
    assert!(body.get("message").is_none());
}

#[test]
fn the_data_request_carries_the_message_and_queue_id() {
    let facts = session();
    let transaction = TransactionFacts {
        sender: String::new(),
        sender_params: Vec::new(),
        recipients: vec!["first@mx.test".into()],
        queue_id: Some("18c4f3a2b".into()),
    };
    let request = FilterRequest {
        stage: Stage::Data,
        session: &facts,
        transaction: Some(&transaction),
        recipient: None,
        message: Some(MESSAGE),
    };
    let body = json_of(&request);
    assert_eq!(body["context"]["stage"], "data");
    assert_eq!(body["context"]["queue"], json!({"id": "18c4f3a2b"}));
    assert_eq!(body["envelope"]["from"], json!({"address": ""}));
    assert_eq!(
        body["message"],
        json!({
            "headers": [
                ["Received", "from client.test\r\n\tby mx.test; Mon, 7 Dec 2026 10:00:00 +0000"],
                ["Subject", "hello"],
                ["From", "<a@client.test>"]
            ],
            "contents": "line one\r\nline two\r\n",
            "size": MESSAGE.len()
        })
    );
}

#[test]
fn a_full_answer_becomes_a_verdict() {
    let body = br#"{"action": "accept", "modifications": [
        {"type": "changeFrom", "value": "new@Example.ORG", "parameters": {"RET": "HDRS"}},
        {"type": "addRecipient", "value": "<added@example.org>"},
        {"type": "deleteRecipient", "value": "gone@example.org"},
        {"type": "addHeader", "name": "X-Scanned", "value": "yes"},
        {"type": "insertHeader", "index": 0, "name": "X-First", "value": "1"},
        {"type": "changeHeader", "index": 1, "name": "Subject", "value": "[ok] hello"},
        {"type": "changeHeader", "index": 2, "name": "X-Old", "value": ""},
        {"type": "deleteHeader", "index": 1, "name": "X-Spam"},
        {"type": "replaceContents", "value": "new body\nsecond line\n"}
    ]}"#;
    let verdict = parse(body, Stage::Data, "hook.scan").unwrap();
    assert!(matches!(verdict.action, Action::Continue));
    assert_eq!(
        verdict.modifications,
        vec![
            Modification::ChangeSender {
                address: "new@example.org".into()
            },
            Modification::AddRecipient {
                address: "added@example.org".into()
            },
            Modification::DeleteRecipient {
                address: "gone@example.org".into()
            },
            Modification::AddHeader {
                name: "X-Scanned".into(),
                value: "yes".into()
            },
            Modification::InsertHeader {
                index: 0,
                name: "X-First".into(),
                value: "1".into()
            },
            Modification::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: Some("[ok] hello".into())
            },
            Modification::ChangeHeader {
                name: "X-Old".into(),
                index: 2,
                value: None
            },
            Modification::ChangeHeader {
                name: "X-Spam".into(),
                index: 1,
                value: None
            },
            Modification::ReplaceBody(b"new body\r\nsecond line\r\n".to_vec()),
        ]
    );
}

#[test]
fn actions_and_replies() {
    let reject = br#"{"action":"reject","response":{"status":554,"enhancedStatus":"5.7.1","message":"Spam"}}"#;
    match parse(reject, Stage::Rcpt, "hook.h").unwrap().action {
        Action::Reject(reply) => assert_eq!(reply.0, "554 5.7.1 Spam\r\n"),
        other => panic!("{other:?}"),
    }
    let temp = br#"{"action":"reject","response":{"status":451,"message":"Later"}}"#;
    match parse(temp, Stage::Mail, "hook.h").unwrap().action {
        Action::TempFail(reply) => assert_eq!(reply.0, "451 4.7.1 Later\r\n"),
        other => panic!("{other:?}"),
    }
    match parse(br#"{"action":"reject"}"#, Stage::Data, "hook.h")
        .unwrap()
        .action
    {
        Action::Reject(reply) => assert!(reply.0.starts_with("550 5.7.1 "), "{reply:?}"),
        other => panic!("{other:?}"),
    }
    let discard = parse(br#"{"action":"discard"}"#, Stage::Data, "hook.h").unwrap();
    assert!(matches!(discard.action, Action::Discard));
    let held = br#"{"action":"quarantine","response":{"message":"looks odd"}}"#;
    match parse(held, Stage::Data, "hook.h").unwrap().action {
        Action::Quarantine(reason) => assert_eq!(reason, "looks odd"),
        other => panic!("{other:?}"),
    }
    match parse(br#"{"action":"quarantine"}"#, Stage::Data, "hook.h")
        .unwrap()
        .action
    {
        Action::Quarantine(reason) => assert!(reason.contains("hook.h"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_answers_are_refused() {
    for body in [
        &b""[..],
        b"garbage",
        b"<html>502 Bad Gateway</html>",
        br#"{"action": "accept""#,
        br#"{"action": "accept", "modifications": [{"type": "addHeader", "name": "X"#,
        br#"{}"#,
        br#"{"action": "maybe"}"#,
        br#"{"action": 1}"#,
        br#"["accept"]"#,
        br#"{"action": "accept", "modifications": {"type": "addHeader"}}"#,
        br#"{"action": "accept", "modifications": [{"type": "rewriteEverything"}]}"#,
        br#"{"action": "accept", "modifications": [{"type": "addHeader", "name": "X"}]}"#,
        br#"{"action": "accept", "modifications": [{"type": "changeHeader", "index": -1, "name": "X", "value": "v"}]}"#,
        br#"{"action": "reject", "response": {"status": "550"}}"#,
        br#"{"action": "reject", "response": {"status": 70000}}"#,
    ] {
        let result = parse(body, Stage::Data, "hook.h");
        assert!(
            matches!(result, Err(ResponseError::Malformed(_))),
            "{}: {result:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn answers_invalid_at_the_stage_are_refused_whole() {
    for (stage, body) in [
        (
            Stage::Rcpt,
            r#"{"action":"reject","response":{"status":250,"message":"ok"}}"#,
        ),
        (
            Stage::Rcpt,
            r#"{"action":"reject","response":{"status":399}}"#,
        ),
        (
            Stage::Rcpt,
            r#"{"action":"reject","response":{"status":550,"enhancedStatus":"4.7.1"}}"#,
        ),
        (
            Stage::Rcpt,
            r#"{"action":"reject","response":{"status":550,"enhancedStatus":"5.x.1"}}"#,
        ),
        (
            Stage::Rcpt,
            r#"{"action":"reject","response":{"status":550,"message":"a\r\n250 ok"}}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","response":{"status":550}}"#,
        ),
        (
            Stage::Mail,
            r#"{"action":"accept","modifications":[{"type":"changeFrom","value":"not an address"}]}"#,
        ),
        (
            Stage::Mail,
            r#"{"action":"accept","modifications":[{"type":"changeFrom","value":"@nolocal.test"}]}"#,
        ),
        (
            Stage::Rcpt,
            r#"{"action":"accept","modifications":[{"type":"addRecipient","value":""}]}"#,
        ),
        (
            Stage::Connect,
            r#"{"action":"accept","modifications":[{"type":"addRecipient","value":"a@b.test"}]}"#,
        ),
        (
            Stage::Rcpt,
            r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X-A","value":"1"}]}"#,
        ),
        (
            Stage::Mail,
            r#"{"action":"accept","modifications":[{"type":"replaceContents","value":"x"}]}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X A","value":"1"}]}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X:A","value":"1"}]}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X-A","value":"1\r\nBcc: x@y.test"}]}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X-A","value":"1\nmore"}]}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"changeHeader","index":0,"name":"Subject","value":"x"}]}"#,
        ),
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"deleteHeader","index":0,"name":"Subject"}]}"#,
        ),
        // One valid change before an invalid one: none of them is returned.
        (
            Stage::Data,
            r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X-Ok","value":"1"},
                                                              {"type":"changeFrom","value":"bad address"}]}"#,
        ),
    ] {
        let result = parse(body.as_bytes(), stage, "hook.h");
        assert!(
            matches!(result, Err(ResponseError::Invalid { .. })),
            "{stage} {body}: {result:?}"
        );
    }
    // Folding is not a line end.
    let folded = r#"{"action":"accept","modifications":[{"type":"addHeader","name":"X-A","value":"one\r\n two"}]}"#;
    assert!(parse(folded.as_bytes(), Stage::Data, "hook.h").is_ok());
    let null_sender = r#"{"action":"accept","modifications":[{"type":"changeFrom","value":""}]}"#;
    assert_eq!(
        parse(null_sender.as_bytes(), Stage::Rcpt, "hook.h")
            .unwrap()
            .modifications,
        vec![Modification::ChangeSender {
            address: String::new()
        }]
    );
}

fn hook(url: String) -> Hook {
    Hook {
        id: "h".into(),
        url,
        stages: vec![Stage::Data],
        timeout: Duration::from_secs(10),
        tempfail_on_error: true,
        max_response_size: 1024,
        allow_invalid_certs: false,
        headers: vec![("X-Team".into(), "mail".into())],
        auth: None,
    }
}

#[test]
fn credentials_go_in_a_basic_header() {
    let mut hook = hook("https://hooks.example.org/in".into());
    hook.auth = Some(("mta".into(), Secret::new("s3cr3t:pass")));
    let endpoint = HttpEndpoint::parse(&hook.url).unwrap();
    let request = build_request(&hook, &endpoint, b"{}".to_vec()).unwrap();
    let headers = request.headers();
    // base64("mta:s3cr3t:pass")
    assert_eq!(headers["authorization"], "Basic bXRhOnMzY3IzdDpwYXNz");
    assert_eq!(headers["x-team"], "mail");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(request.uri(), "/in");
    hook.auth = None;
    let request = build_request(&hook, &endpoint, Vec::new()).unwrap();
    assert!(request.headers().get("authorization").is_none());
}

/// Asks `hook` about a data stage through a fresh session filter.
async fn ask(hook: Hook, tls: TlsSettings) -> crate::filter::Verdict {
    let mut filter = MtaHook::new(Arc::new(hook), HookClient::new(tls), Arc::default());
    let facts = session();
    let transaction = TransactionFacts {
        sender: "a@client.test".into(),
        sender_params: Vec::new(),
        recipients: vec!["b@mx.test".into()],
        queue_id: Some("1".into()),
    };
    let request = FilterRequest {
        stage: Stage::Data,
        session: &facts,
        transaction: Some(&transaction),
        recipient: None,
        message: Some(MESSAGE),
    };
    assert!(filter.wants(Stage::Data) && !filter.wants(Stage::Rcpt));
    filter.check(&request).await
}

fn is_tempfail(action: &Action) -> bool {
    matches!(action, Action::TempFail(reply) if reply.0.starts_with("451 4.3.0 "))
}

#[tokio::test]
async fn a_hook_over_http_is_asked_and_obeyed() {
    let server = HookServer::start();
    server.answer(
        "data",
        HookAnswer::json(
            r#"{"action":"reject","response":{"status":550,"enhancedStatus":"5.7.1","message":"No thanks"}}"#,
        ),
    );
    let verdict = ask(hook(server.url()), TlsSettings::new()).await;
    match verdict.action {
        Action::Reject(reply) => assert_eq!(reply.0, "550 5.7.1 No thanks\r\n"),
        other => panic!("{other:?}"),
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-team"), Some("mail"));
    assert_eq!(requests[0].body["message"]["headers"][1][1], "hello");
}

#[tokio::test]
async fn every_broken_hook_tempfails_or_is_skipped_as_configured() {
    let server = HookServer::start();
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        format!("http://{address}/hook")
    };
    let answers = [
        HookAnswer::raw(500, "{\"action\":\"accept\"}"),
        HookAnswer::raw(302, ""),
        HookAnswer::json("this is not json"),
        HookAnswer::json(r#"{"action":"accept","modifications":[{"type":"addHeader","#),
        HookAnswer::json(&format!(
            r#"{{"action":"accept","padding":"{}"}}"#,
            "x".repeat(2000)
        )),
        HookAnswer::json(r#"{"action":"reject","response":{"status":250}}"#),
        HookAnswer::json(r#"{"action":"accept"}"#).after(Duration::from_secs(5)),
    ];
    for answer in answers {
        server.answer("data", answer.clone());
        for tempfail in [true, false] {
            let mut hook = hook(server.url());
            hook.tempfail_on_error = tempfail;
            hook.timeout = Duration::from_millis(500);
            let verdict = ask(hook, TlsSettings::new()).await;
            assert!(verdict.modifications.is_empty(), "{answer:?}");
            if tempfail {
                assert!(is_tempfail(&verdict.action), "{answer:?}: {verdict:?}");
            } else {
                assert!(
                    matches!(verdict.action, Action::Continue),
                    "{answer:?}: {verdict:?}"
                );
            }
        }
    }
    let verdict = ask(hook(down.clone()), TlsSettings::new()).await;
    assert!(
        is_tempfail(&verdict.action),
        "a hook that is down: {verdict:?}"
    );
}

fn trusting(certificates: &TestCertificates) -> TlsSettings {
    TlsSettings::with_extra_roots(&[CertificateDer::from(certificates.ca_der.clone())])
}

#[tokio::test]
async fn https_needs_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = TestCertificates::generate(other_dir.path());
    let server = HookServer::start_tls(&certificates);
    server.answer("data", HookAnswer::json(r#"{"action":"discard"}"#));

    let verdict = ask(hook(server.url()), trusting(&certificates)).await;
    assert!(matches!(verdict.action, Action::Discard), "{verdict:?}");
    assert_eq!(server.requests().len(), 1);

    let verdict = ask(hook(server.url()), trusting(&other_ca)).await;
    assert!(is_tempfail(&verdict.action), "a wrong CA: {verdict:?}");
    assert_eq!(
        server.requests().len(),
        1,
        "nothing sent to an untrusted server"
    );

    let mut insecure = hook(server.url());
    insecure.allow_invalid_certs = true;
    let verdict = ask(insecure, trusting(&other_ca)).await;
    assert!(matches!(verdict.action, Action::Discard), "{verdict:?}");
}
