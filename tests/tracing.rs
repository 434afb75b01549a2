//! One message is one trace: an in-test OTLP receiver gets the spans of a real message sent
//! with smtplib, checked by LMTP against Dovecot and delivered to smtp-sink, first through
//! `ferrymail all`, then through the roles split into processes talking gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, Ferrymail, OtlpReceiver, ReceivedSpan,
    SmtpSink, SmtpSinkOptions, describe_spans, mailboxes_directory,
};

/// The spans every traced message has, whatever the process layout.
const MESSAGE_SPANS: [&str; 5] = [
    "smtp.session",
    "directory.lookup",
    "queue.enqueue",
    "queue.attempt",
    "delivery.relay",
];

fn otel_env(receiver: &OtlpReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        // Export promptly, so the test does not wait for the default 5 s batches.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
    ]
}

fn start(role: &str, config: &str, env: &[(&'static str, String)]) -> Ferrymail {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ferrymail::start_with_env(role, config, &[], &env)
}

fn relay_to(sink: &SmtpSink) -> String {
    format!(
        "[remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\ntimeout = \"10s\"\n[queue.outbound]\nnext-hop = \"sink\"\n",
        sink.address().port()
    )
}

/// Dovecot (recipients) and smtp-sink (the relay) for a traced `all`.
fn peers() -> (Dovecot, SmtpSink) {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    (dovecot, SmtpSink::start(SmtpSinkOptions::default()))
}

/// `ferrymail all` checking recipients with `dovecot` and relaying to `sink`; `extra` appended.
fn all_config(dovecot: &Dovecot, sink: &SmtpSink, extra: &str) -> String {
    format!(
        "[server]\nhostname = \"mx.test\"\nshutdown-timeout = \"5s\"\n[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n{EMBEDDED_STORE}{}[session.rcpt]\ndirectory = \"mailboxes\"\n{}{extra}",
        mailboxes_directory(dovecot),
        relay_to(sink),
    )
}

fn send_with_smtplib(smtp: SocketAddr, subject: &str) {
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
s.sendmail("sender@remote.test", ["{rcpt}"], b"Subject: {subject}\r\n\r\nhello trace\r\n")
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    );
    ferrymail_e2e::python(&script);
}

/// The trace holding every span of [`MESSAGE_SPANS`], if one does.
fn message_trace(spans: &[ReceivedSpan]) -> Option<String> {
    spans
        .iter()
        .filter(|s| s.name == "smtp.session")
        .map(|s| s.trace_id.clone())
        .find(|trace| {
            MESSAGE_SPANS.iter().all(|name| {
                spans
                    .iter()
                    .any(|s| &s.trace_id == trace && s.name == *name)
            })
        })
}

fn in_trace<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect()
}

