//! Inbound limiters across ingress pods: two `ferrymail all` processes on one PostgreSQL
//! store take from the same counters, so a client spread over both meets one limit. DSNs
//! and authenticated clients are spared when the limiter's `match` says so, refusals are
//! counted per limiter, the limit frees with its window, and the concurrency slots of an
//! ingress that was killed stop counting when their lease ends. Counters out of reach let
//! clients through, counted and logged. (Giving a slot back at the
//! end of a session is checked against the store in the directory-proxy's tests: here it
//! could not be told from the end of a short lease.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;

use ferrymail_e2e::{
    ALICE, BOB, Dovecot, DovecotOptions, Ferrymail, Postgres, SmtpClient, SmtpSink,
    SmtpSinkOptions, http_get, logins_directory, relay_config, sasl_plain, wait_until,
};

/// Three recipients per client address every 10 s, except in DSNs and from authenticated
/// clients; taken at RCPT (the `rcpt-domain` condition).
const RECIPIENTS: &str = r#"
[queue.limiter.inbound.recipients]
key = ["remote-ip"]
rate = "3/10s"
match = [
  { if = "sender", is-empty = false },
  { if = "authenticated-as", is-empty = true },
  { if = "rcpt-domain", in-list = "mailboxes/domains" },
]
"#;

/// One session per client address at once, with a short lease.
const SESSIONS: &str = r#"
[queue.limiter.inbound.sessions]
key = ["remote-ip"]
concurrency = 1
lease = "2s"
"#;

struct Lab {
    postgres: Postgres,
    _dovecot: Dovecot,
    _sink: SmtpSink,
    pods: Vec<Ferrymail>,
}

/// Two `ferrymail all` on one PostgreSQL database, with `limiters`, AUTH through Dovecot.
fn lab(limiters: &str) -> Lab {
    let postgres = Postgres::start();
    postgres.create_database("mail");
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let store = postgres.store_config("shared", "mail", postgres.port());
    let extra = format!(
        "{}[session.auth]\ndirectory = \"logins\"\n# Only so that this test's client can authenticate without TLS.\nallow-plain-text = true\n{limiters}",
        logins_directory(&dovecot)
    );
    let config = relay_config(&store, &dovecot, &sink, &extra);
    let pods = (0..2).map(|_| Ferrymail::start("all", &config)).collect();
    Lab {
        postgres,
        _dovecot: dovecot,
        _sink: sink,
        pods,
    }
}

/// The deadlines of the concurrency slots in the store, in Unix milliseconds (the keys
/// hold the subspace's name, `inbound-slots`, in clear; the rest is hashed).
fn slot_deadlines(postgres: &Postgres) -> Vec<u64> {
    let hex_name: String = b"inbound-slots"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    postgres
        .sql(
            "mail",
            &format!(
                "SELECT encode(value, 'hex') FROM ferrymail.kv \
                 WHERE position('\\x{hex_name}'::bytea in key) > 0"
            ),
        )
        .lines()
        .filter_map(|line| u64::from_str_radix(line.trim(), 16).ok())
        .collect()
}

/// A session at `smtp`, greeted, with a transaction from `sender` open.
fn transaction(smtp: SocketAddr, sender: &str) -> SmtpClient {
    let mut client = SmtpClient::connect(smtp);
    assert_eq!(client.greeting.code, 220);
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command(&format!("MAIL FROM:<{sender}>")).code, 250);
    client
}

/// The reply to `RCPT TO:<rcpt>`, as `"code enhanced-code"`.
fn rcpt(client: &mut SmtpClient, rcpt: &str) -> String {
    let reply = client.command(&format!("RCPT TO:<{rcpt}>"));
    let enhanced = reply.lines[0]
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    format!("{} {enhanced}", reply.code)
}

