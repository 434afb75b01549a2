//! The reconcile pass against a mock Kubernetes API (kube-rs's tower-test pattern): no API
//! server can run on the development machines, so each test scripts the server's answers
//! and asserts the exact calls the operator makes, in order, with their bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use ferrymail_operator::controller::{Context, ReconcileMetrics, Settings, reconcile_all};
use ferrymail_operator::render::{self, RenderSettings};
use ferrymail_operator::resources::{Directory, RemoteHost};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

const NS: &str = "mail";
const RH: &str = "/apis/ferrymail.io/v1alpha1/namespaces/mail/remotehosts";
const DIR: &str = "/apis/ferrymail.io/v1alpha1/namespaces/mail/directories";
const CM: &str = "/api/v1/namespaces/mail/configmaps/ferrymail-rendered";
const PROJECTION: &str = "/api/v1/namespaces/mail/secrets/ferrymail-rendered-secrets";
const CREDS: &str = "/api/v1/namespaces/mail/secrets/relay-credentials";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/mail/events";
const NOW: &str = "2025-01-01T00:00:00Z";

/// One expected call and the answer to it.
struct Step {
    method: &'static str,
    path: String,
    status: u16,
    reply: Value,
}

fn step(method: &'static str, path: impl Into<String>, status: u16, reply: Value) -> Step {
    Step {
        method,
        path: path.into(),
        status,
        reply,
    }
}

/// A request as the mock server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

/// No resource with fields its type lacks.
fn no_unknown() -> render::UnknownFields {
    render::UnknownFields::new()
}

fn settings() -> Settings {
    Settings {
        namespace: NS.into(),
        config_map: "ferrymail-rendered".into(),
        secret: "ferrymail-rendered-secrets".into(),
        field_manager: "ferrymail-operator".into(),
        render: RenderSettings::default(),
    }
}

/// Runs one pass against a server that answers `steps` in order; returns what it saw and
/// the pass's result. A call that is not the next expected one fails the test.
async fn run_pass(
    steps: Vec<Step>,
) -> (
    Vec<Seen>,
    Result<ferrymail_operator::controller::Summary, String>,
) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for step in steps {
            let Some((request, respond)) = handle.next_request().await else {
                panic!(
                    "the pass ended before {} {}; saw {seen:#?}",
                    step.method, step.path
                );
            };
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let request = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                body,
            };
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                (step.method, step.path.as_str()),
                "unexpected call; before it: {seen:#?}"
            );
            seen.push(request);
            let response = Response::builder()
                .status(step.status)
                .body(Body::from(serde_json::to_vec(&step.reply).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
        if let Some((request, _)) = handle.next_request().await {
            panic!(
                "unexpected extra call {} {}; before it: {seen:#?}",
                request.method(),
                request.uri()
            );
        }
        seen
    });
    let client = kube::Client::new(service, NS);
    let mut ctx = Context::new(client, settings(), ReconcileMetrics::default());
    ctx.now = || NOW.to_string();
    let result = reconcile_all(&ctx).await.map_err(|e| e.to_string());
    drop(ctx);
    let seen = server.await.expect("mock server");
    (seen, result)
}

fn relay(extra_meta: Value, spec: Value, status: Value) -> Value {
    let mut metadata = json!({"name": "relay", "namespace": NS, "uid": "u-relay", "resourceVersion": "7", "generation": 1});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), extra_meta.as_object()) {
        m.extend(extra.clone());
    }
    json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": "RemoteHost", "metadata": metadata, "spec": spec, "status": status})
}

fn relay_spec(address: &str, timeout: &str) -> Value {
    json!({"address": address, "protocol": "smtp", "port": 587, "timeout": timeout,
           "auth": {"username": "mta", "secretRef": {"name": "relay-credentials", "key": "password"}}})
}

fn creds(password: &str) -> Value {
    use base64_free::encode;
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "relay-credentials", "namespace": NS},
           "data": {"password": encode(password.as_bytes())}})
}

