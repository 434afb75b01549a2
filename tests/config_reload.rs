//! A running process re-reads its configuration when the files change, keeps the old one
//! when the new one is invalid, and exposes the active hash.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{Ferrymail, http_get};

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
