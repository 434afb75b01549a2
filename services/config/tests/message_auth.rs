//! `auth.*`, `signature.<id>` and `resolver.*`: good settings are read as written, and every
//! bad one is refused with its file, line and key path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use ferrymail_config::model::message_auth::{SealSignature, SignatureList, VerifyMode};
use ferrymail_config::model::resolver::{NameServerProtocol, ResolverType};
use ferrymail_config::model::signature::{CanonicalizationMode, SignatureAlgorithm};
use ferrymail_config::{Config, ConfigError, load_str};

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

fn load(text: &str) -> Result<Config, Vec<ConfigError>> {
    load_str("auth.toml", &format!("{BASE}{text}")).map_err(|e| e.0)
}

/// A PEM key file of the kind rcgen generates for `algorithm`, kept for the test's life.
fn key_file(algorithm: &'static rcgen::SignatureAlgorithm) -> tempfile::NamedTempFile {
    let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(key.serialize_pem().as_bytes()).unwrap();
    file
}

#[track_caller]
fn assert_error(text: &str, key: &str, at: &str, message: &str) {
    let errors = load(text)
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{text}"));
    let line = BASE.lines().count()
        + 1
        + text
            .lines()
            .position(|l| l.contains(at))
            .unwrap_or_else(|| panic!("{at:?} not in text"));
    assert!(
        errors.iter().any(|e| e.file == "auth.toml"
            && e.key == key
            && e.line == line
            && e.message.contains(message)),
        "expected {key} at line {line} containing {message:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn defaults_verify_relaxed_with_the_system_resolver() {
    let config = load("").unwrap();
    let auth = &config.auth;
    for rule in [
        &auth.spf_ehlo,
        &auth.spf_mail_from,
        &auth.dkim_verify,
        &auth.arc_verify,
        &auth.dmarc_verify,
    ] {
        assert_eq!(rule.0.otherwise, VerifyMode::Relaxed);
        assert!(rule.0.branches.is_empty());
    }
    assert!(auth.dkim_strict);
    assert_eq!(auth.dkim_sign, None);
    assert_eq!(
        auth.arc_seal.0.otherwise,
        SealSignature(None),
        "sealing is off"
    );
    assert!(auth.arc_seal.0.branches.is_empty());
    assert_eq!(config.resolver.kind, ResolverType::System);
    assert_eq!(config.resolver.attempts, 2);
    assert_eq!(config.resolver.timeout.as_secs(), 5);
}

#[test]
fn a_full_configuration_is_read_as_written() {
    let ed = key_file(&rcgen::PKCS_ED25519);
    let text = format!(
        r#"
[auth.spf.verify]
ehlo = "disable"
mail-from = "strict"
[auth.dkim]
verify = "strict"
sign = ["ed"]
[auth.dmarc]
verify = "strict"
[signature.ed]
private-key = "%{{file:{}}}%"
domain = "example.org"
selector = "s1"
algorithm = "ed25519-sha256"
canonicalization = "simple/relaxed"
expire = "10d"
[resolver]
type = "custom"
custom = ["udp://127.0.0.1:5353", "tcp://[::1]:53", "192.0.2.1"]
timeout = "2s"
"#,
        ed.path().display()
    );
    let config = load(&text).unwrap();
    assert_eq!(config.auth.spf_ehlo.0.otherwise, VerifyMode::Disable);
    assert_eq!(config.auth.dmarc_verify.0.otherwise, VerifyMode::Strict);
    let sign = config.auth.dkim_sign.unwrap();
    assert_eq!(sign.0.otherwise, SignatureList(vec!["ed".into()]));
    let signature = &config.signatures["ed"];
    assert_eq!(signature.algorithm, SignatureAlgorithm::Ed25519Sha256);
    assert_eq!(
        signature.canonicalization.header,
        CanonicalizationMode::Simple
    );
    assert_eq!(
        signature.headers,
        ["From", "To", "Date", "Subject", "Message-ID"]
    );
    let servers = &config.resolver.custom;
    assert_eq!(servers.len(), 3);
    assert_eq!(servers[1].protocol, NameServerProtocol::Tcp);
    assert_eq!(servers[2].address.port(), 53);
}

#[test]
fn sign_accepts_a_rule_list_and_false() {
    let ed = key_file(&rcgen::PKCS_ED25519);
    let text = format!(
        r#"
[directory.corp]
type = "lmtp"
address = "127.0.0.1"
lookup.senders = ["a@example.org"]
[auth.dkim]
sign = [{{ if = "sender", in-list = "corp/senders", then = ["ed"] }}, {{ else = false }}]
[signature.ed]
private-key = "%{{file:{}}}%"
domain = "example.org"
selector = "s1"
algorithm = "ed25519-sha256"
"#,
        ed.path().display()
    );
    let sign = load(&text).unwrap().auth.dkim_sign.unwrap();
    assert_eq!(sign.0.branches[0].then, SignatureList(vec!["ed".into()]));
    assert_eq!(sign.0.otherwise, SignatureList::default());
}

#[test]
fn verify_mode_of_the_wrong_type() {
    assert_error(
        "[auth.dkim]\nverify = true\n",
        "auth.dkim.verify",
        "verify",
        "expected a string, found a boolean",
    );
}

#[test]
fn unknown_verify_mode() {
    assert_error(
        "[auth.dmarc]\nverify = \"enforce\"\n",
        "auth.dmarc.verify",
        "verify",
        "unknown value \"enforce\", expected \"relaxed\" | \"strict\" | \"disable\"",
    );
}

#[test]
fn verify_rule_with_a_variable_not_known_yet() {
    let text = "[directory.corp]\ntype = \"lmtp\"\naddress = \"h\"\nlookup.x = [\"a\"]\n[auth.spf.verify]\nehlo = [{ if = \"sender\", in-list = \"corp/x\", then = \"strict\" }, { else = \"relaxed\" }]\n";
    assert_error(
        text,
        "auth.spf.verify.ehlo",
        "ehlo =",
        "variable \"sender\" is not known at the ehlo stage",
    );
}

#[test]
fn unknown_key_under_auth() {
    assert_error(
        "[auth.dkim]\nverfy = \"relaxed\"\n",
        "auth.dkim.verfy",
        "verfy",
        "unknown key (did you mean `verify`?)",
    );
}

#[test]
fn sign_naming_a_missing_signature() {
    assert_error(
        "[auth.dkim]\nsign = [\"rsa\"]\n",
        "auth.dkim.sign",
        "sign =",
        "no signature named \"rsa\" (configured: none)",
    );
}

#[test]
fn sign_of_the_wrong_type() {
    assert_error(
        "[auth.dkim]\nsign = 3\n",
        "auth.dkim.sign",
        "sign =",
        "expected list of signature ids, or false, found an integer",
    );
}

#[test]
fn signature_key_file_that_does_not_exist() {
    let text = "[signature.a]\nprivate-key = \"%{file:/nonexistent/dkim.key}%\"\ndomain = \"example.org\"\nselector = \"s\"\nalgorithm = \"rsa-sha256\"\n";
    assert_error(
        text,
        "signature.a.private-key",
        "private-key",
        "cannot read /nonexistent/dkim.key",
    );
}

#[test]
fn signature_key_that_is_not_a_key() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"this is not PEM\n").unwrap();
    let text = format!(
        "[signature.a]\nprivate-key = \"%{{file:{}}}%\"\ndomain = \"example.org\"\nselector = \"s\"\nalgorithm = \"rsa-sha256\"\n",
        file.path().display()
    );
    assert_error(
        &text,
        "signature.a.private-key",
        "private-key",
        "invalid PEM private key",
    );
}