/// Base64 without another dependency: the test only needs to write Secret data.
mod base64_free {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// The ConfigMap and projection a previous pass applied for `remotes`.
fn applied(remotes: Vec<Value>, password: &str) -> (Value, Value) {
    let remotes: Vec<RemoteHost> = remotes
        .into_iter()
        .map(|r| serde_json::from_value(r).unwrap())
        .collect();
    let secrets = render::Secrets::Fetched(BTreeMap::from([(
        "relay-credentials".to_string(),
        BTreeMap::from([("password".to_string(), password.as_bytes().to_vec())]),
    )]));
    let directories: Vec<Directory> = Vec::new();
    let outcome = render::render(
        &remotes,
        &directories,
        &secrets,
        None,
        &RenderSettings::default(),
        &no_unknown(),
    )
    .unwrap();
    let r = outcome.rendered;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ferrymail-rendered", "namespace": NS},
        "data": {"remotes.toml": r.remotes_toml, "directories.toml": r.directories_toml, "config-hash": r.hash()}});
    let data: serde_json::Map<String, Value> = r
        .secret_files
        .iter()
        .map(|(k, v)| (k.clone(), json!(base64_free::encode(v))))
        .collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ferrymail-rendered-secrets", "namespace": NS}, "data": data});
    (cm, secret)
}

fn good_status(generation: i64) -> Value {
    json!({"observedGeneration": generation, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Applied", "message": "the pods' configuration includes this resource", "lastTransitionTime": NOW, "observedGeneration": generation},
        {"type": "Rendered", "status": "True", "reason": "Rendered", "message": "rendered into ConfigMap ferrymail-rendered", "lastTransitionTime": NOW, "observedGeneration": generation}
    ]})
}

fn event_reply() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": NS}, "eventTime": NOW})
}

#[tokio::test]
async fn create_adds_finalizers_applies_config_and_reports_status() {
    let remote = relay(
        json!({}),
        relay_spec("smtp.example.org", "30s"),
        Value::Null,
    );
    let directory = json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": "Directory",
        "metadata": {"name": "accounts", "namespace": NS, "uid": "u-dir", "resourceVersion": "3", "generation": 1},
        "spec": {"remoteHostRef": {"name": "relay"}, "domains": ["example.org"]}});
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![remote.clone()])),
        step("GET", DIR, 200, list("Directory", vec![directory.clone()])),
        step("GET", CM, 404, not_found()),
        step("GET", PROJECTION, 404, not_found()),
        step("GET", CREDS, 200, creds("hunter2")),
        step("PATCH", format!("{RH}/relay"), 200, remote.clone()),
        step("PATCH", format!("{DIR}/accounts"), 200, directory.clone()),
        step(
            "PATCH",
            PROJECTION,
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
        step(
            "PATCH",
            CM,
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        ),
        step("PATCH", format!("{RH}/relay/status"), 200, remote.clone()),
        step("POST", EVENTS, 201, event_reply()),
        step("PATCH", format!("{DIR}/accounts/status"), 200, directory),
        step("POST", EVENTS, 201, event_reply()),
    ])
    .await;
    let summary = result.expect("the pass succeeds");
    assert!(summary.applied && summary.invalid.is_empty());

    let finalizer = &seen[5].body;
    assert_eq!(
        finalizer["metadata"]["finalizers"],
        json!(["ferrymail.io/rendered"])
    );
    assert_eq!(
        finalizer["metadata"]["resourceVersion"], "7",
        "guarded against races"
    );

    let projection = &seen[7];
    assert!(projection.query.contains("fieldManager=ferrymail-operator"));
    assert!(
        projection.query.contains("force=true"),
        "{}",
        projection.query
    );
    assert_eq!(
        projection.body["data"]["remote.relay.auth.secret"],
        base64_free::encode(b"hunter2")
    );

    let config_map = &seen[8].body;
    let remotes = config_map["data"]["remotes.toml"].as_str().unwrap();
    assert!(
        remotes.contains("secret = \"%{file:/etc/ferrymail/conf.d/remote.relay.auth.secret}%\""),
        "{remotes}"
    );
    assert!(!remotes.contains("hunter2"), "never inlined");
    let directories = config_map["data"]["directories.toml"].as_str().unwrap();
    assert!(
        directories.contains("[directory.accounts]")
            && directories.contains("address = \"smtp.example.org\"")
    );
    assert_eq!(config_map["data"]["config-hash"], json!(summary.hash));
    assert_eq!(
        config_map["metadata"]["annotations"]["ferrymail.io/config-hash"],
        json!(summary.hash)
    );

    assert_eq!(seen[9].body, json!({"status": good_status(1)}));
    assert_eq!(seen[10].body["reason"], "Rendered");
    assert_eq!(seen[10].body["type"], "Normal");
    assert_eq!(seen[10].body["regarding"]["name"], "relay");
}

