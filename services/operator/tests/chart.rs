//! The Helm chart, rendered by the real `helm` (installed by `make test-deps`) with its default
//! values and each preset in charts/ferrymail/ci/, parsed into k8s-openapi types and checked.
//!
//! No API server can run on the development machines, so `kubectl apply --dry-run=client`
//! (which needs one for discovery) cannot validate the output here. Instead every object of
//! a known kind is read into its k8s-openapi type and written back: a misspelt or misplaced
//! field, which the typed read drops, makes the two differ. The public CI's kind job
//! (.github/workflows/kubernetes.yml) applies the chart to a real cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferrymail_config::model::cluster::ClusterTls;
use ferrymail_config::model::store::StoreBackend;
use ferrymail_operator::manifests;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/ferrymail")
}

fn helm(args: &[&str]) -> std::process::Output {
    Command::new("helm")
        .args(args)
        .output()
        .expect("helm is installed (`make test-deps` or .ci/install-helm installs it)")
}

/// `helm template` of `chart` with the values files and `--set`s given.
fn template_of(chart: &Path, values: &[&str], sets: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart.display().to_string();
    let mut args = vec!["template", "mail", chart.as_str(), "--namespace", "mail"];
    let values: Vec<String> = values
        .iter()
        .map(|v| chart_dir().join(v).display().to_string())
        .collect();
    for v in &values {
        args.extend(["-f", v.as_str()]);
    }
    for s in sets {
        args.extend(["--set", s]);
    }
    let output = helm(&args);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    manifests::documents(&String::from_utf8_lossy(&output.stdout)).map_err(|e| e.to_string())
}

fn template(values: &[&str], sets: &[&str]) -> Vec<Value> {
    template_of(&chart_dir(), values, sets).unwrap_or_else(|e| panic!("helm template: {e}"))
}

const PRESETS: &[&str] = &[
    "ci/hpa-values.yaml",
    "ci/keda-values.yaml",
    "ci/proxy-values.yaml",
    "ci/cert-manager-values.yaml",
    "ci/foundationdb-values.yaml",
    "ci/postgresql-values.yaml",
];

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(objects, kind)
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Reads `value` as `T` and checks nothing was dropped on the way.
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", value["kind"], value["metadata"]["name"]));
    let back = serde_json::to_value(&object).unwrap();
    let mut dropped = Vec::new();
    missing_fields("", value, &back, &mut dropped);
    assert!(
        dropped.is_empty(),
        "{} {}: fields unknown to Kubernetes: {dropped:?}",
        value["kind"],
        value["metadata"]["name"]
    );
    object
}

