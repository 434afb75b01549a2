//! The check of an SMTP TLS report against RFC 8460's JSON schema (`tests/data`), by
//! Python's `jsonschema` (installed into `target/test-venv` by `.ci/install-test-deps`), a
//! validator independent of the code that wrote the report.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const CHECK: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
report = json.loads(sys.stdin.buffer.read())
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(report)]
print("\n".join(errors))
sys.exit(1 if errors else 0)
"#;

/// The schema violations of the report `json`, empty when it conforms; panics when the
/// validator is missing.
pub fn tls_report_schema_errors(json: &[u8]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../target/test-venv/bin/python");
    let schema = root.join("data/tlsrpt.schema.json");
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(CHECK)
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}; run .ci/install-test-deps", python.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(json)
            .expect("write the report to the validator");
    }
    let out = child.wait_with_output().expect("the validator's output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "jsonschema is missing: run .ci/install-test-deps\n{stderr}"
    );
    let errors = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() || !errors.is_empty(),
        "the validator failed: {stderr}"
    );
    errors
}