#[test]
fn signature_key_of_another_algorithm() {
    let ed = key_file(&rcgen::PKCS_ED25519);
    let text = format!(
        "[signature.a]\nprivate-key = \"%{{file:{}}}%\"\ndomain = \"example.org\"\nselector = \"s\"\nalgorithm = \"rsa-sha256\"\n",
        ed.path().display()
    );
    assert_error(
        &text,
        "signature.a.private-key",
        "private-key",
        "the key is for ed25519-sha256 but algorithm is \"rsa-sha256\"",
    );
}

#[test]
fn signature_key_that_is_neither_rsa_nor_ed25519() {
    let ec = key_file(&rcgen::PKCS_ECDSA_P256_SHA256);
    let text = format!(
        "[signature.a]\nprivate-key = \"%{{file:{}}}%\"\ndomain = \"example.org\"\nselector = \"s\"\nalgorithm = \"ed25519-sha256\"\n",
        ec.path().display()
    );
    assert_error(
        &text,
        "signature.a.private-key",
        "private-key",
        "not an RSA or Ed25519 private key",
    );
}

#[test]
fn unknown_signature_algorithm() {
    let text = "[signature.a]\nprivate-key = \"x\"\ndomain = \"example.org\"\nselector = \"s\"\nalgorithm = \"rsa-sha1\"\n";
    assert_error(
        text,
        "signature.a.algorithm",
        "algorithm",
        "unknown value \"rsa-sha1\", expected \"rsa-sha256\" | \"ed25519-sha256\"",
    );
}

#[test]
fn unknown_canonicalization() {
    let text = "[signature.a]\nprivate-key = \"x\"\ndomain = \"d\"\nselector = \"s\"\nalgorithm = \"rsa-sha256\"\ncanonicalization = \"loose/simple\"\n";
    assert_error(
        text,
        "signature.a.canonicalization",
        "canonicalization",
        "unknown canonicalization \"loose/simple\"",
    );
}

#[test]
fn signature_without_from_in_its_headers() {
    let text = "[signature.a]\nprivate-key = \"x\"\ndomain = \"d\"\nselector = \"s\"\nalgorithm = \"rsa-sha256\"\nheaders = [\"Subject\"]\n";
    assert_error(
        text,
        "signature.a.headers",
        "headers",
        "must include \"From\"",
    );
}