/// Paths present (and non-null) in `original` but absent from `back`.
fn missing_fields(path: &str, original: &Value, back: &Value, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = format!("{path}.{key}");
                match b.get(key) {
                    None if !value.is_null() => out.push(child),
                    None => {}
                    Some(other) => missing_fields(&child, value, other, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                missing_fields(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ => {}
    }
}

/// Reads every object of a kind k8s-openapi knows; returns the kinds it did not know.
fn check_known_kinds(objects: &[Value]) -> BTreeSet<String> {
    let mut unknown = BTreeSet::new();
    for object in objects {
        match object["kind"].as_str().unwrap_or("") {
            "Deployment" => drop(typed::<Deployment>(object)),
            "StatefulSet" => drop(typed::<StatefulSet>(object)),
            "Service" => drop(typed::<Service>(object)),
            "ConfigMap" => drop(typed::<ConfigMap>(object)),
            "Secret" => drop(typed::<Secret>(object)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
            "Role" => drop(typed::<Role>(object)),
            "RoleBinding" => drop(typed::<RoleBinding>(object)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
            "HorizontalPodAutoscaler" => drop(typed::<HorizontalPodAutoscaler>(object)),
            "NetworkPolicy" => drop(typed::<NetworkPolicy>(object)),
            "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(object)),
            other => {
                unknown.insert(other.to_string());
            }
        }
    }
    unknown
}

/// A role's workload, a Deployment or a StatefulSet: its name, pod labels and pod.
struct Workload {
    name: String,
    labels: BTreeMap<String, String>,
    pod: PodSpec,
}

fn workloads(objects: &[Value]) -> Vec<Workload> {
    let deployments = of_kind(objects, "Deployment").map(|o| {
        let deployment: Deployment = typed(o);
        (deployment.metadata.name, deployment.spec.unwrap().template)
    });
    let stateful_sets = of_kind(objects, "StatefulSet").map(|o| {
        let set: StatefulSet = typed(o);
        (set.metadata.name, set.spec.unwrap().template)
    });
    deployments
        .chain(stateful_sets)
        .map(|(name, template)| Workload {
            name: name.unwrap(),
            labels: template.metadata.and_then(|m| m.labels).unwrap_or_default(),
            pod: template.spec.unwrap(),
        })
        .collect()
}

/// The workload of `role` in release `mail`.
fn workload(objects: &[Value], role: &str) -> Workload {
    let name = format!("mail-ferrymail-{role}");
    workloads(objects)
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no Deployment or StatefulSet {name}"))
}

/// Names of the Secrets a pod mounts, directly or in a projected volume.
fn mounted_secrets(pod: &PodSpec) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for volume in pod.volumes.iter().flatten() {
        names.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
        let projected = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for source in projected.into_iter().flatten() {
            names.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    names
}

/// Every workload: probes on the admin port, resources, a PDB selecting its pods, and no
/// subPath mount (which would freeze the file at its first version).
fn check_workloads(objects: &[Value]) {
    let pdbs: Vec<PodDisruptionBudget> =
        of_kind(objects, "PodDisruptionBudget").map(typed).collect();
    let workloads = workloads(objects);
    assert_eq!(workloads.len(), 4, "one per role");
    for Workload { name, labels, pod } in &workloads {
        for container in &pod.containers {
            for (probe, path) in [
                (&container.liveness_probe, "/healthz"),
                (&container.readiness_probe, "/readyz"),
                (&container.startup_probe, "/healthz"),
            ] {
                let http = probe
                    .as_ref()
                    .and_then(|p| p.http_get.as_ref())
                    .unwrap_or_else(|| panic!("{name}: a probe is missing"));
                assert_eq!(http.path.as_deref(), Some(path), "{name}");
                assert_eq!(
                    serde_json::to_value(&http.port).unwrap(),
                    "admin",
                    "{name}: probes use the admin listener"
                );
            }
            let resources = container.resources.as_ref().expect("resources");
            assert!(
                resources
                    .requests
                    .as_ref()
                    .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")),
                "{name}: requests"
            );
            assert!(
                resources
                    .limits
                    .as_ref()
                    .is_some_and(|r| r.contains_key("memory")),
                "{name}: memory limit"
            );
            for mount in container.volume_mounts.iter().flatten() {
                assert!(
                    mount.sub_path.is_none(),
                    "{name}: {} uses subPath",
                    mount.name
                );
            }
            let conf_d = container
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.mount_path == "/etc/ferrymail/conf.d")
                .expect("the include directory is mounted");
            let volume = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == conf_d.name)
                .unwrap();
            let sources = volume.projected.as_ref().expect("projected").sources.iter();
            let sources: Vec<_> = sources.flatten().collect();
            assert!(
                sources.iter().any(|s| s
                    .config_map
                    .as_ref()
                    .is_some_and(|c| c.name.ends_with("-rendered")))
                    && sources.iter().any(|s| s
                        .secret
                        .as_ref()
                        .is_some_and(|c| c.name.ends_with("-rendered-secrets"))),
                "{name}: rendered ConfigMap and Secret projection in one volume"
            );
        }
        let covered = pdbs.iter().any(|pdb| {
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            selector
                .and_then(|s| s.match_labels.as_ref())
                .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        assert!(covered, "{name} has no PodDisruptionBudget");
    }
}

/// Contents of Secrets by name, key by key.
type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// The data of a Secret the chart renders, decoded.
fn secret_data(objects: &[Value], name: &str) -> Option<BTreeMap<String, String>> {
    let secret = of_kind(objects, "Secret").find(|o| o["metadata"]["name"] == name)?;
    let data = secret["data"].as_object().expect("data");
    let decode = |v: &Value| {
        let bytes = BASE64.decode(v.as_str().unwrap()).unwrap();
        String::from_utf8(bytes).unwrap()
    };
    Some(data.iter().map(|(k, v)| (k.clone(), decode(v))).collect())
}

/// A Secret the chart must have rendered.
fn rendered_secret(objects: &[Value], name: &str) -> BTreeMap<String, String> {
    secret_data(objects, name).unwrap_or_else(|| panic!("no Secret {name}"))
}

/// A private CA standing in for the ones outside the chart: cert-manager's issuers, or the
/// one a user's Secrets come from.
struct TestCa(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl TestCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa(rcgen::CertifiedIssuer::self_signed(params, key).unwrap())
    }

    /// tls.crt, tls.key and ca.crt of a certificate for `dns_names`, as in a Secret that
    /// cert-manager writes.
    fn issue(&self, dns_names: &[String]) -> BTreeMap<String, String> {
        let mut params = rcgen::CertificateParams::new(dns_names.to_vec()).unwrap();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        BTreeMap::from([
            ("tls.crt".to_string(), cert.pem()),
            ("tls.key".to_string(), key.serialize_pem()),
            ("ca.crt".to_string(), self.0.pem()),
        ])
    }
}

/// The Secrets cert-manager would write for the chart's Certificates, from one CA.
fn issued_by_cert_manager(objects: &[Value]) -> Secrets {
    let ca = TestCa::new();
    of_kind(objects, "Certificate")
        .map(|c| {
            let names: Vec<String> = c["spec"]["dnsNames"]
                .as_array()
                .map(|n| n.iter().map(|n| n.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let secret = c["spec"]["secretName"].as_str().unwrap().to_string();
            (secret, ca.issue(&names))
        })
        .collect()
}

/// The files a role's container sees, resolved from the rendered objects the way the
/// kubelet mounts them, and from `outside`: the Secrets made outside the chart (by the user,
/// or by cert-manager). A mount of anything else fails the test, as it would keep the pod
/// from starting.
struct PodFiles {
    files: BTreeMap<PathBuf, String>,
    /// The container's environment, `secretKeyRef`s resolved like the mounts.
    env: BTreeMap<String, String>,
}

impl PodFiles {
    fn of(objects: &[Value], role: &str, outside: &Secrets) -> Self {
        let workload = workload(objects, role);
        let mut files = BTreeMap::new();
        for mount in workload.pod.containers[0].volume_mounts.iter().flatten() {
            let volume = workload.pod.volumes.iter().flatten();
            let volume = volume.clone().find(|v| v.name == mount.name);
            let Some(volume) = volume else {
                continue; // a volume claim template: no files in it yet
            };
            let mut sources = Vec::new();
            if let Some(c) = &volume.config_map {
                sources.push(("ConfigMap", c.name.clone(), c.items.clone(), c.optional));
            }
            if let Some(s) = &volume.secret {
                let name = s.secret_name.clone().unwrap();
                sources.push(("Secret", name, s.items.clone(), s.optional));
            }
            let projected = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
            for source in projected.into_iter().flatten() {
                if let Some(c) = &source.config_map {
                    sources.push(("ConfigMap", c.name.clone(), c.items.clone(), c.optional));
                }
                if let Some(s) = &source.secret {
                    sources.push(("Secret", s.name.clone(), s.items.clone(), s.optional));
                }
            }
            for (kind, name, items, optional) in sources {
                let data = match kind {
                    "Secret" => secret_data(objects, &name).or_else(|| outside.get(&name).cloned()),
                    _ => of_kind(objects, kind)
                        .find(|o| o["metadata"]["name"] == name.as_str())
                        .map(|o| serde_json::from_value(o["data"].clone()).unwrap()),
                };
                let Some(data) = data else {
                    assert_eq!(
                        optional,
                        Some(true),
                        "{role} mounts {kind} {name}, which nothing makes"
                    );
                    continue;
                };
                let selected: Vec<(String, String)> = match items {
                    None => data.into_iter().collect(),
                    Some(items) => items
                        .into_iter()
                        .map(|i| {
                            let text = data.get(&i.key).unwrap_or_else(|| {
                                panic!("{role}: {kind} {name} has no key {}", i.key)
                            });
                            (i.path, text.clone())
                        })
                        .collect(),
                };
                for (path, text) in selected {
                    files.insert(Path::new(&mount.mount_path).join(path), text);
                }
            }
        }
        let mut env = BTreeMap::new();
        for var in workload.pod.containers[0].env.iter().flatten() {
            let from_secret = var
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            let value = match (&var.value, from_secret) {
                (Some(value), _) => value.clone(),
                (None, Some(key)) => {
                    let data = secret_data(objects, &key.name)
                        .or_else(|| outside.get(&key.name).cloned())
                        .unwrap_or_else(|| {
                            panic!("{role}: env {} names a missing Secret", var.name)
                        });
                    data.get(&key.key).cloned().unwrap_or_else(|| {
                        panic!("{role}: Secret {} has no key {}", key.name, key.key)
                    })
                }
                (None, None) => continue, // a field reference: not configuration
            };
            env.insert(var.name.clone(), value);
        }
        PodFiles { files, env }
    }
}

impl ferrymail_config::Environment for PodFiles {
    fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

const MAIN_CONFIG: &str = "/etc/ferrymail/main/config.toml";
const INCLUDE_DIR: &str = "/etc/ferrymail/conf.d";

/// The configuration `role` loads in its pod, through the real loader: the main file, then
/// the include directory's `*.toml` files in name order, `%{file:}%` read from its mounts.
fn role_config(objects: &[Value], role: &str, outside: &Secrets) -> ferrymail_config::Config {
    let files = PodFiles::of(objects, role, outside);
    let main = files
        .files
        .get(Path::new(MAIN_CONFIG))
        .expect("config.toml is mounted");
    let mut documents = vec![("config.toml".to_string(), main.clone())];
    for (path, text) in &files.files {
        let name = path.file_name().unwrap().to_string_lossy();
        if path.parent() == Some(Path::new(INCLUDE_DIR)) && name.ends_with(".toml") {
            documents.push((name.into_owned(), text.clone()));
        }
    }
    let names: Vec<String> = documents.iter().map(|d| d.0.clone()).collect();
    ferrymail_config::load_documents(documents, &files)
        .unwrap_or_else(|e| panic!("{role}: {names:?} do not load:\n{e}"))
        .0
}

const ROLES: [&str; 4] = [
    "smtp-ingress",
    "queue-scheduler",
    "directory-proxy",
    "operator",
];

/// Every role's configuration loads in its pod, with cert-manager issuing the chart's
/// Certificates; returns the smtp-ingress's.
fn check_configs_load(objects: &[Value]) -> ferrymail_config::Config {
    let outside = issued_by_cert_manager(objects);
    for role in ROLES {
        role_config(objects, role, &outside);
    }
    role_config(objects, "smtp-ingress", &outside)
}

fn main_config(objects: &[Value]) -> String {
    named(objects, "ConfigMap", "mail-ferrymail-config")["data"]["config.toml"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn helm_lint_strict_passes_for_defaults_and_presets() {
    let chart = chart_dir().display().to_string();
    let mut runs = vec![vec!["lint", "--strict", chart.as_str()]];
    let presets: Vec<String> = PRESETS
        .iter()
        .map(|p| chart_dir().join(p).display().to_string())
        .collect();
    for preset in &presets {
        runs.push(vec![
            "lint",
            "--strict",
            chart.as_str(),
            "-f",
            preset.as_str(),
        ]);
    }
    for args in runs {
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn defaults_render_valid_objects() {
    let objects = template(&[], &[]);
    let unknown = check_known_kinds(&objects);
    assert!(unknown.is_empty(), "{unknown:?}");
    check_workloads(&objects);
    let config = check_configs_load(&objects);
    assert_eq!(config.server.hostname, "mx.example.org");

    let ingress: Service = typed(named(&objects, "Service", "mail-ferrymail-smtp-ingress"));
    let spec = ingress.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
    assert_eq!(ports, [25, 587], "465 only with TLS");
    for grpc in [
        "mail-ferrymail-queue-scheduler",
        "mail-ferrymail-directory-proxy",
    ] {
        let service: Service = typed(named(&objects, "Service", grpc));
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.ports.unwrap()[0].port, 50051);
    }
    assert_eq!(of_kind(&objects, "HorizontalPodAutoscaler").count(), 0);
}

/// The operator reads `cluster.directory.endpoint` from the main configuration it mounts, like
/// every role, to ask the directory-proxy for the `Reachable` condition of RemoteHosts.
#[test]
fn the_operator_is_told_where_the_directory_proxy_is() {
    let objects = template(&[], &[]);
    let config = role_config(&objects, "operator", &Secrets::new());
    assert_eq!(
        config.cluster.directory_endpoint.as_deref(),
        Some("https://mail-ferrymail-directory-proxy:50051")
    );
    let service: Service = typed(named(&objects, "Service", "mail-ferrymail-directory-proxy"));
    let spec = service.spec.unwrap();
    assert_eq!(
        spec.selector.unwrap()["app.kubernetes.io/component"],
        "directory-proxy"
    );
    let operator: Deployment = typed(named(&objects, "Deployment", "mail-ferrymail-operator"));
    let pod = operator.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert!(
        container
            .args
            .iter()
            .flatten()
            .any(|a| a == "--config=/etc/ferrymail/main/config.toml"),
        "{:?}",
        container.args
    );
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "config" && m.mount_path == "/etc/ferrymail/main"),
        "{:?}",
        container.volume_mounts
    );
}

#[test]
fn crds_are_the_generated_ones_and_can_be_left_out() {
    let objects = template(&[], &[]);
    let shipped: Vec<&Value> = of_kind(&objects, "CustomResourceDefinition").collect();
    let generated: Vec<Value> = ferrymail_operator::crd::definitions()
        .iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect();
    assert_eq!(shipped.len(), 2);
    for (a, b) in shipped.iter().zip(&generated) {
        assert_eq!(*a, b);
    }
    let without = template(&[], &["crds.install=false"]);
    assert_eq!(of_kind(&without, "CustomResourceDefinition").count(), 0);
}

#[test]
fn operator_rbac_is_least_privilege() {
    let objects = template(&[], &[]);
    let role: Role = typed(named(&objects, "Role", "mail-ferrymail-operator"));
    for rule in role.rules.iter().flatten() {
        assert!(
            !rule.verbs.iter().any(|v| v == "*" || v == "delete"),
            "{rule:?}"
        );
        let writes = rule.verbs.iter().any(|v| v == "patch" || v == "update");
        let core = rule.api_groups.iter().flatten().any(|g| g.is_empty());
        if writes && core {
            assert!(
                rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()),
                "core objects are written only by name: {rule:?}"
            );
        }
    }
    assert_eq!(
        of_kind(&objects, "ClusterRole").count(),
        0,
        "namespaced only"
    );
    for Workload { name, pod, .. } in workloads(&objects) {
        let is_operator = name == "mail-ferrymail-operator";
        assert_eq!(
            pod.automount_service_account_token != Some(false),
            is_operator,
            "only the operator gets an API token"
        );
    }
}

#[test]
fn hpa_preset() {
    let objects = template(&["ci/hpa-values.yaml"], &[]);
    check_known_kinds(&objects);
    check_workloads(&objects);
    let hpas: Vec<HorizontalPodAutoscaler> = of_kind(&objects, "HorizontalPodAutoscaler")
        .map(typed)
        .collect();
    assert_eq!(hpas.len(), 3);
    for hpa in hpas {
        let target = hpa.spec.unwrap().scale_target_ref.name;
        let deployment: Deployment = typed(named(&objects, "Deployment", &target));
        assert!(
            deployment.spec.unwrap().replicas.is_none(),
            "{target}: the HPA owns replicas"
        );
    }
}

#[test]
fn keda_preset_scales_the_queue_scheduler_on_queue_depth() {
    let objects = template(&["ci/keda-values.yaml"], &[]);
    assert_eq!(
        check_known_kinds(&objects),
        BTreeSet::from(["ScaledObject".to_string()])
    );
    check_workloads(&objects);
    assert_eq!(of_kind(&objects, "HorizontalPodAutoscaler").count(), 0);
    let scaled = named(&objects, "ScaledObject", "mail-ferrymail-queue-scheduler");
    assert_eq!(scaled["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        "mail-ferrymail-queue-scheduler"
    );
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    // Every scheduler reports the whole queue's depth: a sum would grow with the replicas.
    let query = trigger["metadata"]["query"].as_str().unwrap();
    assert!(
        query.starts_with("max(queue_messages_total{") && query.contains("namespace=\"mail\""),
        "{query}"
    );
    let error = template_of(
        &chart_dir(),
        &["ci/keda-values.yaml"],
        &["queueScheduler.autoscaling.enabled=true"],
    )
    .expect_err("HPA and KEDA together are refused");
    assert!(error.contains("mutually exclusive"), "{error}");
}

#[test]
fn proxy_preset_turns_on_proxy_protocol() {
    let objects = template(&["ci/proxy-values.yaml"], &[]);
    check_workloads(&objects);
    let config = check_configs_load(&objects);
    let smtp = &config.server.listeners["smtp"];
    let text = format!("{smtp:?}");
    assert!(text.contains("proxy_protocol: true"), "{text}");
    let ingress: Service = typed(named(&objects, "Service", "mail-ferrymail-smtp-ingress"));
    let metadata = ingress.metadata;
    assert!(
        metadata
            .annotations
            .unwrap()
            .contains_key("service.beta.kubernetes.io/aws-load-balancer-proxy-protocol")
    );
}

#[test]
fn cert_manager_preset_issues_the_certificate_the_pods_mount() {
    let objects = template(&["ci/cert-manager-values.yaml"], &[]);
    assert_eq!(
        check_known_kinds(&objects),
        BTreeSet::from([
            "Certificate".to_string(),
            "Issuer".to_string(),
            "ServiceMonitor".to_string()
        ])
    );
    check_workloads(&objects);
    let config = check_configs_load(&objects);
    assert!(config.certificates.contains_key("default"));
    let certificate = named(&objects, "Certificate", "mail-ferrymail-tls");
    let secret = certificate["spec"]["secretName"].as_str().unwrap();
    let ingress: Deployment = typed(named(&objects, "Deployment", "mail-ferrymail-smtp-ingress"));
    let volumes = ingress
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret))
    );
    let service: Service = typed(named(&objects, "Service", "mail-ferrymail-smtp-ingress"));
    let ports: Vec<i32> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [25, 587, 465]);
    let monitor = named(&objects, "ServiceMonitor", "mail-ferrymail");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
}

#[test]
fn foundationdb_preset_wires_the_cluster_file() {
    let objects = template(&["ci/foundationdb-values.yaml"], &[]);
    check_workloads(&objects);
    assert!(main_config(&objects).contains("type = \"foundationdb\""));
    for role in ["queue-scheduler", "directory-proxy"] {
        let deployment: Deployment = typed(named(
            &objects,
            "Deployment",
            &format!("mail-ferrymail-{role}"),
        ));
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let config_map = pod
            .volumes
            .iter()
            .flatten()
            .find_map(|v| {
                v.config_map
                    .as_ref()
                    .filter(|c| c.name == "ferrymail-fdb-config")
            })
            .unwrap_or_else(|| panic!("{role}: the operator's <cluster>-config ConfigMap"));
        assert_eq!(config_map.items.as_ref().unwrap()[0].key, "cluster-file");
        let init = &pod.init_containers.as_ref().expect("a copy step")[0];
        assert!(
            init.command
                .as_ref()
                .unwrap()
                .join(" ")
                .contains("cp /var/fdb-config/fdb.cluster /var/dynamic-conf/")
        );
        let container = &pod.containers[0];
        let env = container.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "FDB_CLUSTER_FILE"
            && e.value.as_deref() == Some("/var/dynamic-conf/fdb.cluster")));
        let dynamic = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "fdb-dynamic")
            .unwrap();
        assert!(dynamic.empty_dir.is_some(), "writable");
    }
    let ingress: Deployment = typed(named(&objects, "Deployment", "mail-ferrymail-smtp-ingress"));
    assert!(
        ingress
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .init_containers
            .is_none(),
        "the ingress holds no state"
    );
}

#[test]
fn postgresql_preset_takes_the_password_from_its_secret_and_scales() {
    let objects = template(&["ci/postgresql-values.yaml"], &[]);
    check_workloads(&objects);
    let config = main_config(&objects);
    assert!(config.contains("type = \"postgresql\""));
    // The Secrets a CloudNativePG cluster would have made.
    let mut outside = issued_by_cert_manager(&objects);
    let password = "kept-in-a-secret";
    outside.insert(
        "ferrymail-pg-app".into(),
        BTreeMap::from([("password".to_string(), password.to_string())]),
    );
    outside.insert(
        "ferrymail-pg-ca".into(),
        BTreeMap::from([("ca.crt".to_string(), TestCa::new().0.pem())]),
    );
    outside.insert(
        "mx-example-org-tls".into(),
        TestCa::new().issue(&["mx.example.org".into()]),
    );
    assert!(!config.contains(password));
    for role in ["queue-scheduler", "directory-proxy"] {
        let loaded = role_config(&objects, role, &outside);
        let (_, store) = loaded.data_store().expect("storage.data");
        let ferrymail_config::model::store::StoreBackend::PostgreSql {
            host,
            port,
            password: Some(secret),
            tls,
            allow_invalid_certs,
            ..
        } = &store.backend
        else {
            panic!("{role}: {:?}", store.backend);
        };
        assert_eq!((host.as_str(), *port), ("ferrymail-pg-rw", 5432));
        assert_eq!(secret.expose(), password, "{role}: the Secret's password");
        assert!(*tls && !*allow_invalid_certs, "{role}: TLS, checked");
        let files = PodFiles::of(&objects, role, &outside);
        assert!(
            files
                .env
                .get("SSL_CERT_FILE")
                .is_some_and(|f| files.files.contains_key(Path::new(f))),
            "{role}: the database's CA is mounted where SSL_CERT_FILE says"
        );
        let deployment: Deployment = typed(named(
            &objects,
            "Deployment",
            &format!("mail-ferrymail-{role}"),
        ));
        assert!(
            deployment.spec.unwrap().replicas.unwrap() > 1,
            "{role} scales"
        );
    }
    assert!(of_kind(&objects, "StatefulSet").next().is_none());
    assert!(of_kind(&objects, "PersistentVolumeClaim").next().is_none());
    let ingress = PodFiles::of(&objects, "smtp-ingress", &outside);
    assert!(
        !ingress.env.contains_key("FERRYMAIL_STORE_PASSWORD"),
        "the ingress has no store, so no password"
    );
    // Without a host or a password Secret the chart refuses to render, naming the value.
    for (unset, named) in [
        ("store.postgresql.host=", "store.postgresql.host"),
        (
            "store.postgresql.passwordSecret.name=",
            "store.postgresql.passwordSecret.name",
        ),
    ] {
        let error =
            template_of(&chart_dir(), &["ci/postgresql-values.yaml"], &[unset]).expect_err(unset);
        assert!(error.contains(named), "{unset}: {error}");
    }
    // The scaling refusal of the embedded store names PostgreSQL as a way out, and lets it.
    template_of(
        &chart_dir(),
        &["ci/postgresql-values.yaml"],
        &["queueScheduler.replicas=5"],
    )
    .unwrap();
}

/// Names of every metric the code registers.
fn registered_metric_names() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, names);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices(".register(") {
                    let rest = &text[at..];
                    if let Some(start) = rest.find('"') {
                        let name: String = rest[start + 1..]
                            .chars()
                            .take_while(|c| *c != '"')
                            .collect();
                        names.insert(name);
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        &mut names,
    );
    names
}

