//! Rendering resources to TOML: golden files, determinism, the real configuration loader,
//! and what happens to a resource that does not render.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferrymail_operator::manifests::Manifests;
use ferrymail_operator::render::{self, Kind, RenderSettings, ResourceId, Secrets};
use ferrymail_operator::resources::{Directory, RemoteHost};

/// No resource with fields its type lacks.
fn no_unknown() -> render::UnknownFields {
    render::UnknownFields::new()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/render")
        .join(name)
}

fn seeds() -> Manifests {
    let mut manifests = Manifests::default();
    manifests
        .add_file(&fixture("seeds.yaml"))
        .expect("the fixture parses");
    manifests
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it instead.
fn assert_golden(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("golden file exists");
    assert_eq!(
        actual, expected,
        "{name} differs (UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[test]
fn seeds_render_to_golden_toml() {
    let manifests = seeds();
    assert_eq!(manifests.remotes.len(), 2);
    assert_eq!(
        manifests.directories.len(),
        3,
        "the List item is read, the ConfigMap skipped"
    );
    let outcome = manifests
        .render(&RenderSettings::default())
        .expect("renders");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_golden("seeds.remotes.toml", &outcome.rendered.remotes_toml);
    assert_golden("seeds.directories.toml", &outcome.rendered.directories_toml);
    assert!(
        !outcome.rendered.remotes_toml.contains("relay-credentials"),
        "the Secret's name is not the file"
    );
    assert!(
        outcome.rendered.secret_files.is_empty(),
        "offline, Secret values are not known"
    );
}

#[test]
fn rendering_does_not_depend_on_input_order() {
    let manifests = seeds();
    let settings = RenderSettings::default();
    let forward = manifests.render(&settings).expect("renders").rendered;
    let mut reversed = manifests.clone();
    reversed.remotes.reverse();
    reversed.directories.reverse();
    let backward = reversed.render(&settings).expect("renders").rendered;
    assert_eq!(forward, backward);
    assert_eq!(forward.hash(), backward.hash());
}

fn fetched(password: &[u8]) -> Secrets {
    Secrets::Fetched(BTreeMap::from([(
        "relay-credentials".to_string(),
        BTreeMap::from([("password".to_string(), password.to_vec())]),
    )]))
}

/// The rendered files, mounted as a pod mounts them, load through the real configuration
/// loader together with a main file, and mean what the resources say.
#[test]
fn rendered_files_load_through_the_config_loader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let include = dir.path().join("conf.d");
    std::fs::create_dir(&include).expect("mkdir");
    let settings = RenderSettings {
        secret_dir: include.clone(),
    };
    let manifests = seeds();
    let outcome = render::render(
        &manifests.remotes,
        &manifests.directories,
        &fetched(b"s3cret\n"),
        None,
        &settings,
        &no_unknown(),
    )
    .expect("renders");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    let rendered = &outcome.rendered;
    assert!(!rendered.remotes_toml.contains("s3cret"), "never inlined");
    std::fs::write(include.join(render::REMOTES_FILE), &rendered.remotes_toml).expect("write");
    std::fs::write(
        include.join(render::DIRECTORIES_FILE),
        &rendered.directories_toml,
    )
    .expect("write");
    for (key, value) in &rendered.secret_files {
        std::fs::write(include.join(key), value).expect("write secret file");
    }
    let lists = dir.path().join("vips.txt");
    std::fs::write(&lists, "vip@example.org\n").expect("write list");
    let directories = rendered.directories_toml.replace(
        "/etc/ferrymail/lists/vips.txt",
        &lists.display().to_string(),
    );
    std::fs::write(include.join(render::DIRECTORIES_FILE), directories).expect("write");
    let main = dir.path().join("config.toml");
    std::fs::write(
        &main,
        "[server]\nhostname = \"mx.example.org\"\n\n[session.rcpt]\ndirectory = \"relay\"\n",
    )
    .expect("write main");

    let source = ferrymail_config::ConfigSource::file(&main).with_include_dir(&include);
    let loaded = ferrymail_config::load(&source).unwrap_or_else(|e| panic!("{e}"));
    let config = &loaded.config;
    let lmtp = &config.remotes["lmtp"];
    assert_eq!(lmtp.address, "localhost");
    assert_eq!(lmtp.port, 24);
    assert_eq!(lmtp.timeout, std::time::Duration::from_secs(60));
    assert!(lmtp.allow_invalid_certs && !lmtp.tls_implicit);
    let auth = lmtp.auth.as_ref().expect("auth");
    assert_eq!(auth.username, "relay_server");
    assert_eq!(
        auth.secret.expose(),
        "s3cret",
        "read from the projected file"
    );
    assert_eq!(config.remotes["imap"].port, 143);
    let relay = &config.directories["relay"];
    assert_eq!(relay.address, "localhost", "taken from RemoteHost lmtp");
    assert_eq!(relay.port, 24);
    assert_eq!(relay.domains(), ["example.net"]);
    let lmtp_dir = &config.directories["lmtp"];
    assert_eq!(lmtp_dir.max_connections, 5);
    assert_eq!(lmtp_dir.lists["vips"].values, ["vip@example.org"]);
    assert_eq!(lmtp_dir.lists["blocked_ips"].values.len(), 2);
    assert_eq!(config.directories["imap"].max_rcpt, 5);
    assert!(
        loaded
            .referenced_files
            .iter()
            .any(|f| f.ends_with("remote.lmtp.auth.secret")),
        "the secret file is watched for changes"
    );
}

fn remote(yaml: &str) -> RemoteHost {
    let mut manifests = Manifests::default();
    manifests.add_yaml("test", yaml).expect("parses");
    manifests.remotes.pop().expect("one RemoteHost")
}

const GOOD: &str = "apiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {name: relay}\nspec: {address: relay.example.org, protocol: smtp, timeout: 30s}\n";
// Passes the CRD's pattern but not the loader: a zero timeout is refused.
const BAD: &str = "apiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {name: relay}\nspec: {address: relay.example.org, protocol: smtp, timeout: 0s}\n";

#[test]
fn an_invalid_resource_keeps_its_last_good_rendering() {
    let settings = RenderSettings::default();
    let no_secrets = Secrets::Fetched(BTreeMap::new());
    let good = render::render(
        &[remote(GOOD)],
        &[],
        &no_secrets,
        None,
        &settings,
        &no_unknown(),
    )
    .expect("renders")
    .rendered;
    assert!(good.remotes_toml.contains("timeout = \"30s\""));

    let outcome = render::render(
        &[remote(BAD)],
        &[],
        &no_secrets,
        Some(&good),
        &settings,
        &no_unknown(),
    )
    .expect("renders");
    let id = ResourceId {
        kind: Kind::RemoteHost,
        name: "relay".into(),
    };
    let problem = outcome.problems.get(&id).expect("reported");
    assert!(problem.contains("remote.relay.timeout"), "{problem}");
    assert_eq!(
        outcome.rendered, good,
        "the last good version stays in force"
    );

    let fresh = render::render(
        &[remote(BAD)],
        &[],
        &no_secrets,
        None,
        &settings,
        &no_unknown(),
    )
    .expect("renders");
    assert!(fresh.problems.contains_key(&id));
    assert!(
        !fresh.rendered.remotes_toml.contains("[remote.relay]"),
        "without a last good version, it is left out"
    );
}

#[test]
fn a_missing_secret_is_a_problem_of_the_resource() {
    let yaml = "apiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {name: relay}\nspec:\n  address: relay.example.org\n  protocol: smtp\n  auth: {username: u, secretRef: {name: creds, key: password}}\n";
    let outcome = render::render(
        &[remote(yaml)],
        &[],
        &Secrets::Fetched(BTreeMap::new()),
        None,
        &RenderSettings::default(),
        &no_unknown(),
    )
    .expect("renders");
    let problem = &outcome.problems[&ResourceId {
        kind: Kind::RemoteHost,
        name: "relay".into(),
    }];
    assert_eq!(problem, "Secret \"creds\" does not exist");
}

#[test]
fn a_directory_naming_a_missing_remote_host_is_a_problem() {
    let mut manifests = Manifests::default();
    manifests
        .add_yaml(
            "test",
            "apiVersion: ferrymail.io/v1alpha1\nkind: Directory\nmetadata: {name: d}\nspec: {remoteHostRef: {name: nowhere}}\n",
        )
        .expect("parses");
    let directories: Vec<Directory> = manifests.directories.clone();
    let outcome = manifests
        .render(&RenderSettings::default())
        .expect("renders");
    assert_eq!(directories.len(), 1);
    assert_eq!(
        outcome.problems[&ResourceId {
            kind: Kind::Directory,
            name: "d".into()
        }],
        "RemoteHost \"nowhere\" does not exist"
    );
}

#[test]
fn a_directory_named_remote_is_refused_by_the_loader() {
    let mut manifests = Manifests::default();
    manifests
        .add_yaml(
            "test",
            "apiVersion: ferrymail.io/v1alpha1\nkind: Directory\nmetadata: {name: remote}\nspec: {type: imap, address: imap.example.org}\n",
        )
        .expect("parses");
    let outcome = manifests
        .render(&RenderSettings::default())
        .expect("renders");
    let problem = &outcome.problems[&ResourceId {
        kind: Kind::Directory,
        name: "remote".into(),
    }];
    assert!(problem.contains("reserved"), "{problem}");
}

#[test]
fn deploy_examples_render_and_load() {
    let mut manifests = Manifests::default();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    for file in ["remotehost.yaml", "directory.yaml"] {
        manifests.add_file(&examples.join(file)).expect("parses");
    }
    assert_eq!(
        (manifests.remotes.len(), manifests.directories.len()),
        (2, 2)
    );
    let outcome = manifests
        .render(&RenderSettings::default())
        .expect("renders");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    let config = ferrymail_config::load_documents(
        vec![
            ("config.toml".into(), "[server]\nhostname = \"mx.example.org\"\n[session.rcpt]\ndirectory = \"mailboxes\"\n".into()),
            ("remotes.toml".into(), outcome.rendered.remotes_toml.replace("%{file:/etc/ferrymail/conf.d/remote.relay.auth.secret}%", "x")),
            ("directories.toml".into(), outcome.rendered.directories_toml),
        ],
        &ferrymail_config::ProcessEnvironment,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .0;
    assert_eq!(config.directories["mailboxes"].port, 24);
    assert_eq!(
        config.remotes["relay"]
            .auth
            .as_ref()
            .map(|a| a.username.as_str()),
        Some("ferrymail")
    );
}

#[test]
fn the_probe_interval_renders_and_a_zero_one_is_a_problem() {
    let settings = RenderSettings::default();
    let no_secrets = Secrets::Fetched(BTreeMap::new());
    let with = |interval: &str| {
        remote(&format!(
            "apiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {{name: relay}}\nspec: {{address: relay.example.org, protocol: smtp, probe: {{interval: {interval}}}}}\n"
        ))
    };
    let good = render::render(
        &[with("5m")],
        &[],
        &no_secrets,
        None,
        &settings,
        &no_unknown(),
    )
    .expect("renders");
    assert!(good.problems.is_empty(), "{:?}", good.problems);
    assert!(
        good.rendered
            .remotes_toml
            .contains("[remote.relay.probe]\ninterval = \"5m\""),
        "{}",
        good.rendered.remotes_toml
    );
    // Passes the CRD's pattern but not the loader.
    let zero = render::render(
        &[with("0s")],
        &[],
        &no_secrets,
        None,
        &settings,
        &no_unknown(),
    )
    .expect("renders");
    let problem = &zero.problems[&ResourceId {
        kind: Kind::RemoteHost,
        name: "relay".into(),
    }];
    assert!(problem.contains("remote.relay.probe.interval"), "{problem}");
}

#[test]
fn a_resource_with_an_unknown_field_is_refused_naming_it() {
    let mut manifests = Manifests::default();
    manifests
        .add_yaml(
            "test",
            "apiVersion: ferrymail.io/v1alpha1\nkind: Directory\nmetadata: {name: corp}\nspec:\n  type: lmtp\n  address: lmtp.example.org\n  lookup: {domains: [example.org]}\n---\napiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {name: relay}\nspec: {address: a, protocol: smtp, tls: {implicit: true, verifyCerts: false}}\n",
        )
        .expect("parses");
    let outcome = manifests
        .render(&RenderSettings::default())
        .expect("renders");
    let problem = |kind, name: &str| {
        outcome.problems[&ResourceId {
            kind,
            name: name.into(),
        }]
            .clone()
    };
    assert_eq!(
        problem(Kind::Directory, "corp"),
        "spec.lookup: unknown field"
    );
    assert_eq!(
        problem(Kind::RemoteHost, "relay"),
        "spec.tls.verifyCerts: unknown field"
    );
    assert!(
        !outcome.rendered.directories_toml.contains("corp")
            && !outcome.rendered.remotes_toml.contains("relay"),
        "neither is rendered:\n{}{}",
        outcome.rendered.directories_toml,
        outcome.rendered.remotes_toml
    );
}

#[test]
fn allow_plain_text_renders_for_both_kinds_and_loads() {
    let mut manifests = Manifests::default();
    manifests
        .add_yaml(
            "test",
            "apiVersion: ferrymail.io/v1alpha1\nkind: RemoteHost\nmetadata: {name: relay}\nspec: {address: relay.example.org, protocol: smtp, tls: {implicit: false, allowPlainText: true}}\n---\napiVersion: ferrymail.io/v1alpha1\nkind: Directory\nmetadata: {name: logins}\nspec: {type: imap, address: imap.example.org, tls: {allowPlainText: true}}\n",
        )
        .expect("parses");
    let outcome = render::render(
        &manifests.remotes,
        &manifests.directories,
        &Secrets::Fetched(BTreeMap::new()),
        None,
        &RenderSettings::default(),
        &no_unknown(),
    )
    .expect("renders");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    let rendered = &outcome.rendered;
    let text = format!(
        "[server]\nhostname = \"mx.example.org\"\n{}\n{}",
        rendered.remotes_toml, rendered.directories_toml
    );
    let config = ferrymail_config::load_str("rendered.toml", &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(config.remotes["relay"].allow_plain_text, "{text}");
    assert!(config.directories["logins"].allow_plain_text, "{text}");
}