/// `ingress_limiter_refused_total{limiter}` of the pod whose admin listener is `admin`.
fn refused(admin: SocketAddr, limiter: &str) -> f64 {
    let metrics = http_get(admin, "/metrics").unwrap().body;
    let series = format!("ingress_limiter_refused_total{{limiter=\"{limiter}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_client_spread_over_two_ingresses_meets_one_rate() {
    let mut lab = lab(RECIPIENTS);
    let (a, b) = (lab.pods[0].address("smtp"), lab.pods[1].address("smtp"));
    let admins = [lab.pods[0].address("admin"), lab.pods[1].address("admin")];

    // Three recipients through both pods use the client's rate up.
    let mut first = transaction(a, "sender@remote.test");
    assert_eq!(rcpt(&mut first, ALICE.0), "250 2.1.5");
    assert_eq!(rcpt(&mut first, BOB.0), "250 2.1.5");
    let mut second = transaction(b, "sender@remote.test");
    assert_eq!(rcpt(&mut second, ALICE.0), "250 2.1.5");
    // The fourth is refused by either pod; the transaction stands with what it has.
    assert_eq!(rcpt(&mut second, BOB.0), "452 4.4.5");
    assert_eq!(rcpt(&mut first, "carol@example.org"), "452 4.4.5");
    assert_eq!(second.command("DATA").code, 354);
    assert_eq!(
        second.send_data("Subject: limited\r\n\r\nhello\r\n").code,
        250
    );

    // A DSN (null sender) and an authenticated client are not counted.
    let mut dsn = transaction(b, "");
    assert_eq!(rcpt(&mut dsn, ALICE.0), "250 2.1.5");
    let mut user = SmtpClient::connect(a);
    assert_eq!(user.command("EHLO client.test").code, 250);
    let auth = user.command(&format!("AUTH PLAIN {}", sasl_plain(BOB.0, BOB.1)));
    assert_eq!(auth.code, 235);
    assert_eq!(user.command(&format!("MAIL FROM:<{}>", BOB.0)).code, 250);
    assert_eq!(rcpt(&mut user, ALICE.0), "250 2.1.5");

    // Each pod counted its own refusal under the limiter's name.
    assert_eq!(refused(admins[0], "recipients"), 1.0);
    assert_eq!(refused(admins[1], "recipients"), 1.0);

    // The rate frees once the first recipients leave the window.
    wait_until(
        "the rate to free",
        || {
            let mut again = transaction(a, "sender@remote.test");
            rcpt(&mut again, ALICE.0) == "250 2.1.5"
        },
        || lab.pods[0].dump(),
    );
}

#[test]
fn a_killed_ingress_does_not_keep_its_sessions_slots() {
    let mut lab = lab(SESSIONS);
    let (a, b) = (lab.pods[0].address("smtp"), lab.pods[1].address("smtp"));
    let admin_b = lab.pods[1].address("admin");

    // One session per address, across both pods: the second is turned away at connect.
    let mut held = SmtpClient::connect(a);
    assert_eq!(held.greeting.code, 220);
    assert_eq!(held.command("EHLO client.test").code, 250);
    let refused_at_b = SmtpClient::connect(b);
    assert_eq!(
        refused_at_b.greeting.code, 421,
        "{:?}",
        refused_at_b.greeting
    );
    assert!(
        refused_at_b.greeting.lines[0].starts_with("4.4.5 "),
        "{:?}",
        refused_at_b.greeting
    );
    assert_eq!(refused(admin_b, "sessions"), 1.0);

    // The session outlives its slot's first lease: the slot is renewed while it lives.
    let [first_deadline] = slot_deadlines(&lab.postgres)[..] else {
        panic!("one slot: {:?}", slot_deadlines(&lab.postgres));
    };
    wait_until(
        "the slot to be renewed past its first lease",
        || slot_deadlines(&lab.postgres) > vec![first_deadline + 2_000],
        || format!("{:?}", slot_deadlines(&lab.postgres)),
    );
    assert_eq!(SmtpClient::connect(b).greeting.code, 421);
    assert_eq!(held.command("NOOP").code, 250);

    // The pod holding the slot dies without giving it back; the slot ends with its lease.
    lab.pods[0].kill();
    drop(held);
    wait_until(
        "the dead pod's slot to expire",
        || SmtpClient::connect(b).greeting.code == 220,
        || lab.pods[1].dump(),
    );
}

/// `ingress_limiter_unavailable_total{limiter}` of the pod whose admin listener is `admin`.
fn unavailable(admin: SocketAddr, limiter: &str) -> f64 {
    let metrics = http_get(admin, "/metrics").unwrap().body;
    let series = format!("ingress_limiter_unavailable_total{{limiter=\"{limiter}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn counters_out_of_reach_let_clients_through_counted_and_logged() {
    // An smtp-ingress whose directory-proxy is down (a closed port): nothing can be counted.
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
[cluster.directory]
endpoint = "http://127.0.0.1:1"
[cluster.queue]
endpoint = "http://127.0.0.1:1"
{SESSIONS}"#
    );
    let mut ingress = Ferrymail::start("smtp-ingress", &config);
    let (smtp, admin) = (ingress.address("smtp"), ingress.address("admin"));
    // Two sessions at once from one address, over a limit of one: both are let through.
    let mut first = SmtpClient::connect(smtp);
    let mut second = SmtpClient::connect(smtp);
    assert_eq!((first.greeting.code, second.greeting.code), (220, 220));
    assert_eq!(first.command("EHLO client.test").code, 250);
    assert_eq!(second.command("EHLO client.test").code, 250);
    assert_eq!(unavailable(admin, "sessions"), 2.0);
    assert_eq!(refused(admin, "sessions"), 0.0);
    let line = ingress.wait_for("the warning", |l| {
        l.message() == "inbound limiter counters cannot be reached; not limiting"
    });
    assert_eq!(line.field("level"), Some("WARN"), "{:?}", line.0);
    assert_eq!(line.field("limiter"), Some("sessions"), "{:?}", line.0);
}
