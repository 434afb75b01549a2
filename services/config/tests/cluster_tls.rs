//! `cluster.tls.*`: gRPC between the roles is mutual TLS unless plain text is asked for,
//! and every way to get it wrong is named.

#![allow(clippy::expect_used)]

use ferrymail_config::model::cluster::ClusterTls;
use ferrymail_config::{Config, ConfigError, load_str};

const GRPC: &str = "[server]\nhostname = \"mx.test\"\n[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n";

/// A certificate and its key, as PEM files kept for the test's life.
struct Pem {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn pem() -> Pem {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["queue-scheduler.ferrymail.internal".into()])
        .expect("parameters")
        .self_signed(&key)
        .expect("a certificate");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    Pem {
        _dir: dir,
        cert: cert_path,
        key: key_path,
    }
}

fn identity(pem: &Pem) -> String {
    format!(
        "[cluster.tls]\ncertificate = \"%{{file:{cert}}}%\"\nprivate-key = \"%{{file:{key}}}%\"\nca = \"%{{file:{cert}}}%\"\n",
        cert = pem.cert.display(),
        key = pem.key.display(),
    )
}

fn loaded(text: &str) -> Config {
    load_str("cluster.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str("cluster.toml", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.0,
    }
}

#[track_caller]
fn assert_error(text: &str, key: &str, message: &str) {
    let errors = errors(text);
    assert!(
        errors
            .iter()
            .any(|e| e.key == key && e.message.contains(message)),
        "expected {key}: {message:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_grpc_listener_needs_an_identity_unless_plain_text_is_asked_for() {
    for key in ["certificate", "private-key", "ca"] {
        assert_error(GRPC, &format!("cluster.tls.{key}"), "required");
    }
    let plain = loaded(&format!("{GRPC}[cluster.tls]\nenable = false\n"));
    assert!(plain.cluster.tls.is_plain_text());
}

#[test]
fn an_identity_is_read_with_the_default_domain() {
    let pem = pem();
    let config = loaded(&format!(
        "{GRPC}{}[cluster.queue]\nendpoint = \"https://queue:50051\"\n",
        identity(&pem)
    ));
    let ClusterTls::Mutual(identity) = &config.cluster.tls else {
        panic!("{:?}", config.cluster.tls);
    };
    assert_eq!(identity.domain, "ferrymail.internal");
}

#[test]
fn a_process_without_grpc_needs_nothing() {
    let config = loaded("[server]\nhostname = \"mx.test\"\n");
    assert!(matches!(config.cluster.tls, ClusterTls::Unused));
}

#[test]
fn an_endpoint_calls_for_an_identity_too() {
    let text =
        "[server]\nhostname = \"mx.test\"\n[cluster.directory]\nendpoint = \"https://dir:50051\"\n";
    assert_error(text, "cluster.tls.certificate", "required");
}

#[test]
fn the_endpoint_scheme_follows_the_tls_setting() {
    let pem = pem();
    assert_error(
        &format!(
            "{GRPC}{}[cluster.queue]\nendpoint = \"http://queue:50051\"\n",
            identity(&pem)
        ),
        "cluster.queue.endpoint",
        "use https://",
    );
    assert_error(
        &format!(
            "{GRPC}[cluster.tls]\nenable = false\n[cluster.directory]\nendpoint = \"https://dir:50051\"\n"
        ),
        "cluster.directory.endpoint",
        "use http://",
    );
    assert_error(
        &format!(
            "{GRPC}[cluster.tls]\nenable = false\n[cluster.directory]\nendpoint = \"dir:50051\"\n"
        ),
        "cluster.directory.endpoint",
        "expected http://host:port",
    );
}

#[test]
fn a_bundle_that_is_not_pem_is_named() {
    let pem = pem();
    let text = format!(
        "{GRPC}[cluster.tls]\ncertificate = \"%{{file:{cert}}}%\"\nprivate-key = \"%{{file:{key}}}%\"\nca = \"not a certificate\"\n",
        cert = pem.cert.display(),
        key = pem.key.display(),
    );
    assert_error(&text, "cluster.tls.ca", "no CERTIFICATE block");
    let swapped = format!(
        "{GRPC}[cluster.tls]\ncertificate = \"%{{file:{key}}}%\"\nprivate-key = \"%{{file:{cert}}}%\"\nca = \"%{{file:{cert}}}%\"\n",
        cert = pem.cert.display(),
        key = pem.key.display(),
    );
    assert_error(
        &swapped,
        "cluster.tls.private-key",
        "invalid PEM private key",
    );
}
