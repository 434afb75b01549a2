//! The `Reachable` condition of RemoteHosts against a mock Kubernetes API (kube-rs's
//! tower-test pattern): no API server can run on the development machines, so each test
//! scripts the server's answers and asserts the exact calls and status patches. The
//! directory-proxy's answers come from a fixed table (the prober itself is tested against
//! real servers in the directory-proxy crate), or from a real gRPC client of a closed port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use ferrymail_operator::controller::{Context, ReconcileMetrics, Settings, report_reachability};
use ferrymail_operator::render::RenderSettings;
use ferrymail_rpc::RpcError;
use ferrymail_rpc::directory::{
    Answer, AuthRequest, DirectoryService, Expansion, GrpcDirectory, Reachability, RemoteState,
};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

const NS: &str = "mail";
const RH: &str = "/apis/ferrymail.io/v1alpha1/namespaces/mail/remotehosts";
const NOW: &str = "2025-01-01T00:00:00Z";
const EARLIER: &str = "2024-12-31T00:00:00Z";

/// A request as the mock server saw it: method, path, body.
type Seen = (String, String, Value);

/// Serves `replies` (method, path, JSON answer) in order and returns what it saw; a call
/// that is not the next expected one, or one too many, fails the test.
async fn run(
    directory: Arc<dyn DirectoryService>,
    replies: Vec<(&str, String, Value)>,
) -> Vec<Seen> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let replies: Vec<(String, String, Value)> = replies
        .into_iter()
        .map(|(m, p, v)| (m.to_string(), p, v))
        .collect();
    let server = tokio::spawn(async move {
        let mut seen: Vec<Seen> = Vec::new();
        for (method, path, reply) in replies {
            let (request, respond) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("ended before {method} {path}; saw {seen:#?}"));
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            assert_eq!(
                (parts.method.as_str(), parts.uri.path()),
                (method.as_str(), path.as_str()),
                "unexpected call; before it: {seen:#?}"
            );
            seen.push((method, path, body));
            let response = Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
        if let Some((request, _)) = handle.next_request().await {
            panic!(
                "unexpected extra call {} {}",
                request.method(),
                request.uri()
            );
        }
        seen
    });
    let settings = Settings {
        namespace: NS.into(),
        config_map: "ferrymail-rendered".into(),
        secret: "ferrymail-rendered-secrets".into(),
        field_manager: "ferrymail-operator".into(),
        render: RenderSettings::default(),
    };
    let mut ctx = Context::new(
        kube::Client::new(service, NS),
        settings,
        ReconcileMetrics::default(),
    );
    ctx.now = || NOW.to_string();
    report_reachability(&ctx, directory.as_ref())
        .await
        .expect("the report succeeds");
    drop(ctx);
    server.await.expect("mock server")
}

/// The directory-proxy's findings, fixed; it answers no lookups.
struct Findings(Vec<RemoteState>);

#[async_trait]
impl DirectoryService for Findings {
    async fn authenticate(&self, _: AuthRequest) -> Result<Answer, RpcError> {
        Err(RpcError::Internal("not asked here".into()))
    }
    async fn verify_recipient(&self, _: &str, _: &str) -> Result<Answer, RpcError> {
        Err(RpcError::Internal("not asked here".into()))
    }
    async fn vrfy(&self, _: &str, _: &str) -> Result<Expansion, RpcError> {
        Err(RpcError::Internal("not asked here".into()))
    }
    async fn expn(&self, _: &str, _: &str) -> Result<Expansion, RpcError> {
        Err(RpcError::Internal("not asked here".into()))
    }
    async fn is_local_domain(&self, _: &str, _: &str) -> Result<Answer, RpcError> {
        Err(RpcError::Internal("not asked here".into()))
    }
    async fn in_list(&self, _: &str, _: &str) -> Result<Answer, RpcError> {
        Err(RpcError::Internal("not asked here".into()))
    }
    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError> {
        Ok(self.0.clone())
    }
}

fn found(remote: &str, reachability: Reachability) -> RemoteState {
    RemoteState {
        remote: remote.into(),
        reachability,
        checked_at: UNIX_EPOCH + Duration::from_secs(1_735_689_600),
    }
}

fn unreachable(reason: &str) -> Reachability {
    Reachability::Unreachable {
        reason: reason.into(),
    }
}

/// The conditions a reconcile pass wrote at `generation`.
fn rendered_conditions(generation: i64) -> Vec<Value> {
    vec![
        json!({"type": "Ready", "status": "True", "reason": "Applied", "message": "the pods' configuration includes this resource", "lastTransitionTime": EARLIER, "observedGeneration": generation}),
        json!({"type": "Rendered", "status": "True", "reason": "Rendered", "message": "rendered into ConfigMap ferrymail-rendered", "lastTransitionTime": EARLIER, "observedGeneration": generation}),
    ]
}

fn reachable_condition(
    status: &str,
    reason: &str,
    message: &str,
    at: &str,
    generation: i64,
) -> Value {
    json!({"type": "Reachable", "status": status, "reason": reason, "message": message, "lastTransitionTime": at, "observedGeneration": generation})
}

/// A RemoteHost `name` at `generation` with `conditions`.
fn host(name: &str, generation: i64, conditions: Vec<Value>) -> Value {
    json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": "RemoteHost",
        "metadata": {"name": name, "namespace": NS, "uid": format!("u-{name}"), "resourceVersion": "7", "generation": generation},
        "spec": {"address": "127.0.0.1", "protocol": "lmtp", "port": 24},
        "status": {"observedGeneration": generation, "conditions": conditions}})
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": "RemoteHostList", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// `conditions` with `reachable` put in type order (Reachable, Ready, Rendered).
fn with_reachable(generation: i64, reachable: Value) -> Vec<Value> {
    let mut conditions = rendered_conditions(generation);
    conditions.insert(0, reachable);
    conditions
}