#[test]
fn all_exports_one_trace_per_message() {
    let receiver = OtlpReceiver::start();
    let (dovecot, sink) = peers();
    let config = all_config(&dovecot, &sink, "");
    let mut process = start("all", &config, &otel_env(&receiver));
    let smtp = process.address("smtp");
    send_with_smtplib(smtp, "traced");
    sink.wait_for_messages(1);

    let spans = receiver.wait_for("the spans of the message", |s| message_trace(s).is_some());
    let trace = message_trace(&spans).unwrap();
    let all = describe_spans(&spans);
    assert!(spans.iter().all(|s| s.service == "ferrymail-all"), "{all}");

    // The lookup says which remote answered and from which cache level.
    let lookup = in_trace(&spans, &trace, "directory.lookup")[0];
    assert_eq!(
        lookup.attribute("directory.target"),
        Some("directory/mailboxes"),
        "{all}"
    );
    assert_eq!(lookup.attribute("cache"), Some("miss"), "{all}");
    assert_eq!(lookup.attribute("result"), Some("yes"), "{all}");
    let host = format!("127.0.0.1:{}", dovecot.ports.lmtp);
    assert_eq!(
        lookup.attribute("remote.host"),
        Some(host.as_str()),
        "{all}"
    );

    // Enqueue and the delivery attempt name the same queue id, which the log line of the
    // accepted message prints next to the trace id.
    let enqueue = in_trace(&spans, &trace, "queue.enqueue")[0];
    let queue_id = enqueue.attribute("queue_id").unwrap().to_owned();
    let attempt = in_trace(&spans, &trace, "queue.attempt")[0];
    assert_eq!(
        attempt.attribute("queue_id"),
        Some(queue_id.as_str()),
        "{all}"
    );
    assert_eq!(attempt.attribute("trace_id"), Some(trace.as_str()), "{all}");
    let relay = in_trace(&spans, &trace, "delivery.relay")[0];
    assert_eq!(relay.attribute("remote"), Some("sink"), "{all}");
    let queued = process.wait_for("the queued line", |l| l.message() == "message queued");
    assert_eq!(queued.field("queue_id"), Some(queue_id.as_str()));
    assert_eq!(queued.field("trace_id"), Some(trace.as_str()));

    // The attempt is a child of the session, the message's root.
    let session = in_trace(&spans, &trace, "smtp.session")[0];
    assert!(session.parent_span_id.is_empty(), "{all}");
    assert_eq!(attempt.parent_span_id, session.span_id, "{all}");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn split_roles_carry_the_trace_over_grpc() {
    let receiver = OtlpReceiver::start();
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let env = otel_env(&receiver);
    let base = "[server]\nhostname = \"mx.test\"\nshutdown-timeout = \"5s\"\n";
    let grpc = "[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n";
    let rcpt = format!(
        "{}[session.rcpt]\ndirectory = \"mailboxes\"\n",
        mailboxes_directory(&dovecot)
    );
    let mut queue = start(
        "queue-scheduler",
        &format!("{base}{grpc}{EMBEDDED_STORE}{}", relay_to(&sink)),
        &env,
    );
    let queue_grpc = queue.address("grpc");
    let mut proxy = start(
        "directory-proxy",
        &format!("{base}{grpc}{}", mailboxes_directory(&dovecot)),
        &env,
    );
    let proxy_grpc = proxy.address("grpc");
    let ingress_config = format!(
        "{base}[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n[cluster.directory]\nendpoint = \"http://{proxy_grpc}\"\n[cluster.queue]\nendpoint = \"http://{queue_grpc}\"\n{rcpt}"
    );
    let mut ingress = start("smtp-ingress", &ingress_config, &env);
    let smtp = ingress.address("smtp");
    send_with_smtplib(smtp, "traced across roles");
    sink.wait_for_messages(1);

    let spans = receiver.wait_for("the spans of the message from every role", |s| {
        message_trace(s).is_some()
    });
    let trace = message_trace(&spans).unwrap();
    let all = describe_spans(&spans);
    let service_of = |name: &str| in_trace(&spans, &trace, name)[0].service.clone();
    assert_eq!(
        service_of("smtp.session"),
        "ferrymail-smtp-ingress",
        "{all}"
    );
    assert_eq!(
        service_of("directory.lookup"),
        "ferrymail-directory-proxy",
        "{all}"
    );
    for name in ["queue.enqueue", "queue.attempt", "delivery.relay"] {
        assert_eq!(service_of(name), "ferrymail-queue-scheduler", "{all}");
    }

    // Each served call is a child of a span of the calling process: the context crossed the
    // process boundary in the gRPC metadata.
    let ingress_span_ids: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.service == "ferrymail-smtp-ingress")
        .map(|s| s.span_id.as_str())
        .collect();
    for method in [
        "/ferrymail.v1.Directory/VerifyRecipient",
        "/ferrymail.v1.Queue/Enqueue",
    ] {
        let served = in_trace(&spans, &trace, method);
        assert_eq!(served.len(), 1, "{method}:\n{all}");
        assert!(
            ingress_span_ids.contains(&served[0].parent_span_id.as_str()),
            "{method} is not a child of an ingress span:\n{all}"
        );
    }
    for process in [ingress, proxy, queue] {
        let (status, _) = process.terminate();
        assert!(status.success(), "{status}");
    }
}

#[test]
fn the_tracing_section_of_the_configuration_turns_export_on() {
    let receiver = OtlpReceiver::start();
    let (dovecot, sink) = peers();
    // No OTEL_EXPORTER_OTLP_ENDPOINT: the endpoint and service name come from the file.
    let tracing = format!(
        "[tracing]\nendpoint = \"{}\"\nservice-name = \"mx-from-config\"\n",
        receiver.endpoint()
    );
    let config = all_config(&dovecot, &sink, &tracing);
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned())];
    let mut process = start("all", &config, &env);
    let smtp = process.address("smtp");
    send_with_smtplib(smtp, "configured");
    sink.wait_for_messages(1);
    let spans = receiver.wait_for("the spans of the message", |s| message_trace(s).is_some());
    let all = describe_spans(&spans);
    assert!(spans.iter().all(|s| s.service == "mx-from-config"), "{all}");
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