#[tokio::test]
async fn an_unchanged_namespace_writes_nothing() {
    let remote = relay(
        json!({"finalizers": ["ferrymail.io/rendered"]}),
        relay_spec("smtp.example.org", "30s"),
        good_status(1),
    );
    let (cm, projection) = applied(vec![remote.clone()], "hunter2");
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![remote])),
        step("GET", DIR, 200, list("Directory", vec![])),
        step("GET", CM, 200, cm),
        step("GET", PROJECTION, 200, projection),
        step("GET", CREDS, 200, creds("hunter2")),
    ])
    .await;
    assert_eq!(seen.len(), 5);
    assert!(!result.expect("succeeds").applied);
}

#[tokio::test]
async fn an_update_reapplies_the_config_map_and_the_status() {
    let old = relay(
        json!({"finalizers": ["ferrymail.io/rendered"]}),
        relay_spec("smtp.example.org", "30s"),
        good_status(1),
    );
    let (cm, projection) = applied(vec![old], "hunter2");
    let updated = relay(
        json!({"finalizers": ["ferrymail.io/rendered"], "generation": 2}),
        relay_spec("smtp2.example.org", "30s"),
        good_status(1),
    );
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![updated.clone()])),
        step("GET", DIR, 200, list("Directory", vec![])),
        step("GET", CM, 200, cm),
        step("GET", PROJECTION, 200, projection),
        step("GET", CREDS, 200, creds("hunter2")),
        // The password did not change: only the ConfigMap is written.
        step(
            "PATCH",
            CM,
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        ),
        step("PATCH", format!("{RH}/relay/status"), 200, updated),
    ])
    .await;
    assert!(result.expect("succeeds").applied);
    let remotes = seen[5].body["data"]["remotes.toml"].as_str().unwrap();
    assert!(remotes.contains("smtp2.example.org"), "{remotes}");
    assert_eq!(
        seen[6].body,
        json!({"status": good_status(2)}),
        "no event: it stayed valid"
    );
}

#[tokio::test]
async fn a_bad_resource_is_reported_and_the_last_good_config_stays() {
    let good = relay(
        json!({"finalizers": ["ferrymail.io/rendered"]}),
        relay_spec("smtp.example.org", "30s"),
        good_status(1),
    );
    let (cm, projection) = applied(vec![good], "hunter2");
    // "0s" matches the CRD's duration pattern, but the configuration refuses a zero timeout.
    let bad = relay(
        json!({"finalizers": ["ferrymail.io/rendered"], "generation": 2}),
        relay_spec("smtp.example.org", "0s"),
        good_status(1),
    );
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![bad.clone()])),
        step("GET", DIR, 200, list("Directory", vec![])),
        step("GET", CM, 200, cm),
        step("GET", PROJECTION, 200, projection),
        step("GET", CREDS, 200, creds("hunter2")),
        // No ConfigMap or Secret write: the last good rendering is kept as it is.
        step("PATCH", format!("{RH}/relay/status"), 200, bad),
        step("POST", EVENTS, 201, event_reply()),
    ])
    .await;
    let summary = result.expect("the pass itself succeeds");
    assert!(!summary.applied);
    assert_eq!(summary.invalid, ["RemoteHost/relay"]);
    let status = &seen[5].body["status"];
    assert_eq!(status["observedGeneration"], 2);
    let rendered = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Rendered")
        .unwrap();
    assert_eq!(rendered["status"], "False");
    assert_eq!(rendered["reason"], "Invalid");
    assert!(
        rendered["message"]
            .as_str()
            .unwrap()
            .contains("remote.relay.timeout"),
        "{rendered}"
    );
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("last good version stays")
    );
    assert_eq!(seen[6].body["type"], "Warning");
    assert_eq!(seen[6].body["reason"], "Invalid");
}

