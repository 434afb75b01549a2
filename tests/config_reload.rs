//! A running process re-reads its configuration when the files change, keeps the old one
//! when the new one is invalid, and exposes the active hash.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ferrymail_e2e::{EMBEDDED_STORE, Ferrymail, PEER_PATIENCE, SmtpClient, http_get};

const CONFIG: &str = r#"
[server]
hostname = "mx.test"

[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
"#;

fn active_hash(metrics: &str) -> String {
    let start = metrics
        .find("config_hash_info{hash=\"")
        .expect("hash metric")
        + "config_hash_info{hash=\"".len();
    metrics[start..start + 64].to_string()
}

#[test]
fn valid_changes_apply_and_invalid_ones_are_refused() {
    let mut process = Ferrymail::start("operator", CONFIG);
    let admin = process.address("admin");
    let first = active_hash(&http_get(admin, "/metrics").unwrap().body);

    // A valid change: a new remote.
    std::fs::write(
        &process.config,
        format!("{CONFIG}\n[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n"),
    )
    .unwrap();
    let reloaded = process.wait_for("the reload", |l| l.message() == "configuration reloaded");
    let second = reloaded.field("hash").unwrap().to_string();
    assert_ne!(first, second);
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(active_hash(&metrics), second);
    assert!(
        metrics.contains("config_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );

    // An invalid change is logged with its line and key, and the old config stays.
    std::fs::write(
        &process.config,
        format!("{CONFIG}\n[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\ntimeout = \"x\"\n"),
    )
    .unwrap();
    let refused = process.wait_for("the refusal", |l| {
        l.message().starts_with("configuration change refused")
    });
    assert!(
        refused
            .message()
            .contains("config.toml:12:11: remote.r.timeout: invalid duration \"x\""),
        "{}",
        refused.message()
    );
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(active_hash(&metrics), second);
    assert!(
        metrics.contains("config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        http_get(admin, "/healthz").unwrap().status,
        200,
        "still serving"
    );
}

#[test]
fn files_added_to_the_include_directory_are_merged() {
    let conf_d = tempfile::tempdir().unwrap();
    let dir = conf_d.path().to_str().unwrap().to_string();
    let mut process = Ferrymail::start_with("operator", CONFIG, &["--config-dir", &dir]);
    let admin = process.address("admin");
    // What the operator does: a new file appears in the mounted directory.
    std::fs::write(
        conf_d.path().join("remotes.toml"),
        "[remote.lmtp]\naddress = \"127.0.0.1\"\nprotocol = \"lmtp\"\n",
    )
    .unwrap();
    let reloaded = process.wait_for("the reload", |l| l.message() == "configuration reloaded");
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(active_hash(&metrics), reloaded.field("hash").unwrap());
}

/// Writes `text` to the process's main file.
fn write_config(process: &Ferrymail, text: &str) {
    std::fs::write(&process.config, text).unwrap();
}

/// Whether `line` is the refusal of a configuration.
fn is_refusal(line: &ferrymail_e2e::LogLine) -> bool {
    line.message().starts_with("configuration change refused")
}

/// Whether `line` says the files were looked at and found as they were.
fn is_unchanged(line: &ferrymail_e2e::LogLine) -> bool {
    line.message() == "configuration files unchanged"
}

fn counter(metrics: &str, result: &str) -> String {
    let name = format!("config_reloads_total{{result=\"{result}\"}} ");
    let start = metrics.find(&name).expect("reload counter") + name.len();
    metrics[start..]
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_invalid_change_is_reported_once_per_change() {
    let mut process = Ferrymail::start_with_env(
        "operator",
        CONFIG,
        &[],
        &[("RUST_LOG", "info,ferrymail::config_reload=debug")],
    );
    let admin = process.address("admin");
    let bad =
        format!("{CONFIG}\n[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\ntimeout = \"x\"\n");
    write_config(&process, &bad);
    process.wait_for("the refusal", is_refusal);

    // Reading the file, as an editor or `cat` does, and saving it unchanged are no changes:
    // the process looks, finds what it refused already, and says nothing more.
    process.log.clear();
    assert_eq!(std::fs::read_to_string(&process.config).unwrap(), bad);
    write_config(&process, &bad);
    let next = process.wait_for("a look at the files", |l| is_refusal(l) || is_unchanged(l));
    assert!(
        is_unchanged(&next),
        "the same invalid configuration was refused again:\n{}",
        process.dump()
    );
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(counter(&metrics, "failure"), "1", "{metrics}");

    // Another invalid content is a new change: refused once more, naming its own problem.
    process.log.clear();
    write_config(
        &process,
        &format!("{CONFIG}\n[remote.r]\naddress = \"a\"\nprotocol = \"pop3\"\n"),
    );
    let refused = process.wait_for("the second refusal", is_refusal);
    assert!(
        refused.message().contains("remote.r.protocol"),
        "{}",
        refused.message()
    );
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(counter(&metrics, "failure"), "2", "{metrics}");

    // Fixed: applied, and the failures stay counted as they were.
    write_config(
        &process,
        &format!("{CONFIG}\n[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n"),
    );
    process.wait_for("the reload", |l| l.message() == "configuration reloaded");
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(counter(&metrics, "success"), "1", "{metrics}");
    assert_eq!(counter(&metrics, "failure"), "2", "{metrics}");
}

#[test]
fn changes_that_need_a_restart_are_named() {
    let mut process = Ferrymail::start("operator", CONFIG);
    process.address("admin");

    // A change every role applies at once: no warning.
    write_config(
        &process,
        &format!("{CONFIG}\n[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n"),
    );
    process.wait_for("the first reload", |l| {
        l.message() == "configuration reloaded"
    });
    let warned: Vec<_> = process
        .log
        .iter()
        .filter(|l| l.message().contains("takes effect after a restart"))
        .map(|l| l.message().to_string())
        .collect();
    assert!(warned.is_empty(), "{warned:?}");

    // The admin listener moves and a second one appears: both wait for a restart.
    process.log.clear();
    let moved = CONFIG.replace("127.0.0.1:0", "127.0.0.1:1");
    write_config(
        &process,
        &format!(
            "{moved}\n[server.listener.admin2]\nbind = \"127.0.0.1:2\"\nprotocol = \"http\"\n\n[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n"
        ),
    );
    process.wait_for("the second reload", |l| {
        l.message() == "configuration reloaded"
    });
    let mut warned: Vec<_> = process
        .log
        .iter()
        .filter(|l| l.field("level") == Some("WARN"))
        .map(|l| l.message().to_string())
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            "server.listener.admin.bind changed; takes effect after a restart",
            "server.listener.admin2 added; takes effect after a restart",
        ],
        "{}",
        process.dump()
    );
}

/// An SMTP listener whose greeting (and PROXY protocol) is `listener_keys`, with every role
/// in one process.
fn greeting_config(listener_keys: &str) -> String {
    format!(
        "{CONFIG}\n[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n{listener_keys}\n{EMBEDDED_STORE}"
    )
}

/// The greeting of new connections, once it is `expected` or the patience runs out.
fn wait_for_greeting(smtp: std::net::SocketAddr, expected: &str) -> String {
    let deadline = Instant::now() + PEER_PATIENCE;
    loop {
        let greeting = SmtpClient::connect(smtp).greeting.text();
        if greeting == expected || Instant::now() > deadline {
            return greeting;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_new_greeting_greets_new_connections_and_sessions_under_way_go_on() {
    let mut process = Ferrymail::start("all", &greeting_config("greeting = \"first words\""));
    let smtp = process.address("smtp");
    let mut before = SmtpClient::connect(smtp);
    assert_eq!(before.greeting.text(), "mx.test first words");

    process.write_config(&greeting_config("greeting = \"second words\""));
    process.wait_for("the reload", |l| l.message() == "configuration reloaded");
    // The reload is logged before the roles take it: a new connection shows when it is in
    // force.
    let greeting = wait_for_greeting(smtp, "mx.test second words");
    assert_eq!(greeting, "mx.test second words");
    // The session that started before the reload is still served.
    assert_eq!(before.command("NOOP").code, 250);
    assert_eq!(before.command("QUIT").code, 221);
}