/// Metric names a dashboard's PromQL expressions use.
fn dashboard_metrics(dashboard: &Value, out: &mut BTreeSet<String>) {
    match dashboard {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("expr", Some(expr)) => out.extend(promql_metrics(expr)),
                    _ => dashboard_metrics(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dashboard_metrics(i, out)),
        _ => {}
    }
}

/// Identifiers directly followed by `{` or `[`: the metric selectors of a PromQL expression.
fn promql_metrics(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
            continue;
        }
        if (c == '{' || c == '[')
            && !current.is_empty()
            && !current.starts_with(|d: char| d.is_ascii_digit())
        {
            names.push(current.clone());
        }
        current.clear();
    }
    names
}

fn known_metric(name: &str, registered: &BTreeSet<String>) -> bool {
    ["", "_total", "_bucket", "_sum", "_count", "_created"]
        .iter()
        .any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                registered.contains(base) || registered.contains(&format!("{base}_total"))
            })
        })
        || name
            .strip_prefix("ferrymail_")
            .is_some_and(|n| registered.contains(n))
}

#[test]
fn dashboards_use_only_metrics_the_code_exports() {
    let registered = registered_metric_names();
    assert!(
        registered.contains("queue_messages_total")
            && registered.contains("operator_reconciles_total")
    );
    let mut checked = 0;
    for dir in [
        chart_dir().join("dashboards"),
        chart_dir().join("../../deploy/dashboards"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let dashboard: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut used = BTreeSet::new();
            dashboard_metrics(&dashboard, &mut used);
            let unknown: Vec<_> = used
                .iter()
                .filter(|m| !known_metric(m, &registered))
                .collect();
            assert!(
                unknown.is_empty(),
                "{}: metrics no code exports: {unknown:?}",
                path.display()
            );
            checked += 1;
        }
    }
    // The check itself must work whether or not dashboards exist yet.
    let mut used = BTreeSet::new();
    dashboard_metrics(
        &serde_json::json!({"panels": [{"targets": [{"expr": "sum(rate(smtp_messages_received_total{job=\"x\"}[5m])) / no_such_metric{a=\"b\"}"}]}]}),
        &mut used,
    );
    let unknown: Vec<_> = used
        .iter()
        .filter(|m| !known_metric(m, &registered))
        .collect();
    assert_eq!(
        unknown,
        [&"no_such_metric".to_string()],
        "checked {checked} dashboard file(s)"
    );
}