#[test]
fn signature_missing_its_domain() {
    let text = "[signature.a]\nprivate-key = \"x\"\nselector = \"s\"\nalgorithm = \"rsa-sha256\"\n";
    assert_error(
        text,
        "signature.a.domain",
        "[signature.a]",
        "missing required key",
    );
}

#[test]
fn resolver_url_with_an_unsupported_protocol() {
    assert_error(
        "[resolver]\ntype = \"custom\"\ncustom = [\"https://192.0.2.1/dns-query\"]\n",
        "resolver.custom",
        "custom =",
        "unsupported protocol \"https\"",
    );
}

#[test]
fn resolver_url_with_a_host_name() {
    assert_error(
        "[resolver]\ntype = \"custom\"\ncustom = [\"udp://ns1.example.org:53\"]\n",
        "resolver.custom",
        "custom =",
        "invalid name server \"udp://ns1.example.org:53\"",
    );
}

#[test]
fn custom_resolver_without_servers() {
    assert_error(
        "[resolver]\ntype = \"custom\"\n",
        "resolver.custom",
        "[resolver]",
        "needs at least one name server",
    );
}

#[test]
fn servers_given_to_another_resolver_type() {
    assert_error(
        "[resolver]\ntype = \"google\"\ncustom = [\"192.0.2.1\"]\n",
        "resolver.custom",
        "custom =",
        "used only with type = \"custom\"",
    );
}

#[test]
fn unknown_resolver_type() {
    assert_error(
        "[resolver]\ntype = \"opendns\"\n",
        "resolver.type",
        "type =",
        "unknown value \"opendns\"",
    );
}

#[test]
fn resolver_timeout_of_the_wrong_type() {
    assert_error(
        "[resolver]\ntimeout = 5\n",
        "resolver.timeout",
        "timeout",
        "expected",
    );
}

#[test]
fn zero_resolver_attempts() {
    assert_error(
        "[resolver]\nattempts = 0\n",
        "resolver.attempts",
        "attempts",
        "must be at least 1",
    );
}

#[test]
fn seal_names_a_signature_or_a_rule_list_choosing_one() {
    let ed = key_file(&rcgen::PKCS_ED25519);
    let signature = format!(
        "[signature.ed]\nprivate-key = \"%{{file:{}}}%\"\ndomain = \"example.org\"\nselector = \"arc\"\nalgorithm = \"ed25519-sha256\"\n",
        ed.path().display()
    );
    let plain = load(&format!("[auth.arc]\nseal = \"ed\"\n{signature}")).unwrap();
    assert_eq!(
        plain.auth.arc_seal.0.otherwise,
        SealSignature(Some("ed".into()))
    );
    let rules = format!(
        "[directory.corp]\ntype = \"lmtp\"\naddress = \"h\"\nlookup.lists = [\"a@example.org\"]\n[auth.arc]\nseal = [{{ if = \"sender\", in-list = \"corp/lists\", then = \"ed\" }}, {{ else = false }}]\n{signature}"
    );
    let seal = load(&rules).unwrap().auth.arc_seal;
    assert_eq!(seal.0.branches[0].then, SealSignature(Some("ed".into())));
    assert_eq!(seal.0.otherwise, SealSignature(None));
}

#[test]
fn seal_naming_a_missing_signature() {
    assert_error(
        "[auth.arc]\nseal = \"rsa\"\n",
        "auth.arc.seal",
        "seal =",
        "no signature named \"rsa\" (configured: none)",
    );
}

#[test]
fn seal_naming_a_missing_signature_in_a_rule() {
    assert_error(
        "[directory.corp]\ntype = \"lmtp\"\naddress = \"h\"\nlookup.x = [\"a\"]\n[auth.arc]\nseal = [{ if = \"sender\", in-list = \"corp/x\", then = \"arc\" }, { else = false }]\n",
        "auth.arc.seal",
        "seal =",
        "no signature named \"arc\"",
    );
}

#[test]
fn seal_of_the_wrong_type() {
    // One seal per hop: a list of ids is read as a rule list, and refused as one.
    for (value, message) in [
        ("true", "expected a signature id, or false, found a boolean"),
        ("3", "expected a signature id, or false, found an integer"),
        ("[\"a\", \"b\"]", "expected a rule table"),
    ] {
        assert_error(
            &format!("[auth.arc]\nseal = {value}\n"),
            "auth.arc.seal",
            "seal =",
            message,
        );
    }
}

#[test]
fn seal_of_an_empty_id() {
    assert_error(
        "[auth.arc]\nseal = \"\"\n",
        "auth.arc.seal",
        "seal =",
        "expected a signature id or false, found an empty string",
    );
}

#[test]
fn seal_rule_with_a_variable_not_known_at_data() {
    assert_error(
        "[directory.corp]\ntype = \"lmtp\"\naddress = \"h\"\nlookup.x = [\"a\"]\n[auth.arc]\nseal = [{ if = \"rcpt\", in-list = \"corp/x\", then = false }, { else = false }]\n",
        "auth.arc.seal",
        "seal =",
        "variable \"rcpt\" is not known at the data stage",
    );
}
