//! `ferrymail all` on a PostgreSQL store: mail relayed through it, and each way the database
//! can fail the start — down (one error line, unready until it answers), a refused login, a
//! schema of another version.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, Ferrymail, HttpResponse, PEER_PATIENCE, POSTGRES_PASSWORD,
    Postgres, SmtpSink, SmtpSinkOptions, http_get, python, relay_config,
};
use ferrymail_rpc::queue::{GrpcQueue, QueueService, QueueStats};

fn dovecot() -> Dovecot {
    Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    })
}

/// Polls `/readyz` until `done` holds for its answer.
fn wait_readyz(admin: SocketAddr, what: &str, done: impl Fn(&HttpResponse) -> bool) {
    let deadline = Instant::now() + PEER_PATIENCE;
    loop {
        let response = http_get(admin, "/readyz").unwrap();
        if done(&response) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never became {what}: {} {}",
            response.status,
            response.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send(smtp: SocketAddr, subject: &str) {
    python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=30)
s.ehlo("client.test")
s.sendmail("sender@remote.test", ["{rcpt}"], b"Subject: {subject}\r\n\r\nhello\r\n")
s.quit()
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    ));
}

/// Sends a message expecting it refused: the code of the first reply that is not 2xx/3xx
/// (0 if every reply was positive, that is, the message was accepted).
fn send_refused(smtp: SocketAddr, subject: &str) -> u16 {
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("{host}", {port}, timeout=60)
s.ehlo("client.test")
try:
    s.sendmail("sender@remote.test", ["{rcpt}"], b"Subject: {subject}\r\n\r\nhello\r\n")
    print(0)
except smtplib.SMTPRecipientsRefused as e:
    print(list(e.recipients.values())[0][0])
except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
    print(e.smtp_code)
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    ));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("python printed {out:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn all_on_postgresql_relays_a_message_and_empties_the_queue() {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let (dovecot, sink) = (dovecot(), SmtpSink::start(SmtpSinkOptions::default()));
    let store = postgres.store_config("shared", "mail", postgres.port());
    let mut process = Ferrymail::start("all", &relay_config(&store, &dovecot, &sink, ""));
    let (smtp, grpc) = (process.address("smtp"), process.address("grpc"));
    process.wait_for("the store", |l| {
        l.message() == "store opened" && l.field("backend") == Some("postgresql")
    });

    send(smtp, "through postgresql");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert!(sink.messages()[0].contains("through postgresql"));

    let queue = GrpcQueue::connect(&format!("http://{grpc}")).unwrap();
    let deadline = Instant::now() + PEER_PATIENCE;
    while queue.stats().await.unwrap() != QueueStats::default() {
        assert!(Instant::now() < deadline, "the queue never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The queue's records are in the database, under the installation's prefix.
    let rows = postgres.sql("mail", "SELECT count(*) FROM ferrymail.kv");
    assert!(rows.parse::<u64>().unwrap() > 0, "{rows}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_down_at_start_is_one_error_line_and_unready_until_it_answers() {
    let mut postgres = Postgres::start();
    postgres.create_database("mail");
    postgres.stop();
    let (dovecot, sink) = (dovecot(), SmtpSink::start(SmtpSinkOptions::default()));
    let store = postgres.store_config("shared", "mail", postgres.port());
    let mut process = Ferrymail::start("all", &relay_config(&store, &dovecot, &sink, ""));
    // Served before the role has started: the start waits for the database.
    let admin: SocketAddr = process
        .wait_for("the admin listener", |l| {
            l.message() == "listener bound" && l.field("listener") == Some("admin")
        })
        .field("address")
        .unwrap()
        .parse()
        .unwrap();
    let line = process.wait_for("the store's error", |l| {
        l.message().starts_with("store unreachable")
    });
    assert_eq!(line.field("level"), Some("ERROR"), "{}", process.dump());
    let reason = line.field("reason").unwrap_or_default().to_owned();
    assert!(
        reason.contains(&format!("127.0.0.1:{}", postgres.port())),
        "{reason}"
    );
    wait_readyz(admin, "unready naming the store", |r| {
        r.status == 503 && r.body.contains("store")
    });

    tokio::task::block_in_place(|| postgres.restart());
    wait_readyz(admin, "ready", |r| r.status == 200);
    let smtp = process.address("smtp");
    send(smtp, "after the outage");
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    let (_, log) = process.terminate();
    let errors = log
        .iter()
        .filter(|l| l.field("level") == Some("ERROR"))
        .count();
    assert_eq!(errors, 1, "one error line for the outage at start");
}

#[test]
fn a_refused_login_stops_the_start_saying_why() {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let store = postgres
        .store_config("shared", "mail", postgres.port())
        .replace(POSTGRES_PASSWORD, "wrong-password");
    let config = format!("[server]\nhostname = \"mx.test\"\n{store}");
    let (status, output) = Ferrymail::start("queue-scheduler", &config).wait_exit();
    assert!(!status.success());
    assert!(
        output.contains("refused the login") && output.contains("password authentication failed"),
        "{output}"
    );
    assert!(!output.contains("wrong-password"), "{output}");
}

#[test]
fn a_schema_of_another_version_stops_the_start_naming_both() {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    postgres.sql(
        "mail",
        "CREATE SCHEMA ferrymail; \
         CREATE TABLE ferrymail.meta (name text PRIMARY KEY, value bigint NOT NULL); \
         INSERT INTO ferrymail.meta VALUES ('schema_version', 99)",
    );
    let store = postgres.store_config("shared", "mail", postgres.port());
    let config = format!("[server]\nhostname = \"mx.test\"\n{store}");
    let (status, output) = Ferrymail::start("queue-scheduler", &config).wait_exit();
    assert!(!status.success());
    assert!(
        output.contains("schema version 99") && output.contains("uses version 1"),
        "{output}"
    );
}

#[test]
fn the_roles_that_keep_state_share_one_database() {
    // A queue-scheduler and a directory-proxy, two processes on one database, both ready.
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let store = postgres.store_config("shared", "mail", postgres.port());
    let config = format!(
        "[server]\nhostname = \"mx.test\"\n[server.listener.admin]\nbind = \"127.0.0.1:0\"\n\
         protocol = \"http\"\n[server.listener.grpc]\nbind = \"127.0.0.1:0\"\n\
         protocol = \"grpc\"\n{store}"
    );
    let mut processes: Vec<Ferrymail> = ["queue-scheduler", "directory-proxy"]
        .into_iter()
        .map(|role| Ferrymail::start(role, &config))
        .collect();
    for process in &mut processes {
        let admin = process.address("admin");
        wait_readyz(admin, "ready", |r| r.status == 200);
        process.wait_for("the store", |l| {
            l.message() == "store opened" && l.field("backend") == Some("postgresql")
        });
    }
}

#[test]
fn tls_to_the_database_follows_the_store_keys() {
    let mut postgres = Postgres::start();
    postgres.create_database("mail");
    postgres.enable_tls();
    let store = postgres.store_config("shared", "mail", postgres.port());
    let config = |tls: &str| {
        format!(
            "[server]\nhostname = \"mx.test\"\n[server.listener.admin]\nbind = \"127.0.0.1:0\"\n\
             protocol = \"http\"\n{}",
            store.replace("[storage]", &format!("{tls}[storage]"))
        )
    };
    // The private CA is trusted by no one: the start stops, saying so.
    let (status, output) =
        Ferrymail::start("queue-scheduler", &config("tls.enable = true\n")).wait_exit();
    assert!(!status.success());
    assert!(
        output.contains("cannot connect to PostgreSQL") && output.contains("certificate"),
        "{output}"
    );
    // Told to accept it, the store opens over TLS.
    let mut process = Ferrymail::start(
        "queue-scheduler",
        &config("tls.enable = true\ntls.allow-invalid-certs = true\n"),
    );
    let admin = process.address("admin");
    wait_readyz(admin, "ready", |r| r.status == 200);
    let encrypted = postgres.sql(
        "postgres",
        "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE datname = 'mail'",
    );
    assert_eq!(encrypted, "t");
}

#[test]
fn a_schema_of_another_version_found_once_the_database_answers_stops_the_start() {
    let mut postgres = Postgres::start();
    postgres.create_database("mail");
    postgres.sql(
        "mail",
        "CREATE SCHEMA ferrymail; \
         CREATE TABLE ferrymail.meta (name text PRIMARY KEY, value bigint NOT NULL); \
         INSERT INTO ferrymail.meta VALUES ('schema_version', 99)",
    );
    postgres.stop();
    let store = postgres.store_config("shared", "mail", postgres.port());
    let config = format!("[server]\nhostname = \"mx.test\"\n{store}");
    let mut process = Ferrymail::start("queue-scheduler", &config);
    process.wait_for("the store's error", |l| {
        l.message().starts_with("store unreachable")
    });
    postgres.restart();
    let (status, output) = process.wait_exit();
    assert!(!status.success());
    assert!(
        output.contains("schema version 99") && output.contains("uses version 1"),
        "{output}"
    );
}

#[test]
fn an_outage_of_the_database_is_unready_then_mail_flows_again_without_a_restart() {
    let mut postgres = Postgres::start();
    postgres.create_database("mail");
    let (dovecot, sink) = (dovecot(), SmtpSink::start(SmtpSinkOptions::default()));
    let store = postgres.store_config("shared", "mail", postgres.port());
    let mut process = Ferrymail::start("all", &relay_config(&store, &dovecot, &sink, ""));
    let (smtp, admin) = (process.address("smtp"), process.address("admin"));
    wait_readyz(admin, "ready", |r| r.status == 200);
    send(smtp, "before the outage");
    sink.wait_for_messages(1);

    postgres.stop();
    wait_readyz(admin, "unready naming the store", |r| {
        r.status == 503 && r.body.contains("store")
    });
    // A message that cannot be committed is refused for now, never acknowledged nor bounced.
    let code = send_refused(smtp, "during the outage");
    assert!((400..500).contains(&code), "during the outage: {code}");
    postgres.restart();
    wait_readyz(admin, "ready again", |r| r.status == 200);
    send(smtp, "after the outage");
    sink.wait_for_messages(2);
    // The sink does not keep the order of arrival.
    let messages = sink.messages();
    assert!(
        messages.iter().any(|m| m.contains("after the outage")),
        "{messages:?}"
    );
    assert!(
        !messages.iter().any(|m| m.contains("during the outage")),
        "a refused message was delivered: {messages:?}"
    );
}
