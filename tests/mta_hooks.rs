//! MTA hooks end to end: `ferrymail all` asks a hook server (in process, scripted per
//! stage) at the stages `session.hook.<id>.stages` lists, with no milter configured, and
//! obeys it: a recipient refused at RCPT, a message quarantined (held in the queue), header,
//! body and envelope changes that reach the next hop (smtp-sink), over HTTPS with Basic
//! credentials; and a hook that does not answer in time refuses for now or is skipped, as
//! `tempfail-on-error` says.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use ferrymail_e2e::{
    EMBEDDED_STORE, Ferrymail, HookAnswer, HookServer, PEER_PATIENCE, SmtpClient, SmtpSink,
    SmtpSinkOptions, TestCertificates, binary,
};

/// `ferrymail all` relaying everything to `sink`, with `hooks` (`[session.hook.<id>]`
/// tables) and a gRPC listener for the queue command.
fn start(sink: &SmtpSink, hooks: &str, env: &[(&str, &str)]) -> Ferrymail {
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
{EMBEDDED_STORE}[session.rcpt]
relay = true
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
[queue.outbound]
next-hop = "sink"
{hooks}
"#,
        sink = sink.address().port(),
    );
    Ferrymail::start_with_env("all", &config, &[], env)
}

/// A `[session.hook.<id>]` table asking `server` at `stages`, with `extra` keys.
fn hook(id: &str, server: &HookServer, stages: &str, extra: &str) -> String {
    format!(
        "[session.hook.{id}]\nurl = \"{}\"\nstages = {stages}\n{extra}\n",
        server.url()
    )
}

const MESSAGE: &str = "From: <alice@client.test>\r\nSubject: hello\r\nX-Remove: me\r\n\
                       X-Keep: yes\r\n\r\nOriginal body.\r\n";

/// EHLO and MAIL FROM, expecting both accepted.
fn begin(c: &mut SmtpClient, sender: &str) {
    assert_eq!(c.command("EHLO client.test").code, 250);
    let mail = c.command(&format!("MAIL FROM:<{sender}> SIZE=100"));
    assert_eq!(mail.code, 250, "{:?}", mail.lines);
}

/// DATA and `MESSAGE`, returning the final reply.
fn data(c: &mut SmtpClient) -> ferrymail_e2e::SmtpReply {
    assert_eq!(c.command("DATA").code, 354);
    c.send_data(MESSAGE)
}

#[test]
fn a_hook_over_https_refuses_a_recipient_at_rcpt() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path());
    let server = HookServer::start_tls(&certificates);
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let hooks = hook(
        "policy",
        &server,
        r#"["ehlo", "rcpt"]"#,
        "headers = [\"X-Tenant: mail\"]\nauth.username = \"mta\"\nauth.secret = \"s3cr3t\"\n",
    );
    let ca = certificates.ca_pem.to_str().unwrap();
    let mut ferrymail = start(&sink, &hooks, &[("SSL_CERT_FILE", ca)]);
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    begin(&mut c, "alice@client.test");
    assert_eq!(c.command("RCPT TO:<bob@remote.test>").code, 250);
    server.answer(
        "rcpt",
        HookAnswer::json(
            r#"{"action":"reject","response":{"status":550,"enhancedStatus":"5.7.1","message":"No mail for spam@remote.test"}}"#,
        ),
    );
    let refused = c.command("RCPT TO:<spam@remote.test> NOTIFY=NEVER");
    assert_eq!(refused.code, 550, "{:?}", refused.lines);
    assert!(
        refused.lines[0].contains("5.7.1 No mail for spam@remote.test"),
        "{:?}",
        refused.lines
    );
    assert_eq!(data(&mut c).code, 250);
    c.command("QUIT");
    sink.wait_for_messages(1);
    let delivered = &sink.messages()[0];
    assert!(
        delivered.contains("X-Rcpt-Args: <bob@remote.test>"),
        "{delivered}"
    );
    assert!(!delivered.contains("spam@remote.test"), "{delivered}");

    // What the hook was told, and how.
    let ehlo = server.requests_at("ehlo");
    assert_eq!(ehlo.len(), 1);
    assert_eq!(ehlo[0].body["context"]["client"]["helo"], "client.test");
    assert_eq!(ehlo[0].body["context"]["client"]["ip"], "127.0.0.1");
    assert_eq!(ehlo[0].body["context"]["server"]["name"], "mx.test");
    assert!(ehlo[0].body.get("envelope").is_none());
    assert_eq!(
        ehlo[0].header("authorization"),
        Some("Basic bXRhOnMzY3IzdA==")
    );
    assert_eq!(ehlo[0].header("x-tenant"), Some("mail"));
    let rcpt = server.requests_at("rcpt");
    assert_eq!(rcpt.len(), 2, "data is not a stage of this hook");
    let envelope = &rcpt[1].body["envelope"];
    assert_eq!(envelope["from"]["address"], "alice@client.test");
    assert_eq!(envelope["from"]["parameters"]["SIZE"], "100");
    assert_eq!(envelope["to"][0]["address"], "bob@remote.test");
    assert_eq!(envelope["to"][1]["address"], "spam@remote.test");
    assert_eq!(envelope["to"][1]["parameters"]["NOTIFY"], "NEVER");
}