#[test]
fn dashboards_in_the_chart_become_labelled_config_maps() {
    // A copy of the chart with one dashboard, since the chart may ship none yet.
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(chart_dir())
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let chart = copy.path().join("ferrymail");
    std::fs::write(
        chart.join("dashboards/Queue_Overview.json"),
        r#"{"title": "Queue"}"#,
    )
    .unwrap();
    let objects = template_of(&chart, &[], &[]).unwrap();
    let map = named(
        &objects,
        "ConfigMap",
        "mail-ferrymail-dashboard-queue-overview",
    );
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["data"]["Queue_Overview.json"], r#"{"title": "Queue"}"#);
    let off = template_of(&chart, &[], &["dashboards.enabled=false"]).unwrap();
    assert!(of_kind(&off, "ConfigMap").all(|m| {
        !m["metadata"]["name"]
            .as_str()
            .unwrap()
            .contains("dashboard")
    }));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn kustomize_base_is_the_charts_output_and_builds_offline() {
    let chart = chart_dir().display().to_string();
    let values = repo().join("deploy/kustomize/chart-values.yaml");
    let values = values.display().to_string();
    let output = helm(&[
        "template",
        "ferrymail",
        chart.as_str(),
        "--namespace",
        "ferrymail",
        "-f",
        values.as_str(),
    ]);
    assert!(output.status.success());
    let base = repo().join("deploy/kustomize/base");
    let shipped = std::fs::read(base.join("ferrymail.yaml")).unwrap();
    assert!(
        output.stdout == shipped,
        "deploy/kustomize/base/ferrymail.yaml is stale: run `make chart`"
    );
    // kubectl's built-in kustomize needs no API server.
    let built = Command::new("kubectl")
        .arg("kustomize")
        .arg(&base)
        .output()
        .expect("kubectl is installed (`make test-deps`)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let objects = manifests::documents(&String::from_utf8_lossy(&built.stdout)).unwrap();
    assert_eq!(
        check_known_kinds(&objects),
        BTreeSet::from(["Certificate".to_string(), "Issuer".to_string()]),
        "cert-manager issues the roles' certificates"
    );
    // A file in a repository is public: a key or certificate generated into it would be
    // everyone's.
    assert_eq!(
        of_kind(&objects, "Secret").count(),
        0,
        "no Secret is shipped"
    );
    check_workloads(&objects);
    assert_eq!(of_kind(&objects, "CustomResourceDefinition").count(), 2);
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] != "CustomResourceDefinition")
            .all(|o| o["metadata"]["namespace"] == "ferrymail")
    );
}

