//! The CRDs generated from the Rust types: their shape, their validation, and the copies in
//! the chart and deploy/ (regenerate those with `make crds`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ferrymail_operator::crd;
use serde_json::Value;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The copies of `ferrymail crd` shipped with the chart and with deploy/.
const COPIES: &[&str] = &[
    "charts/ferrymail/files/crds.yaml",
    "deploy/kustomize/base/crds.yaml",
];

#[test]
fn shipped_copies_are_identical_to_the_generated_crds() {
    let generated = crd::yaml().expect("CRDs serialize");
    for copy in COPIES {
        let path = repo_file(copy);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &generated).expect("write copy");
            continue;
        }
        let shipped = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{copy}: {e} (run `make crds`)"));
        assert!(
            shipped == generated,
            "{copy} is stale: run `make crds` to regenerate it"
        );
    }
}

fn definition(kind: &str) -> Value {
    crd::definitions()
        .into_iter()
        .map(|d| serde_json::to_value(d).expect("serializes"))
        .find(|d| d["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn spec_schema(kind: &str) -> Value {
    definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        .clone()
}

#[test]
fn names_scope_and_version() {
    for (kind, plural, short) in [
        ("RemoteHost", "remotehosts", "rh"),
        ("Directory", "directories", "dir"),
    ] {
        let d = definition(kind);
        assert_eq!(d["metadata"]["name"], format!("{plural}.ferrymail.io"));
        assert_eq!(d["spec"]["group"], "ferrymail.io");
        assert_eq!(d["spec"]["scope"], "Namespaced");
        assert_eq!(d["spec"]["names"]["shortNames"][0], short);
        let version = &d["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(columns.contains(&"Ready"), "{columns:?}");
        assert_eq!(
            d["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "helm uninstall must not delete every resource with the CRD"
        );
    }
    let columns = &definition("RemoteHost")["spec"]["versions"][0]["additionalPrinterColumns"];
    let names: Vec<&str> = columns
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for expected in ["Protocol", "Address", "Port", "Lookup", "Ready"] {
        assert!(names.contains(&expected), "{names:?}");
    }
}

/// Every key of `remote.<id>` (seed 002) has a camelCase field.
#[test]
fn remote_host_has_every_remote_key() {
    let spec = spec_schema("RemoteHost");
    let p = &spec["properties"];
    for key in [
        "address",
        "port",
        "protocol",
        "concurrency",
        "timeout",
        "lookup",
    ] {
        assert!(p[key].is_object(), "missing {key}");
    }
    assert!(p["tls"]["properties"]["implicit"].is_object());
    assert!(p["tls"]["properties"]["allowInvalidCerts"].is_object());
    assert!(p["tls"]["properties"]["allowPlainText"].is_object());
    assert!(p["auth"]["properties"]["username"].is_object());
    let secret_ref = &p["auth"]["properties"]["secretRef"]["properties"];
    assert!(secret_ref["name"].is_object() && secret_ref["key"].is_object());
    assert!(
        p["auth"]["properties"]["secret"].is_null(),
        "no inline password"
    );
    assert!(p["limits"]["properties"]["errors"].is_object());
    assert!(p["limits"]["properties"]["requests"].is_object());
    assert!(p["cache"]["properties"]["entries"].is_object());
    let ttl = &p["cache"]["properties"]["ttl"]["properties"];
    assert!(ttl["positive"].is_object() && ttl["negative"].is_object());
    assert!(p["probe"]["properties"]["interval"].is_object());
    let required: Vec<&str> = spec["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["address", "protocol"]);
}

/// Every key of `directory.<name>` (seeds 000/001) has a camelCase field.
#[test]
fn directory_has_every_directory_key() {
    let spec = spec_schema("Directory");
    let p = &spec["properties"];
    for key in [
        "type",
        "address",
        "port",
        "timeout",
        "domains",
        "lookups",
        "remoteHostRef",
    ] {
        assert!(p[key].is_object(), "missing {key}");
    }
    assert!(p["tls"]["properties"]["implicit"].is_object());
    assert!(p["tls"]["properties"]["allowInvalidCerts"].is_object());
    assert!(p["tls"]["properties"]["allowPlainText"].is_object());
    assert!(p["limits"]["properties"]["rcpt"].is_object());
    assert!(p["limits"]["properties"]["authErrors"].is_object());
    assert!(p["pool"]["properties"]["maxConnections"].is_object());
    assert!(p["cache"]["properties"]["ttl"]["properties"]["positive"].is_object());
}

#[test]
fn static_validation_is_in_the_schema() {
    let remote = spec_schema("RemoteHost");
    let p = &remote["properties"];
    assert_eq!(p["port"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(p["port"]["maximum"].as_f64(), Some(65535.0));
    let protocols: Vec<&str> = p["protocol"]["enum"]
        .as_array()
        .expect("protocol is an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(protocols, ["smtp", "lmtp", "imap"]);
    assert_eq!(p["timeout"]["pattern"], "^[0-9]+(ms|s|m|h|d|w)$");
    let rules = remote["x-kubernetes-validations"].to_string();
    assert!(rules.contains("self.protocol != 'imap'"), "{rules}");
    let directory = spec_schema("Directory");
    let rules = directory["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("has(self.address) != has(self.remoteHostRef)"),
        "{rules}"
    );
    let types = directory["properties"]["type"]["enum"].to_string();
    assert_eq!(types, r#"["imap","smtp","lmtp"]"#);
}

/// Kubernetes accepts only structural schemas: every property has a type, none uses
/// anyOf/oneOf with types, and nullable is spelled as `nullable`.
#[test]
fn schemas_are_structural() {
    fn walk(path: &str, schema: &Value, problems: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        if !object.contains_key("type") && !object.contains_key("x-kubernetes-int-or-string") {
            problems.push(format!("{path}: no type"));
        }
        if object["type"].is_array() {
            problems.push(format!("{path}: type is a list"));
        }
        for key in ["anyOf", "oneOf", "$ref", "allOf"] {
            if object.contains_key(key) {
                problems.push(format!("{path}: uses {key}"));
            }
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                walk(&format!("{path}.{name}"), child, problems);
            }
        }
        if let Some(items) = object.get("items") {
            walk(&format!("{path}[]"), items, problems);
        }
        if let Some(additional) = object.get("additionalProperties") {
            walk(&format!("{path}{{}}"), additional, problems);
        }
    }
    for kind in ["RemoteHost", "Directory"] {
        let d = definition(kind);
        let mut problems = Vec::new();
        walk(
            kind,
            &d["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