const ANSWERED: &str = "the host answered the directory-proxy's last probe or lookup";

#[tokio::test]
async fn a_reachable_host_gets_true_and_unknown_ids_are_ignored() {
    let mailstore = host("mailstore", 3, rendered_conditions(3));
    let directory = Arc::new(Findings(vec![
        found("mailstore", Reachability::Reachable),
        // Remotes written by hand, and ids no RemoteHost can have: nobody to tell.
        found("handwritten", unreachable("refused")),
        found("Not A Name/\u{7f}", Reachability::Reachable),
    ]));
    let seen = run(
        directory,
        vec![
            ("GET", RH.to_string(), list(vec![mailstore.clone()])),
            ("PATCH", format!("{RH}/mailstore/status"), mailstore),
        ],
    )
    .await;
    let expected = with_reachable(3, reachable_condition("True", "Answered", ANSWERED, NOW, 3));
    assert_eq!(seen[1].2, json!({"status": {"conditions": expected}}));
}

#[tokio::test]
async fn an_unreachable_host_gets_false_with_the_reason() {
    let before = reachable_condition("True", "Answered", ANSWERED, EARLIER, 1);
    let relay = host("relay", 1, with_reachable(1, before));
    let reason =
        "127.0.0.1:2525: protocol error: greeting refused: 5.3.2 not accepting connections";
    let seen = run(
        Arc::new(Findings(vec![found("relay", unreachable(reason))])),
        vec![
            ("GET", RH.to_string(), list(vec![relay.clone()])),
            ("PATCH", format!("{RH}/relay/status"), relay),
        ],
    )
    .await;
    let expected = with_reachable(
        1,
        reachable_condition("False", "Unreachable", reason, NOW, 1),
    );
    assert_eq!(seen[1].2, json!({"status": {"conditions": expected}}));
}

#[tokio::test]
async fn a_new_reason_keeps_the_transition_time_and_a_steady_state_writes_nothing() {
    let before = reachable_condition("False", "Unreachable", "connection refused", EARLIER, 1);
    let relay = host("relay", 1, with_reachable(1, before.clone()));
    let seen = run(
        Arc::new(Findings(vec![found(
            "relay",
            unreachable("timed out after 60s"),
        )])),
        vec![
            ("GET", RH.to_string(), list(vec![relay.clone()])),
            ("PATCH", format!("{RH}/relay/status"), relay.clone()),
        ],
    )
    .await;
    let expected = with_reachable(
        1,
        reachable_condition("False", "Unreachable", "timed out after 60s", EARLIER, 1),
    );
    assert_eq!(seen[1].2, json!({"status": {"conditions": expected}}));

    // The same finding again: nothing to write.
    let seen = run(
        Arc::new(Findings(vec![found(
            "relay",
            unreachable("connection refused"),
        )])),
        vec![("GET", RH.to_string(), list(vec![relay]))],
    )
    .await;
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn an_unavailable_directory_proxy_makes_every_host_unknown() {
    // A real gRPC client of a port nothing listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let directory = Arc::new(GrpcDirectory::connect(&endpoint).unwrap());
    let before = reachable_condition("True", "Answered", ANSWERED, EARLIER, 2);
    let relay = host("relay", 2, with_reachable(2, before));
    let seen = run(
        directory,
        vec![
            ("GET", RH.to_string(), list(vec![relay.clone()])),
            ("PATCH", format!("{RH}/relay/status"), relay),
        ],
    )
    .await;
    let conditions = seen[1].2["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 3, "{conditions:?}");
    assert_eq!(&conditions[1..], &rendered_conditions(2)[..]);
    let reachable = &conditions[0];
    assert_eq!(reachable["type"], "Reachable");
    assert_eq!(reachable["status"], "Unknown");
    assert_eq!(reachable["reason"], "DirectoryProxyUnavailable");
    assert_eq!(reachable["lastTransitionTime"], NOW);
    assert_eq!(reachable["observedGeneration"], 2);
    let message = reachable["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot ask the directory-proxy: transport failure"),
        "{message}"
    );
}

#[tokio::test]
async fn a_host_not_probed_is_unknown_and_one_being_deleted_is_left_alone() {
    let fresh = json!({"apiVersion": "ferrymail.io/v1alpha1", "kind": "RemoteHost",
        "metadata": {"name": "fresh", "namespace": NS, "uid": "u-fresh", "resourceVersion": "2", "generation": 1},
        "spec": {"address": "127.0.0.1", "protocol": "smtp"}});
    let mut leaving = host("leaving", 1, rendered_conditions(1));
    leaving["metadata"]["deletionTimestamp"] = json!(NOW);
    leaving["metadata"]["finalizers"] = json!(["ferrymail.io/rendered"]);
    let seen = run(
        Arc::new(Findings(Vec::new())),
        vec![
            ("GET", RH.to_string(), list(vec![fresh.clone(), leaving])),
            ("PATCH", format!("{RH}/fresh/status"), fresh),
        ],
    )
    .await;
    let conditions = &seen[1].2["status"]["conditions"];
    assert_eq!(conditions.as_array().unwrap().len(), 1, "{conditions}");
    assert_eq!(conditions[0]["status"], "Unknown");
    assert_eq!(conditions[0]["reason"], "NotProbed");
    assert_eq!(conditions[0]["lastTransitionTime"], NOW);
}
