//! Brute force across the cluster: two smtp-ingress processes share one directory-proxy (split
//! roles, gRPC), with a real Dovecot behind it. Failed authentications through either
//! ingress count together, per login name and per client address; past the limit neither
//! ingress gets Dovecot asked, and other logins and addresses are unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, SocketAddr};

use ferrymail_e2e::{
    ALICE, BOB, Dovecot, DovecotOptions, Ferrymail, SmtpClient, http_get, sasl_plain, wait_until,
};

const BASE: &str = r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
"#;

/// Dovecot's submission service checks logins.
fn logins(dovecot: &Dovecot) -> String {
    format!(
        "[directory.logins]\ntype = \"smtp\"\naddress = \"127.0.0.1\"\nport = {}\ntls.allow-invalid-certs = true\n",
        dovecot.ports.submission
    )
}

/// The directory-proxy: three failures per login name and per address within an hour,
/// counted in its store.
fn proxy_config(dovecot: &Dovecot) -> String {
    format!(
        r#"{BASE}
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
[store.local]
type = "embedded"
path = "data"
[storage]
data = "local"
[cluster]
cache-key = "a cache key of at least thirty-two bytes"
[server.auto-ban.auth]
rate = "3/1h"
{}"#,
        logins(dovecot)
    )
}

/// An smtp-ingress asking the proxy at `proxy`. No mail is sent here: the queue endpoint is
/// a closed port.
fn ingress_config(dovecot: &Dovecot, proxy: SocketAddr) -> String {
    format!(
        r#"{BASE}
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[cluster.directory]
endpoint = "http://{proxy}"
[cluster.queue]
endpoint = "http://127.0.0.1:1"
{}[session.auth]
directory = "logins"
# Only so that this test's client can authenticate without TLS.
allow-plain-text = true
"#,
        logins(dovecot)
    )
}

/// AUTH PLAIN at `ingress` from the client address `from`: the reply code.
fn auth(ingress: SocketAddr, from: &str, user: &str, password: &str) -> u16 {
    let mut client = SmtpClient::connect_from(ingress, from.parse::<IpAddr>().unwrap());
    assert_eq!(client.command("EHLO client.test").code, 250);
    let reply = client.command(&format!("AUTH PLAIN {}", sasl_plain(user, password)));
    let _ = client.try_command("QUIT");
    reply.code
}

/// The proxy's `directory_auth_blocked_total` for `by`.
fn blocked(admin: SocketAddr, by: &str) -> f64 {
    let metrics = http_get(admin, "/metrics").unwrap().body;
    let series =
        format!("directory_auth_blocked_total{{target=\"directory/logins\",by=\"{by}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// How many successful logins of `user` Dovecot logged.
fn dovecot_logins(dovecot: &Dovecot, user: &str) -> usize {
    dovecot
        .log()
        .matches(&format!("Login: user=<{user}>"))
        .count()
}

#[test]
fn failures_through_two_ingresses_count_together_and_stop_reaching_dovecot() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let mut proxy = Ferrymail::start("directory-proxy", &proxy_config(&dovecot));
    let (grpc, admin) = (proxy.address("grpc"), proxy.address("admin"));
    let mut first = Ferrymail::start("smtp-ingress", &ingress_config(&dovecot, grpc));
    let mut second = Ferrymail::start("smtp-ingress", &ingress_config(&dovecot, grpc));
    let (a, b) = (first.address("smtp"), second.address("smtp"));

    // Three failures from 127.0.0.1, through both ingresses: two for alice, one for carol.
    assert_eq!(auth(a, "127.0.0.1", ALICE.0, "wrong"), 535);
    assert_eq!(auth(b, "127.0.0.1", ALICE.0, "wrong"), 535);
    assert_eq!(auth(a, "127.0.0.1", "carol@example.org", "wrong"), 535);

    // The address is past the limit: bob's right password gets a 4xx through either
    // ingress, and Dovecot is not asked.
    assert_eq!(auth(b, "127.0.0.1", BOB.0, BOB.1), 454);
    assert_eq!(auth(a, "127.0.0.1", BOB.0, BOB.1), 454);
    assert_eq!(blocked(admin, "address"), 2.0);

    // A third failure for alice, from another address: the login is past the limit
    // wherever it comes from.
    assert_eq!(auth(b, "127.0.0.2", ALICE.0, "wrong"), 535);
    assert_eq!(auth(a, "127.0.0.3", ALICE.0, ALICE.1), 454);
    assert_eq!(blocked(admin, "login"), 1.0);

    // Another login from another address is unaffected; its success resets nothing.
    assert_eq!(auth(b, "127.0.0.3", BOB.0, BOB.1), 235);
    assert_eq!(auth(a, "127.0.0.1", BOB.0, BOB.1), 454);
    assert_eq!(blocked(admin, "address"), 3.0);

    // Dovecot logs in order: once bob's one login shows, any blocked attempt (all but one
    // with the right password) that had reached it would show too.
    wait_until(
        "bob's login in Dovecot's log",
        || dovecot_logins(&dovecot, BOB.0) >= 1,
        || dovecot.log(),
    );
    assert_eq!(dovecot_logins(&dovecot, BOB.0), 1, "{}", dovecot.log());
    assert_eq!(dovecot_logins(&dovecot, ALICE.0), 0, "{}", dovecot.log());

    // Each ingress logged its blocked attempts in the fail2ban format.
    for ingress in [&mut first, &mut second] {
        let line = ingress.wait_for("a blocked attempt", |l| {
            l.message()
                .starts_with("authentication failed: client=127.0.0.1 user=\"bob@example.org\"")
                && l.message().ends_with(" reason=blocked")
        });
        assert_eq!(
            line.field("target"),
            Some("ferrymail::auth"),
            "{:?}",
            line.0
        );
    }
    drop(proxy);
}
