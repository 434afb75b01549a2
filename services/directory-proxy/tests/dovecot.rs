//! The directory-proxy against a real Dovecot: IMAP (plain, STARTTLS, implicit TLS), LMTP
//! recipient validation and submission AUTH, with the pool, the caches and failures.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrymail_config::Config;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{ALICE, BOB, Dovecot, DovecotOptions, TEMPFAIL_USER};
use ferrymail_rpc::directory::{AuthRequest, DirectoryService, Expansion, Mechanism, Verdict};
use ferrymail_store::{Store, StoreOptions};
use ferrymail_telemetry::Metrics;
use secrecy::SecretSlice;
use tokio::net::TcpListener;

/// The SMTP client the requests come from (a documentation address).
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

/// Directories pointing at one Dovecot: `lmtp`, `submission` (smtp), `imap` (plain port,
/// STARTTLS offered), `imaps` (implicit TLS). The test certificate is self-signed, hence
/// `allow-invalid-certs` except where verification itself is tested.
fn config(dovecot: &Dovecot, extra: &str) -> Config {
    let p = dovecot.ports;
    let text = format!(
        r#"
[server]
hostname = "proxy.test"

[directory.lmtp]
type = "lmtp"
address = "127.0.0.1"
port = {lmtp}
timeout = "20s"
tls.allow-invalid-certs = true
lookup.domains = ["example.org"]
lookup.blocked = ["10.0.0.0/8", "192.0.2.7"]

[directory.submission]
type = "smtp"
address = "127.0.0.1"
port = {submission}
timeout = "20s"
tls.allow-invalid-certs = true

[directory.imap]
type = "imap"
address = "127.0.0.1"
port = {imap}
timeout = "20s"
tls.allow-invalid-certs = true

[directory.imaps]
type = "imap"
address = "127.0.0.1"
port = {imaps}
timeout = "20s"
tls.implicit = true
tls.allow-invalid-certs = true

[directory.imaps-verified]
type = "imap"
address = "127.0.0.1"
port = {imaps}
timeout = "20s"
tls.implicit = true
{extra}
"#,
        lmtp = p.lmtp,
        submission = p.submission,
        imap = p.imap,
        imaps = p.imaps,
    );
    ferrymail_config::load_str("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// A `cluster.cache-key`: the shared cache is used only with one.
const CACHE_KEY: &str = "[cluster]\ncache-key = \"a test key of at least thirty-two bytes\"\n";

async fn proxy(config: &Config, store: Option<Store>) -> (DirectoryProxy, Metrics) {
    let metrics = Metrics::new("test");
    let proxy = DirectoryProxy::new(config, store, DirectoryMetrics::register(&metrics))
        .await
        .unwrap();
    (proxy, metrics)
}

fn auth(directory: &str, user: &str, password: &str, mechanism: Mechanism) -> AuthRequest {
    AuthRequest {
        directory: directory.into(),
        mechanism,
        username: user.into(),
        secret: SecretSlice::from(password.as_bytes().to_vec()),
        authzid: None,
        client: CLIENT,
    }
}

fn quiet_dovecot() -> Dovecot {
    // The auth penalty delays every login after a failure by seconds; it is not what these
    // tests are about (except the one that turns it on).
    Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    })
}

fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    let text = metrics.encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn lmtp_recipient_validation_yes_no_and_temporary() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = proxy(&config(&dovecot, ""), None).await;
    let alice = proxy.verify_recipient("lmtp", ALICE.0).await.unwrap();
    assert_eq!(alice.verdict, Verdict::Yes, "{alice:?}");
    assert_eq!(alice.reply.as_ref().map(|r| r.code), Some(250));
    let nosuch = proxy
        .verify_recipient("lmtp", "nosuch@example.org")
        .await
        .unwrap();
    assert_eq!(nosuch.verdict, Verdict::No, "{nosuch:?}");
    let reply = nosuch.reply.unwrap();
    assert_eq!(reply.code, 550);
    assert!(reply.text.starts_with("5.1.1"), "{}", reply.text);
    let tempfail = proxy.verify_recipient("lmtp", TEMPFAIL_USER).await.unwrap();
    assert_eq!(tempfail.verdict, Verdict::TemporaryFailure, "{tempfail:?}");
    assert_eq!(tempfail.reply.map(|r| r.code), Some(451));
}