#[test]
fn deploy_manifests_parse_as_what_they_claim() {
    let cluster = manifests::documents(
        &std::fs::read_to_string(repo().join("deploy/foundationdb/cluster.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(cluster[0]["kind"], "FoundationDBCluster");
    assert_eq!(
        cluster[0]["metadata"]["name"], "ferrymail-fdb",
        "the chart's default clusterName"
    );
    let collector = manifests::documents(
        &std::fs::read_to_string(repo().join("deploy/otel/collector.yaml")).unwrap(),
    )
    .unwrap();
    let pipelines = &collector[0]["service"]["pipelines"];
    for (name, pipeline) in pipelines.as_object().unwrap() {
        for part in ["receivers", "processors", "exporters"] {
            for item in pipeline[part].as_array().into_iter().flatten() {
                let id = item.as_str().unwrap();
                assert!(
                    collector[0][part][id].is_object() || collector[0][part].get(id).is_some(),
                    "pipeline {name}: {part} {id} is not defined"
                );
            }
        }
    }
}

#[test]
fn the_charts_alerts_are_the_deploy_rules_with_thresholds_as_values() {
    let deploy =
        std::fs::read_to_string(repo().join("deploy/prometheus/ferrymail-alerts.yaml")).unwrap();
    let expected = manifests::documents(&deploy).unwrap().remove(0);
    let off = template(&[], &[]);
    assert_eq!(of_kind(&off, "PrometheusRule").count(), 0, "off by default");

    let objects = template(&[], &["alerts.enabled=true"]);
    let rule = named(&objects, "PrometheusRule", "mail-ferrymail");
    assert_eq!(
        rule["spec"], expected["spec"],
        "with the default values, the chart's rules are deploy/prometheus's"
    );

    let tuned = template(
        &[],
        &[
            "alerts.enabled=true",
            "alerts.authFailures.perMinute=99",
            "alerts.authFailures.for=7m",
        ],
    );
    let rule = named(&tuned, "PrometheusRule", "mail-ferrymail");
    let auth = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "FerrymailAuthFailureSpike")
        .unwrap();
    assert!(
        auth["expr"].as_str().unwrap().contains("* 60 > 99"),
        "{auth}"
    );
    assert_eq!(auth["for"], "7m");
}

#[test]
fn the_charts_dashboards_are_the_deploy_ones() {
    let read = |dir: &str| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let deploy = read("deploy/grafana");
    assert!(!deploy.is_empty());
    assert!(
        read("charts/ferrymail/dashboards") == deploy,
        "charts/ferrymail/dashboards must hold copies of deploy/grafana/*.json (`make chart-assets`)"
    );
}

// ---- Between the roles: certificates, the cache key, NetworkPolicies ----

/// The identities the chart issues certificates for: the roles, and the administrators'.
const IDENTITIES: [&str; 5] = [
    "smtp-ingress",
    "queue-scheduler",
    "directory-proxy",
    "operator",
    "admin",
];

/// Verifies certificates the way rustls, the TLS library of the roles, does.
struct Verifiers {
    server: Arc<dyn ServerCertVerifier>,
    client: Arc<dyn ClientCertVerifier>,
}

impl Verifiers {
    /// Verifiers trusting the CAs of `ca_pem` only.
    fn trusting(ca_pem: &str) -> Self {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let roots = Arc::new(roots);
        let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .unwrap();
        let client = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .unwrap();
        Verifiers { server, client }
    }

    /// Whether a client expecting the server `name` accepts `cert_pem`.
    fn as_server(&self, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let now = UnixTime::now();
        let cert = first_certificate(cert_pem);
        self.server
            .verify_server_cert(&cert, &[], &name, &[], now)
            .map(drop)
    }

    /// Whether a server asking for client certificates accepts `cert_pem`.
    fn as_client(&self, cert_pem: &str) -> Result<(), rustls::Error> {
        let cert = first_certificate(cert_pem);
        self.client
            .verify_client_cert(&cert, &[], UnixTime::now())
            .map(drop)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn first_certificate(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .unwrap()
}

/// Whether `key_pem` is the private key of `cert_pem` (a mismatch fails every handshake).
fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let key = provider().key_provider.load_private_key(key).unwrap();
    CertifiedKey::new(vec![first_certificate(cert_pem)], key)
        .keys_match()
        .is_ok()
}

/// The Secrets of the generated identities, by role.
fn generated_identities(objects: &[Value]) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    IDENTITIES
        .iter()
        .map(|role| {
            let secret = rendered_secret(objects, &format!("mail-ferrymail-{role}-mtls"));
            (*role, secret)
        })
        .collect()
}

#[test]
fn generated_certificates_verify_as_their_role_and_no_other() {
    let objects = template(&[], &[]);
    let ca = rendered_secret(&objects, "mail-ferrymail-cluster-ca");
    let verify = Verifiers::trusting(&ca["tls.crt"]);
    for (role, secret) in generated_identities(&objects) {
        assert_eq!(secret["ca.crt"], ca["tls.crt"], "{role}: ca.crt is the CA");
        let cert = &secret["tls.crt"];
        verify
            .as_server(cert, &format!("{role}.ferrymail.internal"))
            .unwrap_or_else(|e| panic!("{role} as a server: {e}"));
        verify
            .as_client(cert)
            .unwrap_or_else(|e| panic!("{role} as a client: {e}"));
        assert!(key_matches(cert, &secret["tls.key"]), "{role}: key");
        // And the process that mounts them makes its TLS configurations from them.
        ferrymail_rpc::cluster_tls::Credentials::from_pem(
            cert,
            &secret["tls.key"],
            &secret["ca.crt"],
            "ferrymail.internal",
        )
        .unwrap_or_else(|e| panic!("{role}: {e}"));
        for other in IDENTITIES.iter().filter(|r| **r != role) {
            assert!(
                verify
                    .as_server(cert, &format!("{other}.ferrymail.internal"))
                    .is_err(),
                "{role}'s certificate passes for {other}"
            );
        }
    }
    // The gRPC servers also answer to their Service's names.
    for role in ["queue-scheduler", "directory-proxy"] {
        let cert = &rendered_secret(&objects, &format!("mail-ferrymail-{role}-mtls"))["tls.crt"];
        for name in [
            format!("mail-ferrymail-{role}"),
            format!("mail-ferrymail-{role}.mail.svc"),
        ] {
            verify.as_server(cert, &name).unwrap();
        }
    }
    // A CA of another installation is not trusted.
    let other = template(&[], &[]);
    let stranger =
        Verifiers::trusting(&rendered_secret(&other, "mail-ferrymail-cluster-ca")["tls.crt"]);
    let cert = &rendered_secret(&objects, "mail-ferrymail-queue-scheduler-mtls")["tls.crt"];
    assert!(stranger.as_client(cert).is_err());
}

/// Each pod mounts its own role's certificate, and its configuration (loaded as the pod
/// loads it) is mutual TLS with that certificate, https endpoints and the configured domain.
#[track_caller]
fn check_each_role_is_itself(
    objects: &[Value],
    outside: &Secrets,
    secret_of: impl Fn(&str) -> String,
) {
    for role in ROLES {
        let pod = workload(objects, role).pod;
        let secret = secret_of(role);
        let mounted = mounted_secrets(&pod);
        assert!(mounted.contains(&secret), "{role} mounts {mounted:?}");
        let others: Vec<String> = ROLES
            .iter()
            .filter(|r| **r != role)
            .map(|r| secret_of(r))
            .collect();
        assert!(
            others.iter().all(|o| !mounted.contains(o)),
            "{role} mounts another role's identity: {mounted:?}"
        );
        assert!(
            !mounted.contains("mail-ferrymail-cluster-ca"),
            "{role}: the CA's key stays out of every pod"
        );
        let config = role_config(objects, role, outside);
        let ClusterTls::Mutual(identity) = &config.cluster.tls else {
            panic!("{role}: {:?}", config.cluster.tls);
        };
        let expected = secret_data(objects, &secret)
            .or_else(|| outside.get(&secret).cloned())
            .unwrap();
        // `%{file:}%` drops the file's final newline.
        assert_eq!(
            identity.certificate.0,
            expected["tls.crt"].trim_end(),
            "{role}"
        );
        assert_eq!(identity.ca.0, expected["ca.crt"].trim_end(), "{role}");
        assert_eq!(identity.domain, "ferrymail.internal");
        assert_eq!(
            config.cluster.queue_endpoint.as_deref(),
            Some("https://mail-ferrymail-queue-scheduler:50051")
        );
        assert_eq!(
            config.cluster.directory_endpoint.as_deref(),
            Some("https://mail-ferrymail-directory-proxy:50051")
        );
    }
}

fn mtls_secret(role: &str) -> String {
    format!("mail-ferrymail-{role}-mtls")
}

#[test]
fn by_default_every_role_has_its_generated_identity() {
    let objects = template(&[], &[]);
    check_each_role_is_itself(&objects, &Secrets::new(), mtls_secret);
    assert_eq!(of_kind(&objects, "Certificate").count(), 0);
    // The admin certificate is for people: no pod mounts it.
    for w in workloads(&objects) {
        assert!(!mounted_secrets(&w.pod).contains("mail-ferrymail-admin-mtls"));
    }
}

#[test]
fn cert_manager_mode_issues_every_identity_from_a_ca_of_the_release() {
    let objects = template(&[], &["clusterTls.mode=cert-manager"]);
    assert!(
        !of_kind(&objects, "Secret").any(|s| s["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-mtls") || n.ends_with("-cluster-ca"))),
        "cert-manager writes the Secrets"
    );
    // Self-signed Issuer → CA Certificate → CA Issuer.
    let selfsigned = named(&objects, "Issuer", "mail-ferrymail-selfsigned");
    assert!(selfsigned["spec"]["selfSigned"].is_object());
    let ca = named(&objects, "Certificate", "mail-ferrymail-cluster-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "mail-ferrymail-selfsigned");
    let ca_issuer = named(&objects, "Issuer", "mail-ferrymail-cluster-ca");
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    for role in IDENTITIES {
        let certificate = named(&objects, "Certificate", &mtls_secret(role));
        let spec = &certificate["spec"];
        assert_eq!(spec["secretName"], mtls_secret(role).as_str());
        assert_eq!(spec["issuerRef"]["name"], "mail-ferrymail-cluster-ca");
        assert_eq!(spec["issuerRef"]["kind"], "Issuer");
        assert_eq!(
            spec["dnsNames"][0],
            format!("{role}.ferrymail.internal").as_str()
        );
        let usages = spec["usages"].to_string();
        assert!(
            usages.contains("server auth") && usages.contains("client auth"),
            "{usages}"
        );
    }
    let names =
        &named(&objects, "Certificate", &mtls_secret("queue-scheduler"))["spec"]["dnsNames"];
    assert!(
        names
            .as_array()
            .unwrap()
            .contains(&"mail-ferrymail-queue-scheduler.mail.svc".into())
    );
    check_each_role_is_itself(&objects, &issued_by_cert_manager(&objects), mtls_secret);
}

#[test]
fn cert_manager_mode_uses_the_issuer_the_values_name() {
    let objects = template(
        &[],
        &[
            "clusterTls.mode=cert-manager",
            "clusterTls.certManager.issuerRef.name=internal-ca",
            "clusterTls.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    assert_eq!(
        of_kind(&objects, "Issuer").count(),
        0,
        "no CA of the release"
    );
    let certificates: Vec<&Value> = of_kind(&objects, "Certificate").collect();
    assert_eq!(certificates.len(), IDENTITIES.len());
    for certificate in certificates {
        assert_eq!(
            certificate["spec"]["issuerRef"],
            serde_json::json!({"name": "internal-ca", "kind": "ClusterIssuer"})
        );
    }
}

#[test]
fn secrets_mode_mounts_the_users_secrets() {
    let objects = template(
        &[],
        &[
            "clusterTls.mode=secrets",
            "clusterTls.secrets.queueScheduler=queue-identity",
        ],
    );
    assert_eq!(of_kind(&objects, "Certificate").count(), 0);
    assert!(
        !of_kind(&objects, "Secret").any(|s| s["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-mtls") || n.ends_with("-cluster-ca"))),
        "the user makes them"
    );
    // The named Secret, and the default names for the roles the values leave empty.
    let secret_of = |role: &str| match role {
        "queue-scheduler" => "queue-identity".to_string(),
        other => mtls_secret(other),
    };
    let ca = TestCa::new();
    let users: Secrets = ROLES
        .iter()
        .map(|role| {
            (
                secret_of(role),
                ca.issue(&[format!("{role}.ferrymail.internal")]),
            )
        })
        .collect();
    check_each_role_is_itself(&objects, &users, secret_of);
}

#[test]
fn plain_text_between_the_roles_only_when_asked() {
    let objects = template(&[], &["clusterTls.enabled=false"]);
    for role in ROLES {
        let config = role_config(&objects, role, &Secrets::new());
        assert!(config.cluster.tls.is_plain_text(), "{role}");
        assert_eq!(
            config.cluster.queue_endpoint.as_deref(),
            Some("http://mail-ferrymail-queue-scheduler:50051")
        );
        let mounted = mounted_secrets(&workload(&objects, role).pod);
        assert!(mounted.iter().all(|s| !s.ends_with("-mtls")), "{mounted:?}");
    }
    assert!(!of_kind(&objects, "Secret").any(|s| {
        s["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-mtls"))
    }),);
}

#[test]
fn only_the_directory_proxy_gets_the_cache_key() {
    let objects = template(&[], &[]);
    let key = rendered_secret(&objects, "mail-ferrymail-cache-key")["cache-key"].clone();
    assert!(key.len() >= 32, "at least 32 bytes: {}", key.len());
    assert_ne!(
        key,
        rendered_secret(&template(&[], &[]), "mail-ferrymail-cache-key")["cache-key"],
        "random per installation"
    );
    for role in ROLES {
        let config = role_config(&objects, role, &Secrets::new());
        let mounted = mounted_secrets(&workload(&objects, role).pod);
        if role == "directory-proxy" {
            assert_eq!(config.cluster.cache_key.unwrap().expose(), key);
        } else {
            assert!(config.cluster.cache_key.is_none(), "{role}");
            assert!(!mounted.contains("mail-ferrymail-cache-key"), "{role}");
        }
    }
    // A Secret of the user's instead.
    let objects = template(
        &[],
        &[
            "cacheKey.existingSecret=lookup-hmac",
            "cacheKey.secretKey=key",
        ],
    );
    assert!(secret_data(&objects, "mail-ferrymail-cache-key").is_none());
    let users = Secrets::from([(
        "lookup-hmac".to_string(),
        BTreeMap::from([("key".to_string(), "k".repeat(40))]),
    )]);
    let config = role_config(&objects, "directory-proxy", &users);
    assert_eq!(config.cluster.cache_key.unwrap().expose(), "k".repeat(40));
}

/// The chart's own copy with Helm's `lookup` — which asks the cluster for the Secret of
/// the previous release — answered from `existing.yaml` in the copy instead. `lookup`
/// cannot run without a cluster (under `helm template` it finds nothing), so this is how the
/// logic around it, what is kept and what is issued anew on an upgrade, is tested; that
/// `lookup` itself finds the installed Secret is Helm's to keep.
struct UpgradableChart {
    _dir: tempfile::TempDir,
    chart: PathBuf,
}

impl UpgradableChart {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("cp")
            .arg("-r")
            .arg(chart_dir())
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let chart = dir.path().join("ferrymail");
        let helpers = chart.join("templates/_helpers.tpl");
        let text = std::fs::read_to_string(&helpers).unwrap();
        let lookup = r#"{{- lookup "v1" "Secret" .root.Release.Namespace .name | toYaml }}"#;
        let from_file = r#"{{- index (.root.Files.Get "existing.yaml" | fromYaml) .name | default dict | toYaml }}"#;
        assert!(text.contains(lookup), "the chart's one lookup has changed");
        std::fs::write(&helpers, text.replace(lookup, from_file)).unwrap();
        UpgradableChart { _dir: dir, chart }
    }

    /// Renders the chart as an upgrade of a release holding `installed` Secrets would.
    fn upgrade(&self, installed: &[&Value], sets: &[&str]) -> Vec<Value> {
        let by_name: serde_json::Map<String, Value> = installed
            .iter()
            .map(|s| {
                (
                    s["metadata"]["name"].as_str().unwrap().to_string(),
                    (*s).clone(),
                )
            })
            .collect();
        let existing = serde_json::to_string(&by_name).unwrap();
        std::fs::write(self.chart.join("existing.yaml"), existing).unwrap();
        template_of(&self.chart, &[], sets).unwrap()
    }
}

