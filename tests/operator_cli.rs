//! `ferrymail crd` and `ferrymail operator render`, run as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use ferrymail_e2e::binary;

fn repo(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[test]
fn crd_prints_what_the_chart_ships() {
    let output = Command::new(binary()).arg("crd").output().unwrap();
    assert!(output.status.success());
    let shipped = std::fs::read(repo("charts/ferrymail/files/crds.yaml")).unwrap();
    assert!(output.stdout == shipped, "run `make crds`");
}

#[test]
fn render_writes_the_files_the_operator_would() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(binary())
        .args(["operator", "render", "-f"])
        .arg(repo("services/operator/tests/render/seeds.yaml"))
        .arg("--out-dir")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for (file, golden) in [
        ("remotes.toml", "seeds.remotes.toml"),
        ("directories.toml", "seeds.directories.toml"),
    ] {
        let written = std::fs::read_to_string(out.path().join(file)).unwrap();
        let expected =
            std::fs::read_to_string(repo(&format!("services/operator/tests/render/{golden}")))
                .unwrap();
        assert_eq!(written, expected, "{file}");
    }
}

#[test]
fn render_reports_a_bad_resource_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {name: relay}\nspec: {address: a, protocol: smtp, concurrency: 0}\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["operator", "render", "-f"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RemoteHost/relay: remote.relay.concurrency"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("[remote.relay]"),
        "left out of the output"
    );
}

#[test]
fn render_refuses_a_resource_with_an_unknown_field_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("directory.yaml");
    // `lookup.domains` is the TOML key; the resource's field is `domains`.
    std::fs::write(
        &manifest,
        "apiVersion: ferrymail.io/v1alpha1\nkind: Directory\nmetadata: {name: corp}\nspec:\n  type: lmtp\n  address: lmtp.example.org\n  lookup:\n    domains: [example.org]\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["operator", "render", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Directory/corp: spec.lookup: unknown field"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("[directory.corp]"),
        "left out of the output"
    );
}