#[tokio::test]
async fn a_resource_with_an_unknown_field_is_reported_and_not_rendered() {
    // What the API server serves when the CRD keeps unknown fields (an older CRD, or
    // x-kubernetes-preserve-unknown-fields): `lookup` is not a field, `domains` is.
    let directory = json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": "Directory",
        "metadata": {"name": "corp", "namespace": NS, "uid": "u-dir", "resourceVersion": "3", "generation": 1,
                     "finalizers": ["ferrymail.io/rendered"]},
        "spec": {"type": "lmtp", "address": "lmtp.example.org", "lookup": {"domains": ["example.org"]}}});
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![])),
        step("GET", DIR, 200, list("Directory", vec![directory.clone()])),
        step("GET", CM, 404, not_found()),
        step("GET", PROJECTION, 404, not_found()),
        step(
            "PATCH",
            PROJECTION,
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
        step(
            "PATCH",
            CM,
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        ),
        step("PATCH", format!("{DIR}/corp/status"), 200, directory),
        step("POST", EVENTS, 201, event_reply()),
    ])
    .await;
    let summary = result.expect("the pass itself succeeds");
    assert_eq!(summary.invalid, ["Directory/corp"]);
    let directories = seen[5].body["data"]["directories.toml"].as_str().unwrap();
    assert!(!directories.contains("corp"), "not rendered: {directories}");
    let rendered = seen[6].body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Rendered")
        .unwrap()
        .clone();
    assert_eq!(rendered["status"], "False");
    assert_eq!(rendered["reason"], "Invalid");
    assert_eq!(rendered["message"], "spec.lookup: unknown field");
    assert_eq!(seen[7].body["type"], "Warning");
    assert_eq!(seen[7].body["note"], "spec.lookup: unknown field");
}

#[tokio::test]
async fn a_changed_secret_updates_only_the_projection() {
    let remote = relay(
        json!({"finalizers": ["ferrymail.io/rendered"]}),
        relay_spec("smtp.example.org", "30s"),
        good_status(1),
    );
    let (cm, projection) = applied(vec![remote.clone()], "hunter2");
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![remote])),
        step("GET", DIR, 200, list("Directory", vec![])),
        step("GET", CM, 200, cm),
        step("GET", PROJECTION, 200, projection),
        step("GET", CREDS, 200, creds("correct horse")),
        step(
            "PATCH",
            PROJECTION,
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
    ])
    .await;
    assert!(result.expect("succeeds").applied);
    assert_eq!(
        seen[5].body["data"]["remote.relay.auth.secret"],
        base64_free::encode(b"correct horse")
    );
}

#[tokio::test]
async fn deletion_renders_the_resource_out_then_releases_it() {
    let live = relay(
        json!({"finalizers": ["ferrymail.io/rendered"]}),
        relay_spec("smtp.example.org", "30s"),
        good_status(1),
    );
    let (cm, projection) = applied(vec![live], "hunter2");
    let deleting = relay(
        json!({"finalizers": ["example.com/other", "ferrymail.io/rendered"], "deletionTimestamp": NOW}),
        relay_spec("smtp.example.org", "30s"),
        good_status(1),
    );
    let (seen, result) = run_pass(vec![
        step("GET", RH, 200, list("RemoteHost", vec![deleting.clone()])),
        step("GET", DIR, 200, list("Directory", vec![])),
        step("GET", CM, 200, cm),
        step("GET", PROJECTION, 200, projection),
        // Its Secret is not read: it is no longer rendered.
        step(
            "PATCH",
            PROJECTION,
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
        step(
            "PATCH",
            CM,
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        ),
        step("PATCH", format!("{RH}/relay"), 200, deleting),
    ])
    .await;
    result.expect("succeeds");
    assert_eq!(
        seen[4].body["data"],
        json!({}),
        "its password file is removed"
    );
    let remotes = seen[5].body["data"]["remotes.toml"].as_str().unwrap();
    assert!(!remotes.contains("relay"), "{remotes}");
    assert_eq!(
        seen[6].body["metadata"]["finalizers"],
        json!(["example.com/other"]),
        "only our finalizer is removed, after the config no longer has the resource"
    );
}

#[tokio::test]
async fn an_api_error_fails_the_pass_and_is_counted() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let (_, respond) = handle.next_request().await.expect("a list call");
        respond.send_response(
            Response::builder()
                .status(500)
                .body(Body::from(serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is down", "reason": "InternalError", "code": 500})).unwrap()))
                .unwrap(),
        );
    });
    let metrics = ReconcileMetrics::default();
    let ctx = Context::new(kube::Client::new(service, NS), settings(), metrics.clone());
    let error = reconcile_all(&ctx).await.expect_err("the pass fails");
    assert!(error.to_string().contains("etcd is down"), "{error}");
    assert_eq!(metrics.count("failure"), 1);
    assert_eq!(metrics.count("success"), 0);
    server.await.expect("server");
}