fn secrets(objects: &[Value]) -> Vec<&Value> {
    of_kind(objects, "Secret").collect()
}

#[test]
fn an_upgrade_keeps_the_generated_certificates_and_cache_key() {
    let chart = UpgradableChart::new();
    let installed = chart.upgrade(&[], &[]);
    let upgraded = chart.upgrade(&secrets(&installed), &[]);
    assert_eq!(
        secrets(&installed).len(),
        IDENTITIES.len() + 2,
        "CA, identities, cache key"
    );
    for secret in secrets(&installed) {
        let name = secret["metadata"]["name"].as_str().unwrap();
        let after = named(&upgraded, "Secret", name);
        assert_eq!(after["data"], secret["data"], "{name} is kept");
        assert_eq!(
            after["metadata"]["annotations"],
            secret["metadata"]["annotations"]
        );
    }

    // A role whose Secret went missing gets a new certificate from the same CA.
    let without: Vec<&Value> = secrets(&installed)
        .into_iter()
        .filter(|s| s["metadata"]["name"] != "mail-ferrymail-operator-mtls")
        .collect();
    let upgraded = chart.upgrade(&without, &[]);
    let ca = rendered_secret(&installed, "mail-ferrymail-cluster-ca");
    let renewed = rendered_secret(&upgraded, "mail-ferrymail-operator-mtls");
    assert_ne!(
        renewed,
        rendered_secret(&installed, "mail-ferrymail-operator-mtls")
    );
    Verifiers::trusting(&ca["tls.crt"])
        .as_client(&renewed["tls.crt"])
        .unwrap();
    assert_eq!(
        rendered_secret(&upgraded, "mail-ferrymail-queue-scheduler-mtls"),
        rendered_secret(&installed, "mail-ferrymail-queue-scheduler-mtls")
    );
}