#[test]
fn a_quarantined_message_is_held_not_delivered() {
    let server = HookServer::start();
    server.answer(
        "data",
        HookAnswer::json(
            r#"{"action":"quarantine","response":{"message":"suspicious attachment"}}"#,
        ),
    );
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut ferrymail = start(&sink, &hook("scan", &server, r#"["data"]"#, ""), &[]);
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    begin(&mut c, "alice@client.test");
    assert_eq!(c.command("RCPT TO:<bob@remote.test>").code, 250);
    let accepted = data(&mut c);
    assert_eq!(accepted.code, 250, "{:?}", accepted.lines);
    c.command("QUIT");

    let request = &server.requests_at("data")[0];
    let message = &request.body["message"];
    assert_eq!(message["contents"], "Original body.\r\n");
    let headers = message["headers"].as_array().unwrap();
    assert_eq!(headers[0][0], "Received", "this server's field first");
    assert!(headers.iter().any(|h| h[0] == "Subject" && h[1] == "hello"));
    assert!(request.body["context"]["queue"]["id"].is_string());

    let grpc = format!("http://{}", ferrymail.address("grpc"));
    let listed = Command::new(binary())
        .args(["queue", "--server", &grpc, "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.trim_end().ends_with("HELD"), "{listed}");
    assert_eq!(
        sink.received_within(1, Duration::from_secs(3)),
        0,
        "a quarantined message was delivered"
    );
}

#[test]
fn header_and_body_changes_reach_the_next_hop() {
    let server = HookServer::start();
    server.answer(
        "data",
        HookAnswer::json(
            r#"{"action":"accept","modifications":[
                {"type":"addHeader","name":"X-Scanned","value":"clean"},
                {"type":"changeHeader","index":1,"name":"Subject","value":"[scanned] hello"},
                {"type":"deleteHeader","index":1,"name":"X-Remove"},
                {"type":"replaceContents","value":"Replaced body.\nSecond line.\n"}]}"#,
        ),
    );
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut ferrymail = start(&sink, &hook("scan", &server, r#"["data"]"#, ""), &[]);
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    begin(&mut c, "alice@client.test");
    assert_eq!(c.command("RCPT TO:<bob@remote.test>").code, 250);
    assert_eq!(data(&mut c).code, 250);
    c.command("QUIT");
    sink.wait_for_messages(1);
    // smtp-sink writes its dump with LF line ends.
    let delivered = &sink.messages()[0];
    assert!(delivered.contains("\nX-Scanned: clean\n"), "{delivered}");
    assert!(
        delivered.contains("\nSubject: [scanned] hello\n"),
        "{delivered}"
    );
    assert!(!delivered.contains("Subject: hello"), "{delivered}");
    assert!(!delivered.contains("X-Remove"), "{delivered}");
    assert!(delivered.contains("\nX-Keep: yes\n"), "{delivered}");
    assert!(
        delivered.contains("\n\nReplaced body.\nSecond line.\n"),
        "{delivered}"
    );
    assert!(!delivered.contains("Original body"), "{delivered}");
}

#[test]
fn envelope_changes_reach_the_next_hop() {
    let server = HookServer::start();
    server.answer(
        "mail",
        HookAnswer::json(
            r#"{"action":"accept","modifications":[{"type":"changeFrom","value":"bounces@client.test"}]}"#,
        ),
    );
    server.answer(
        "data",
        HookAnswer::json(
            r#"{"action":"accept","modifications":[
                {"type":"addRecipient","value":"archive@remote.test"},
                {"type":"deleteRecipient","value":"carol@remote.test"}]}"#,
        ),
    );
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut ferrymail = start(
        &sink,
        &hook("route", &server, r#"["mail", "data"]"#, ""),
        &[],
    );
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    begin(&mut c, "alice@client.test");
    assert_eq!(c.command("RCPT TO:<bob@remote.test>").code, 250);
    assert_eq!(c.command("RCPT TO:<carol@remote.test>").code, 250);
    assert_eq!(data(&mut c).code, 250);
    c.command("QUIT");
    sink.wait_for_messages(1);
    // Every recipient goes to the same next hop: wait for all of them.
    let deadline = std::time::Instant::now() + PEER_PATIENCE;
    let rcpts = loop {
        let all: String = sink.messages().concat();
        let rcpts: Vec<String> = all
            .lines()
            .filter(|l| l.starts_with("X-Rcpt-Args: "))
            .map(str::to_owned)
            .collect();
        if rcpts.len() >= 2 || std::time::Instant::now() > deadline {
            break (all, rcpts);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (all, rcpts) = rcpts;
    assert!(all.contains("X-Mail-Args: <bounces@client.test>"), "{all}");
    assert!(!all.contains("X-Mail-Args: <alice@client.test>"), "{all}");
    assert!(
        rcpts.iter().any(|r| r.contains("<bob@remote.test>")),
        "{rcpts:?}"
    );
    assert!(
        rcpts.iter().any(|r| r.contains("<archive@remote.test>")),
        "{rcpts:?}"
    );
    assert!(!all.contains("carol@remote.test"), "{all}");
    // The data request already saw the new sender.
    let data_request = &server.requests_at("data")[0];
    assert_eq!(
        data_request.body["envelope"]["from"]["address"],
        "bounces@client.test"
    );
}

#[test]
fn a_hook_that_does_not_answer_in_time_refuses_for_now_or_is_skipped() {
    let strict = HookServer::start();
    let lenient = HookServer::start();
    for server in [&strict, &lenient] {
        server.answer(
            "rcpt",
            HookAnswer::json(r#"{"action":"reject"}"#).after(Duration::from_secs(30)),
        );
    }
    let sink = SmtpSink::start(SmtpSinkOptions::default());

    // tempfail-on-error = true (the default): 451 4.3.0, never a 5xx.
    let strict_hooks = hook("slow", &strict, r#"["rcpt"]"#, "timeout = \"1s\"\n");
    let mut ferrymail = start(&sink, &strict_hooks, &[]);
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    begin(&mut c, "alice@client.test");
    let refused = c.command("RCPT TO:<bob@remote.test>");
    assert_eq!(refused.code, 451, "{:?}", refused.lines);
    assert!(refused.lines[0].contains("4.3.0"), "{:?}", refused.lines);
    c.command("QUIT");
    drop(ferrymail);

    // tempfail-on-error = false: as if the hook were not there.
    let lenient_hooks = hook(
        "slow",
        &lenient,
        r#"["rcpt"]"#,
        "timeout = \"1s\"\ntempfail-on-error = false\n",
    );
    ferrymail = start(&sink, &lenient_hooks, &[]);
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    begin(&mut c, "alice@client.test");
    let accepted = c.command("RCPT TO:<bob@remote.test>");
    assert_eq!(accepted.code, 250, "{:?}", accepted.lines);
    assert_eq!(data(&mut c).code, 250);
    c.command("QUIT");
    sink.wait_for_messages(1);
    assert_eq!(lenient.requests_at("rcpt").len(), 1, "the hook was asked");
    let logged = ferrymail.wait_for("the hook's failure logged", |l| {
        l.message().contains("MTA hook failed")
    });
    assert_eq!(logged.field("hook"), Some("slow"));
}

#[test]
fn a_421_from_a_hook_ends_the_session_after_the_reply() {
    let server = HookServer::start();
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut ferrymail = start(&sink, &hook("gate", &server, r#"["mail"]"#, ""), &[]);
    server.answer(
        "mail",
        HookAnswer::json(
            r#"{"action":"reject","response":{"status":421,"enhancedStatus":"4.7.0","message":"Shutting down"}}"#,
        ),
    );
    let mut c = SmtpClient::connect(ferrymail.address("smtp"));
    assert_eq!(c.command("EHLO client.test").code, 250);
    let refused = c.command("MAIL FROM:<alice@client.test>");
    assert_eq!(refused.code, 421, "{:?}", refused.lines);
    assert!(
        c.try_command("NOOP").is_none(),
        "the connection stays open after 421"
    );
}