#[tokio::test(flavor = "multi_thread")]
async fn more_recipients_than_limits_rcpt_reset_the_transaction() {
    let dovecot = quiet_dovecot();
    let config = config(&dovecot, "");
    let (proxy, _) = proxy(&config, None).await;
    // limits.rcpt defaults to 10: 25 distinct recipients need RSET and a new MAIL FROM twice.
    for n in 0..25 {
        let address = if n % 2 == 0 {
            ALICE.0.replace("alice@", &format!("alice+{n}@"))
        } else {
            format!("nosuch{n}@example.org")
        };
        let answer = proxy.verify_recipient("lmtp", &address).await.unwrap();
        let expected = if n % 2 == 0 {
            Verdict::Yes
        } else {
            Verdict::No
        };
        assert_eq!(answer.verdict, expected, "{address}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn submission_auth_accepts_refuses_and_fails_temporarily() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = proxy(&config(&dovecot, ""), None).await;
    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let ok = proxy
            .authenticate(auth("submission", ALICE.0, ALICE.1, mechanism))
            .await
            .unwrap();
        assert_eq!(ok.verdict, Verdict::Yes, "{mechanism:?}: {ok:?}");
        assert_eq!(ok.reply.map(|r| r.code), Some(235));
    }
    let bad = proxy
        .authenticate(auth("submission", BOB.0, "wrong", Mechanism::Plain))
        .await
        .unwrap();
    assert_eq!(bad.verdict, Verdict::No, "{bad:?}");
    assert_eq!(bad.reply.map(|r| r.code), Some(535));
    let temp = proxy
        .authenticate(auth("submission", TEMPFAIL_USER, "x", Mechanism::Plain))
        .await
        .unwrap();
    assert_eq!(temp.verdict, Verdict::TemporaryFailure, "{temp:?}");
    assert_eq!(temp.reply.map(|r| r.code), Some(454));
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_auth_over_starttls_and_implicit_tls() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = proxy(&config(&dovecot, ""), None).await;
    for directory in ["imap", "imaps"] {
        let ok = proxy
            .authenticate(auth(directory, ALICE.0, ALICE.1, Mechanism::Plain))
            .await
            .unwrap();
        assert_eq!(ok.verdict, Verdict::Yes, "{directory}: {ok:?}");
        let bad = proxy
            .authenticate(auth(directory, ALICE.0, "wrong", Mechanism::Plain))
            .await
            .unwrap();
        assert_eq!(bad.verdict, Verdict::No, "{directory}: {bad:?}");
        assert!(bad.reply.unwrap().text.contains("AUTHENTICATIONFAILED"));
        let unknown = proxy
            .authenticate(auth(directory, "nosuch@example.org", "x", Mechanism::Login))
            .await
            .unwrap();
        assert_eq!(unknown.verdict, Verdict::No, "{directory}: {unknown:?}");
        let temp = proxy
            .authenticate(auth(directory, TEMPFAIL_USER, "x", Mechanism::Plain))
            .await
            .unwrap();
        assert_eq!(
            temp.verdict,
            Verdict::TemporaryFailure,
            "{directory}: {temp:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused_unless_allowed() {
    let dovecot = quiet_dovecot();
    let (proxy, metrics) = proxy(&config(&dovecot, ""), None).await;
    // `imaps-verified` checks the self-signed test certificate and must refuse it: a
    // temporary failure (the client sees 4xx), never a "no".
    let refused = proxy
        .authenticate(auth("imaps-verified", ALICE.0, ALICE.1, Mechanism::Plain))
        .await
        .unwrap();
    assert_eq!(refused.verdict, Verdict::TemporaryFailure, "{refused:?}");
    assert!(
        metric(
            &metrics,
            "directory_connection_errors_total{target=\"directory/imaps-verified\"}"
        ) >= 1.0
    );
    let allowed = proxy
        .authenticate(auth("imaps", ALICE.0, ALICE.1, Mechanism::Plain))
        .await
        .unwrap();
    assert_eq!(allowed.verdict, Verdict::Yes);
}

#[tokio::test(flavor = "multi_thread")]
async fn vrfy_that_cannot_tell_is_reported_as_such() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = proxy(&config(&dovecot, ""), None).await;
    // Dovecot answers `252 2.3.3 Try RCPT instead` for everyone: that is not "exists".
    for address in [ALICE.0, "nosuch@example.org"] {
        let answer = proxy.vrfy("lmtp", address).await.unwrap();
        assert!(
            matches!(answer, Expansion::CannotTell { .. }),
            "{address}: {answer:?}"
        );
    }
    // Dovecot's LMTP has no EXPN (`500 5.5.1 Unknown command`): a server that cannot expand
    // lists says nothing about whether one exists.
    let expn = proxy.expn("lmtp", "alice").await.unwrap();
    assert!(matches!(expn, Expansion::CannotTell { .. }), "{expn:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_cached_but_never_a_wrong_password() {
    let dovecot = quiet_dovecot();
    let (proxy, metrics) = proxy(&config(&dovecot, ""), None).await;
    let first = proxy
        .authenticate(auth("submission", ALICE.0, ALICE.1, Mechanism::Plain))
        .await
        .unwrap();
    let second = proxy
        .authenticate(auth("submission", ALICE.0, ALICE.1, Mechanism::Plain))
        .await
        .unwrap();
    assert_eq!(
        (first.verdict, second.verdict),
        (Verdict::Yes, Verdict::Yes)
    );
    let hits = "directory_cache_requests_total{target=\"directory/submission\",level=\"local\",result=\"hit\"}";
    assert_eq!(metric(&metrics, hits), 1.0);
    let wrong = proxy
        .authenticate(auth("submission", ALICE.0, "alice-pas", Mechanism::Plain))
        .await
        .unwrap();
    assert_eq!(
        wrong.verdict,
        Verdict::No,
        "a cached yes must not answer another password"
    );
    // Temporary failures are never cached: each one reaches the server.
    for _ in 0..2 {
        let temp = proxy.verify_recipient("lmtp", TEMPFAIL_USER).await.unwrap();
        assert_eq!(temp.verdict, Verdict::TemporaryFailure);
    }
    let temp_hits =
        "directory_cache_requests_total{target=\"directory/lmtp\",level=\"local\",result=\"hit\"}";
    assert_eq!(metric(&metrics, temp_hits), 0.0);
    let logged = dovecot.log();
    assert!(!logged.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shared_cache_answers_for_another_replica_when_the_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let mut dovecot = quiet_dovecot();
    let config = config(&dovecot, CACHE_KEY);
    let (first, _) = proxy(&config, Some(store.clone())).await;
    assert_eq!(
        first
            .verify_recipient("lmtp", ALICE.0)
            .await
            .unwrap()
            .verdict,
        Verdict::Yes
    );
    assert_eq!(
        first
            .verify_recipient("lmtp", "nosuch@example.org")
            .await
            .unwrap()
            .verdict,
        Verdict::No
    );
    dovecot.stop();
    // A second replica (a fresh process would do the same) answers from the store.
    let (second, metrics) = proxy(&config, Some(store.clone())).await;
    assert_eq!(
        second
            .verify_recipient("lmtp", ALICE.0)
            .await
            .unwrap()
            .verdict,
        Verdict::Yes
    );
    assert_eq!(
        second
            .verify_recipient("lmtp", "nosuch@example.org")
            .await
            .unwrap()
            .verdict,
        Verdict::No
    );
    let shared =
        "directory_cache_requests_total{target=\"directory/lmtp\",level=\"shared\",result=\"hit\"}";
    assert_eq!(metric(&metrics, shared), 2.0);
    // Something never asked is a temporary failure with the server down, never a "no".
    let unknown = second.verify_recipient("lmtp", BOB.0).await.unwrap();
    assert_eq!(unknown.verdict, Verdict::TemporaryFailure);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_down_then_back_is_used_again_without_restart() {
    let dovecot = quiet_dovecot();
    let config = config(&dovecot, "");
    let lmtp_port = dovecot.ports.lmtp;
    drop(dovecot);
    let (proxy, _) = proxy(&config, None).await;
    let down = proxy.verify_recipient("lmtp", ALICE.0).await.unwrap();
    assert_eq!(down.verdict, Verdict::TemporaryFailure, "{down:?}");
    // Bring a server back on the same port: a relay to a new Dovecot instance.
    let dovecot = quiet_dovecot();
    let relay = Relay::start_on(lmtp_port, dovecot.ports.lmtp).await;
    let up = proxy.verify_recipient("lmtp", ALICE.0).await.unwrap();
    assert_eq!(up.verdict, Verdict::Yes, "{up:?}");
    drop(relay);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_lookups_never_open_more_connections_than_allowed() {
    let dovecot = quiet_dovecot();
    let relay = Relay::start(dovecot.ports.lmtp).await;
    let text = format!(
        "[server]\nhostname = \"p\"\n[directory.lmtp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = {}\npool.max-connections = 3\ncache.entries = 0\ntls.allow-invalid-certs = true\n",
        relay.port
    );
    let config = ferrymail_config::load_str("t.toml", &text).unwrap();
    let (proxy, _) = proxy(&config, None).await;
    let proxy = Arc::new(proxy);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let address = format!("alice+{n}@example.org");
            proxy
                .verify_recipient("lmtp", &address)
                .await
                .unwrap()
                .verdict
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Verdict::Yes);
    }
    let peak = relay.peak.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "peak concurrent connections {peak}"
    );
    assert!(
        relay.accepted.load(Ordering::SeqCst) <= 40,
        "connections are reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_domains_and_lists_need_no_server() {
    let dovecot = quiet_dovecot();
    let (proxy, _) = proxy(&config(&dovecot, ""), None).await;
    assert!(
        proxy
            .is_local_domain("lmtp", "EXAMPLE.org")
            .await
            .unwrap()
            .is_yes()
    );
    assert!(
        !proxy
            .is_local_domain("lmtp", "example.com")
            .await
            .unwrap()
            .is_yes()
    );
    assert!(
        proxy
            .in_list("lmtp/blocked", "10.20.30.40")
            .await
            .unwrap()
            .is_yes()
    );
    assert!(
        proxy
            .in_list("lmtp/blocked", "192.0.2.7")
            .await
            .unwrap()
            .is_yes()
    );
    assert!(
        !proxy
            .in_list("lmtp/blocked", "192.0.2.8")
            .await
            .unwrap()
            .is_yes()
    );
    assert!(proxy.in_list("lmtp/nosuchlist", "x").await.is_err());
    assert!(
        proxy
            .verify_recipient("nosuchdirectory", ALICE.0)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_hosts_with_lookup_answer_in_list() {
    let dovecot = quiet_dovecot();
    let extra = format!(
        "[remote.lmtp]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"lmtp\"\nlookup = true\ntls.implicit = false\ntls.allow-invalid-certs = true\n",
        dovecot.ports.lmtp
    );
    let (proxy, _) = proxy(&config(&dovecot, &extra), None).await;
    assert!(
        proxy
            .in_list("remote/lmtp", ALICE.0)
            .await
            .unwrap()
            .is_yes()
    );
    assert_eq!(
        proxy
            .in_list("remote/lmtp", "nosuch@example.org")
            .await
            .unwrap()
            .verdict,
        Verdict::No
    );
}

/// A TCP relay that counts connections: the observable proof of the pool's limit.
struct Relay {
    port: u16,
    peak: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, to)
    }

    async fn start_on(port: u16, to: u16) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Self::serve(listener, to)
    }

    fn serve(listener: TcpListener, to: u16) -> Relay {
        let port = listener.local_addr().unwrap().port();
        let (peak, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let active = Arc::new(AtomicUsize::new(0));
        let task = {
            let (peak, accepted) = (peak.clone(), accepted.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let active = active.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Relay {
            port,
            peak,
            accepted,
            task,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_is_a_temporary_failure_within_the_timeout() {
    // Accepts connections and says nothing: no greeting ever comes.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let text = format!(
        "[server]\nhostname = \"p\"\n[directory.slow]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = {port}\ntimeout = \"1s\"\n"
    );
    let config = ferrymail_config::load_str("t.toml", &text).unwrap();
    let (proxy, _) = proxy(&config, None).await;
    // Guard only: the proxy's own 1 s timeout must end the lookup long before this.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        proxy.verify_recipient("slow", ALICE.0),
    )
    .await
    .expect("the lookup must end by itself")
    .unwrap();
    assert_eq!(answer.verdict, Verdict::TemporaryFailure);
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_directory_loses_its_cache_and_an_unchanged_one_keeps_it() {
    let dovecot = quiet_dovecot();
    let before = config(&dovecot, "");
    let (proxy, metrics) = proxy(&before, None).await;
    proxy.verify_recipient("lmtp", ALICE.0).await.unwrap();
    proxy
        .authenticate(auth("submission", ALICE.0, ALICE.1, Mechanism::Plain))
        .await
        .unwrap();
    // Same file, but the LMTP directory's timeout changed.
    let text = format!(
        "[server]\nhostname = \"proxy.test\"\n[directory.lmtp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = {}\ntimeout = \"25s\"\ntls.allow-invalid-certs = true\n[directory.submission]\ntype = \"smtp\"\naddress = \"127.0.0.1\"\nport = {}\ntimeout = \"20s\"\ntls.allow-invalid-certs = true\n",
        dovecot.ports.lmtp, dovecot.ports.submission
    );
    proxy
        .apply(&ferrymail_config::load_str("t.toml", &text).unwrap())
        .await;
    proxy.verify_recipient("lmtp", ALICE.0).await.unwrap();
    proxy
        .authenticate(auth("submission", ALICE.0, ALICE.1, Mechanism::Plain))
        .await
        .unwrap();
    let lmtp_hits =
        "directory_cache_requests_total{target=\"directory/lmtp\",level=\"local\",result=\"hit\"}";
    let submission_hits = "directory_cache_requests_total{target=\"directory/submission\",level=\"local\",result=\"hit\"}";
    assert_eq!(
        metric(&metrics, lmtp_hits),
        0.0,
        "the changed directory was asked again"
    );
    assert_eq!(
        metric(&metrics, submission_hits),
        1.0,
        "the unchanged directory kept its cache"
    );
}