/// `secret` as the chart annotates one that expires tomorrow.
fn expiring_tomorrow(secret: &Value) -> Value {
    let now = std::time::SystemTime::now();
    let epoch = now.duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut secret = secret.clone();
    let tomorrow = (epoch.as_secs() + 86_400).to_string();
    secret["metadata"]["annotations"]["ferrymail.io/not-after"] = tomorrow.into();
    secret
}

/// The Secrets of `objects`, with `replacement` in place of the one of the same name.
fn replacing<'a>(objects: &'a [Value], replacement: &'a Value) -> Vec<&'a Value> {
    let name = &replacement["metadata"]["name"];
    let mut out: Vec<&Value> = secrets(objects)
        .into_iter()
        .filter(|s| &s["metadata"]["name"] != name)
        .collect();
    out.push(replacement);
    out
}

#[test]
fn an_upgrade_issues_anew_what_changed_or_expires() {
    let chart = UpgradableChart::new();
    let installed = chart.upgrade(&[], &[]);
    let ca = rendered_secret(&installed, "mail-ferrymail-cluster-ca");

    // Another domain: every role's certificate names the new one, from the same CA.
    let upgraded = chart.upgrade(&secrets(&installed), &["clusterTls.domain=mail.internal"]);
    assert_eq!(rendered_secret(&upgraded, "mail-ferrymail-cluster-ca"), ca);
    let verify = Verifiers::trusting(&ca["tls.crt"]);
    for (role, secret) in generated_identities(&upgraded) {
        verify
            .as_server(&secret["tls.crt"], &format!("{role}.mail.internal"))
            .unwrap_or_else(|e| panic!("{role}: {e}"));
    }

    // A certificate about to expire (within renewDays) is issued anew, from the same CA.
    let expiring = expiring_tomorrow(named(&installed, "Secret", "mail-ferrymail-operator-mtls"));
    let upgraded = chart.upgrade(&replacing(&installed, &expiring), &[]);
    let renewed = rendered_secret(&upgraded, "mail-ferrymail-operator-mtls");
    assert_ne!(
        renewed,
        rendered_secret(&installed, "mail-ferrymail-operator-mtls")
    );
    verify.as_client(&renewed["tls.crt"]).unwrap();
    assert_eq!(
        rendered_secret(&upgraded, "mail-ferrymail-smtp-ingress-mtls"),
        rendered_secret(&installed, "mail-ferrymail-smtp-ingress-mtls")
    );

    // A CA about to expire is replaced, and every certificate with it.
    let expiring = expiring_tomorrow(named(&installed, "Secret", "mail-ferrymail-cluster-ca"));
    let upgraded = chart.upgrade(&replacing(&installed, &expiring), &[]);
    let new_ca = rendered_secret(&upgraded, "mail-ferrymail-cluster-ca");
    assert_ne!(new_ca, ca);
    let verify = Verifiers::trusting(&new_ca["tls.crt"]);
    for (role, secret) in generated_identities(&upgraded) {
        assert_eq!(secret["ca.crt"], new_ca["tls.crt"]);
        verify
            .as_client(&secret["tls.crt"])
            .unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    assert_eq!(
        rendered_secret(&upgraded, "mail-ferrymail-cache-key"),
        rendered_secret(&installed, "mail-ferrymail-cache-key"),
        "the cache key has nothing to do with it"
    );
}

/// The rules of `policy` that open `port` (a container port name), each with its sources
/// (`None`: anyone).
fn sources_of(policy: &NetworkPolicy, port: &str) -> Vec<Option<Vec<NetworkPolicyPeer>>> {
    let spec = policy.spec.as_ref().unwrap();
    spec.ingress
        .iter()
        .flatten()
        .filter(|rule| {
            rule.ports.iter().flatten().any(|p| {
                p.port
                    .as_ref()
                    .is_some_and(|p| *p == IntOrString::String(port.to_string()))
            })
        })
        .map(|rule| rule.from.clone())
        .collect()
}

/// The one NetworkPolicy selecting `workload`'s pods.
fn policy_of<'a>(policies: &'a [NetworkPolicy], workload: &Workload) -> &'a NetworkPolicy {
    let selecting: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| {
            let selector = &p.spec.as_ref().unwrap().pod_selector;
            let labels = selector
                .iter()
                .flat_map(|s| s.match_labels.iter().flatten());
            labels
                .into_iter()
                .all(|(k, v)| workload.labels.get(k) == Some(v))
        })
        .collect();
    assert_eq!(selecting.len(), 1, "{}", workload.name);
    selecting[0]
}

fn selects(peer: &NetworkPolicyPeer, labels: &BTreeMap<String, String>) -> bool {
    let selector = peer.pod_selector.as_ref().expect("a pod selector");
    assert!(selector.match_expressions.is_none());
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn network_policies_open_smtp_to_all_grpc_to_the_release_and_admin_to_monitoring() {
    let objects = template(&[], &[]);
    let policies: Vec<NetworkPolicy> = of_kind(&objects, "NetworkPolicy").map(typed).collect();
    let workloads = workloads(&objects);
    assert_eq!(policies.len(), workloads.len());
    let monitoring = serde_json::json!([{"namespaceSelector": {"matchLabels":
        {"kubernetes.io/metadata.name": "monitoring"}}}]);
    for workload in &workloads {
        let policy = policy_of(&policies, workload);
        let spec = policy.spec.as_ref().unwrap();
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string()][..])
        );
        // Every rule names ports the pod has: a misspelt name would open nothing.
        let ports: BTreeSet<String> = workload.pod.containers[0]
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        for rule in spec.ingress.iter().flatten() {
            for port in rule.ports.iter().flatten() {
                let IntOrString::String(name) = port.port.as_ref().unwrap() else {
                    panic!("{}: ports by name", workload.name);
                };
                assert!(
                    ports.contains(name),
                    "{}: {name} is not a port",
                    workload.name
                );
            }
        }
        let admin = sources_of(policy, "admin");
        assert_eq!(admin.len(), 1, "{}", workload.name);
        assert_eq!(serde_json::to_value(&admin[0]).unwrap(), monitoring);

        let grpc = sources_of(policy, "grpc");
        if ports.contains("grpc") {
            assert_eq!(grpc.len(), 1, "{}", workload.name);
            let peers = grpc[0].as_ref().expect("gRPC is not open to all");
            assert_eq!(peers.len(), 1);
            let peer = &peers[0];
            assert!(
                peer.namespace_selector.is_none() && peer.ip_block.is_none(),
                "this namespace only"
            );
            for other in &workloads {
                assert!(
                    selects(peer, &other.labels),
                    "{} may call {}",
                    other.name,
                    workload.name
                );
            }
            let mut stranger = workload.labels.clone();
            stranger.insert("app.kubernetes.io/instance".into(), "other".into());
            assert!(!selects(peer, &stranger), "another release's pods");
        } else {
            assert!(grpc.is_empty(), "{}", workload.name);
        }
        let smtp = sources_of(policy, "smtp");
        if workload.name == "mail-ferrymail-smtp-ingress" {
            assert_eq!(smtp, [None], "an MX takes mail from anyone");
            assert_eq!(sources_of(policy, "submission"), [None]);
        } else {
            assert!(smtp.is_empty());
        }
    }
}

#[test]
fn network_policies_follow_the_values() {
    let objects = template(
        &[],
        &[
            "networkPolicy.smtpFrom[0].ipBlock.cidr=10.0.0.0/8",
            "networkPolicy.adminFrom[0].podSelector.matchLabels.app=prometheus",
            "tls.enabled=true",
            "tls.secretName=mx-tls",
        ],
    );
    let policies: Vec<NetworkPolicy> = of_kind(&objects, "NetworkPolicy").map(typed).collect();
    let ingress = policy_of(&policies, &workload(&objects, "smtp-ingress"));
    let internal = serde_json::json!([[{"ipBlock": {"cidr": "10.0.0.0/8"}}]]);
    for port in ["smtp", "submission", "submissions"] {
        assert_eq!(
            serde_json::to_value(sources_of(ingress, port)).unwrap(),
            internal,
            "{port}"
        );
    }
    let prometheus = serde_json::json!([[{"podSelector": {"matchLabels": {"app": "prometheus"}}}]]);
    assert_eq!(
        serde_json::to_value(sources_of(ingress, "admin")).unwrap(),
        prometheus
    );

    // No admin sources: only the node (the kubelet's probes) reaches the admin port.
    let closed = template(&[], &["networkPolicy.adminFrom=null"]);
    let policies: Vec<NetworkPolicy> = of_kind(&closed, "NetworkPolicy").map(typed).collect();
    assert!(
        sources_of(
            policy_of(&policies, &workload(&closed, "operator")),
            "admin"
        )
        .is_empty()
    );

    let off = template(&[], &["networkPolicy.enabled=false"]);
    assert_eq!(of_kind(&off, "NetworkPolicy").count(), 0);
}

/// The mount that holds `path` in `pod`, by the longest mount path.
fn mount_holding<'a>(pod: &'a PodSpec, path: &Path) -> &'a k8s_openapi::api::core::v1::VolumeMount {
    pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("nothing is mounted over {}", path.display()))
}

fn embedded_store_path(config: &ferrymail_config::Config) -> PathBuf {
    let (_, store) = config.data_store().expect("storage.data");
    match &store.backend {
        StoreBackend::Embedded { path } => path.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_embedded_queue_lives_on_a_volume_claim_never_an_emptydir() {
    let objects = template(&[], &[]);
    assert!(
        of_kind(&objects, "Deployment")
            .all(|d| d["metadata"]["name"] != "mail-ferrymail-queue-scheduler")
    );
    let set: StatefulSet = typed(named(
        &objects,
        "StatefulSet",
        "mail-ferrymail-queue-scheduler",
    ));
    let spec = set.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let retention = spec.persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(
        retention.when_deleted.as_deref(),
        Some("Retain"),
        "the queue outlives uninstall"
    );
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let headless: Service = typed(named(&objects, "Service", &spec.service_name.unwrap()));
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));

    // Where the queue-scheduler's configuration puts the database, a claim is mounted.
    let config = role_config(&objects, "queue-scheduler", &Secrets::new());
    let pod = spec.template.spec.unwrap();
    let mount = mount_holding(&pod, &embedded_store_path(&config));
    assert!(
        pod.volumes.iter().flatten().all(|v| v.name != mount.name),
        "{} is a pod volume, not a claim",
        mount.name
    );
    let claims = spec.volume_claim_templates.unwrap();
    let claim = claims
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(mount.name.as_str()))
        .unwrap();
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(
        claim_spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(
        claim_spec.storage_class_name, None,
        "the cluster's default class"
    );
    let requests = claim_spec
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap();
    assert_eq!(requests["storage"].0, "10Gi");

    let sized = template(
        &[],
        &[
            "store.embedded.size=50Gi",
            "store.embedded.storageClassName=fast-ssd",
        ],
    );
    let set: StatefulSet = typed(named(
        &sized,
        "StatefulSet",
        "mail-ferrymail-queue-scheduler",
    ));
    let claim = &set.spec.unwrap().volume_claim_templates.unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "50Gi"
    );
}

/// The directory-proxy's embedded database holds its lookup cache only (DESIGN §1: the
/// queue-scheduler alone owns the queue), so an emptyDir per pod loses nothing.
#[test]
fn the_directory_proxy_caches_on_an_emptydir() {
    let objects = template(&[], &[]);
    let config = role_config(&objects, "directory-proxy", &Secrets::new());
    let pod = workload(&objects, "directory-proxy").pod;
    let mount = mount_holding(&pod, &embedded_store_path(&config));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert!(volume.empty_dir.is_some());
}

#[test]
fn the_embedded_store_refuses_more_than_one_queue_scheduler() {
    for (set, named) in [
        ("queueScheduler.replicas=2", "queueScheduler.replicas=2"),
        (
            "queueScheduler.autoscaling.enabled=true",
            "queueScheduler.autoscaling.enabled",
        ),
        (
            "queueScheduler.keda.enabled=true",
            "queueScheduler.keda.enabled",
        ),
    ] {
        let error = template_of(&chart_dir(), &[], &[set]).expect_err(set);
        for why in [
            named,
            "store.type=embedded",
            "separate queue",
            "store.type=foundationdb",
        ] {
            assert!(error.contains(why), "{set}: {why:?} not in {error}");
        }
        template_of(&chart_dir(), &[], &[set, "store.type=foundationdb"])
            .unwrap_or_else(|e| panic!("{set} with FoundationDB: {e}"));
    }
    // A queue-scheduler may be stopped.
    template_of(&chart_dir(), &[], &["queueScheduler.replicas=0"]).unwrap();
}
