//! One reconcile pass over a namespace.
//!
//! The calls, in order (the mock-API tests assert exactly this sequence):
//! 1. list RemoteHosts, list Directories (as raw objects, to find fields the types lack);
//! 2. get the rendered ConfigMap and Secret projection (the last applied output);
//! 3. get each Secret a live RemoteHost references, by name in sorted order;
//! 4. add the finalizer to live resources that lack it;
//! 5. server-side apply the Secret projection, then the ConfigMap, each when it changed
//!    (Secret first, so the files a new ConfigMap points at exist);
//! 6. remove the finalizer from resources being deleted, now that they are rendered out;
//! 7. patch the status of resources whose status changed, with an event for each
//!    resource that became invalid or valid again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Context;
use super::status::{self, Verdict};
use crate::OperatorError;
use crate::render::{self, HASH_KEY, Kind, Rendered, ResourceId, Secrets, UnknownFields};
use crate::resources::{Directory, RemoteHost, ResourceStatus, unknown_fields};

/// Finalizer that keeps a deleted resource until the configuration no longer has it.
pub const FINALIZER: &str = "ferrymail.io/rendered";

/// Labels on what the operator writes.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ferrymail-operator");

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Whether the ConfigMap or Secret projection was written.
    pub applied: bool,
    /// Content hash of the rendered files.
    pub hash: String,
    /// Resources that could not be rendered.
    pub invalid: Vec<String>,
}

/// A resource kind the operator renders.
trait Rendering:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
    const KIND: Kind;
    fn status(&self) -> Option<&ResourceStatus>;
}

impl Rendering for RemoteHost {
    const KIND: Kind = Kind::RemoteHost;
    fn status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }
}

impl Rendering for Directory {
    const KIND: Kind = Kind::Directory;
    fn status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }
}

/// Runs one pass, counting it in the metrics.
pub async fn reconcile_all(ctx: &Context) -> Result<Summary, OperatorError> {
    let started = Instant::now();
    let outcome = pass(ctx).await;
    ctx.metrics
        .pass(outcome.is_ok(), started.elapsed().as_secs_f64());
    outcome
}

async fn pass(ctx: &Context) -> Result<Summary, OperatorError> {
    let ns = &ctx.settings.namespace;
    let remotes_api: Api<RemoteHost> = Api::namespaced(ctx.client.clone(), ns);
    let directories_api: Api<Directory> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);

    let mut unknown_fields = UnknownFields::new();
    let mut remotes: Vec<RemoteHost> = list_checked(ctx, &mut unknown_fields).await?;
    let mut directories: Vec<Directory> = list_checked(ctx, &mut unknown_fields).await?;
    remotes.sort_by_key(render::name_of);
    directories.sort_by_key(render::name_of);

    let previous_map = config_maps.get_opt(&ctx.settings.config_map).await?;
    let previous_secret = secrets_api.get_opt(&ctx.settings.secret).await?;
    let previous = previous_map.as_ref().map(|map| {
        render::previous_from(
            &map.data.clone().unwrap_or_default(),
            secret_data(previous_secret.as_ref()),
        )
    });
    let secrets = fetch_referenced(&secrets_api, &remotes).await?;

    add_finalizers(&remotes_api, &remotes).await?;
    add_finalizers(&directories_api, &directories).await?;

    let outcome = render::render(
        &remotes,
        &directories,
        &secrets,
        previous.as_ref(),
        &ctx.settings.render,
        &unknown_fields,
    )?;
    let hash = outcome.rendered.hash();
    let applied = apply(ctx, &outcome.rendered, &hash, previous.as_ref()).await?;
    ctx.metrics.applied(&hash);

    remove_finalizers(&remotes_api, &remotes).await?;
    remove_finalizers(&directories_api, &directories).await?;

    let problems = &outcome.problems;
    let previous_names = previous.as_ref().map(|p| {
        (
            render_names(&p.remotes_toml, "remote"),
            render_names(&p.directories_toml, "directory"),
        )
    });
    let (old_remotes, old_directories) = previous_names.unwrap_or_default();
    report(ctx, &remotes_api, &remotes, problems, &old_remotes).await?;
    report(
        ctx,
        &directories_api,
        &directories,
        problems,
        &old_directories,
    )
    .await?;
    let count = |kind: Kind| problems.keys().filter(|id| id.kind == kind).count();
    let live = |n: usize, kind: Kind| n.saturating_sub(count(kind));
    ctx.metrics.resources(
        "RemoteHost",
        live(live_count(&remotes), Kind::RemoteHost),
        count(Kind::RemoteHost),
    );
    ctx.metrics.resources(
        "Directory",
        live(live_count(&directories), Kind::Directory),
        count(Kind::Directory),
    );
    Ok(Summary {
        applied,
        hash,
        invalid: problems.keys().map(ResourceId::to_string).collect(),
    })
}

/// Lists the resources of kind `K`, noting in `unknown` the fields each carries that `K` does
/// not have. They are listed as raw objects: a typed list would drop those fields unseen.
async fn list_checked<K: Rendering>(
    ctx: &Context,
    unknown: &mut UnknownFields,
) -> Result<Vec<K>, OperatorError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &ctx.settings.namespace,
        &ApiResource::erase::<K>(&()),
    );
    let mut resources = Vec::new();
    for object in api.list(&ListParams::default()).await?.items {
        let name = object.metadata.name.clone().unwrap_or_default();
        let invalid = |e: serde_json::Error| {
            OperatorError::Manifest(format!("{}/{name} cannot be read: {e}", K::KIND))
        };
        let value = serde_json::to_value(object).map_err(invalid)?;
        let (resource, fields) = unknown_fields::from_value::<K>(value).map_err(invalid)?;
        if !fields.is_empty() {
            let id = ResourceId {
                kind: K::KIND,
                name,
            };
            tracing::warn!(
                resource = %id,
                fields = %fields.join(", "),
                "resource has fields the operator does not know; it is not rendered"
            );
            unknown.insert(id, fields);
        }
        resources.push(resource);
    }
    Ok(resources)
}

fn live_count<K: Resource>(resources: &[K]) -> usize {
    resources
        .iter()
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .count()
}

/// The section names of a rendered file.
fn render_names(text: &str, root: &str) -> BTreeSet<String> {
    text.parse::<toml::Table>()
        .ok()
        .and_then(|mut t| match t.remove(root) {
            Some(toml::Value::Table(sections)) => Some(sections.keys().cloned().collect()),
            _ => None,
        })
        .unwrap_or_default()
}

fn secret_data(secret: Option<&Secret>) -> BTreeMap<String, Vec<u8>> {
    secret
        .and_then(|s| s.data.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// Every Secret a live RemoteHost references; missing ones are left out (render reports).
async fn fetch_referenced(
    api: &Api<Secret>,
    remotes: &[RemoteHost],
) -> Result<Secrets, OperatorError> {
    let names: BTreeSet<&str> = remotes
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter_map(|r| r.spec.auth.as_ref())
        .map(|auth| auth.secret_ref.name.as_str())
        .collect();
    let mut secrets = BTreeMap::new();
    for name in names {
        if let Some(secret) = api.get_opt(name).await? {
            let mut data = secret_data(Some(&secret));
            // stringData is write-only in the API, but a Secret read back from a fake or an
            // old server may still carry it.
            for (k, v) in secret.string_data.unwrap_or_default() {
                data.entry(k).or_insert_with(|| v.into_bytes());
            }
            secrets.insert(name.to_string(), data);
        }
    }
    Ok(Secrets::Fetched(secrets))
}

/// Adds the finalizer to live resources without it (merge patch guarded by resourceVersion).
async fn add_finalizers<K: Rendering>(api: &Api<K>, resources: &[K]) -> Result<(), OperatorError> {
    for resource in resources {
        let meta = resource.meta();
        if meta.deletion_timestamp.is_some() || resource.finalizers().iter().any(|f| f == FINALIZER)
        {
            continue;
        }
        let mut finalizers = resource.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        patch_finalizers(api, resource, finalizers).await?;
    }
    Ok(())
}

/// Removes the finalizer from resources being deleted.
async fn remove_finalizers<K: Rendering>(
    api: &Api<K>,
    resources: &[K],
) -> Result<(), OperatorError> {
    for resource in resources {
        if resource.meta().deletion_timestamp.is_none()
            || !resource.finalizers().iter().any(|f| f == FINALIZER)
        {
            continue;
        }
        let finalizers = resource
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        patch_finalizers(api, resource, finalizers).await?;
    }
    Ok(())
}

async fn patch_finalizers<K: Rendering>(
    api: &Api<K>,
    resource: &K,
    finalizers: Vec<String>,
) -> Result<(), OperatorError> {
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": resource.resource_version(),
        }
    });
    api.patch(
        &resource.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Applies the Secret projection, then the ConfigMap, each only when it differs from
/// `previous`: an unchanged pass writes nothing.
async fn apply(
    ctx: &Context,
    rendered: &Rendered,
    hash: &str,
    previous: Option<&Rendered>,
) -> Result<bool, OperatorError> {
    let secret_changed = previous.is_none_or(|p| p.secret_files != rendered.secret_files);
    let files_changed = previous.is_none_or(|p| {
        p.remotes_toml != rendered.remotes_toml || p.directories_toml != rendered.directories_toml
    });
    let settings = &ctx.settings;
    let params = PatchParams::apply(&settings.field_manager).force();
    let labels = BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())]);
    if secret_changed {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(settings.secret.clone()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                rendered
                    .secret_files
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                    .collect(),
            ),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(ctx.client.clone(), &settings.namespace)
            .patch(&settings.secret, &params, &Patch::Apply(&secret))
            .await?;
    }
    if files_changed {
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(settings.config_map.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(
                    "ferrymail.io/config-hash".to_string(),
                    hash.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (
                    render::REMOTES_FILE.to_string(),
                    rendered.remotes_toml.clone(),
                ),
                (
                    render::DIRECTORIES_FILE.to_string(),
                    rendered.directories_toml.clone(),
                ),
                (HASH_KEY.to_string(), hash.to_string()),
            ])),
            ..ConfigMap::default()
        };
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &settings.namespace)
            .patch(&settings.config_map, &params, &Patch::Apply(&config_map))
            .await?;
    }
    Ok(secret_changed || files_changed)
}

/// Writes changed statuses and publishes events for resources whose validity changed.
async fn report<K: Rendering>(
    ctx: &Context,
    api: &Api<K>,
    resources: &[K],
    problems: &BTreeMap<ResourceId, String>,
    previously_rendered: &BTreeSet<String>,
) -> Result<(), OperatorError> {
    let now = (ctx.now)();
    for resource in resources {
        if resource.meta().deletion_timestamp.is_some() {
            continue;
        }
        let name = resource.name_any();
        let id = ResourceId {
            kind: K::KIND,
            name: name.clone(),
        };
        let problem = problems.get(&id).map(String::as_str);
        let verdict = Verdict {
            problem,
            retained: problem.is_some() && previously_rendered.contains(&name),
            config_map: &ctx.settings.config_map,
        };
        let current = resource.status();
        let desired = status::desired(current, resource.meta().generation, &verdict, &now);
        if current == Some(&desired) {
            continue;
        }
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": desired })),
        )
        .await?;
        let was_invalid = current
            .and_then(|s| s.condition(status::RENDERED))
            .map(|c| c.reason == "Invalid");
        let event = match (problem, was_invalid) {
            (Some(problem), Some(true))
                if current
                    .and_then(|s| s.condition(status::RENDERED))
                    .is_some_and(|c| c.message == problem) =>
            {
                None
            }
            (Some(problem), _) => Some(Event {
                type_: EventType::Warning,
                reason: "Invalid".into(),
                note: Some(truncate(problem, 1000)),
                action: "Render".into(),
                secondary: None,
            }),
            (None, Some(true)) | (None, None) => Some(Event {
                type_: EventType::Normal,
                reason: "Rendered".into(),
                note: Some(format!(
                    "rendered into ConfigMap {}",
                    ctx.settings.config_map
                )),
                action: "Render".into(),
                secondary: None,
            }),
            (None, Some(false)) => None,
        };
        if let Some(event) = event {
            // An event is a courtesy: failing to record one must not fail the pass.
            if let Err(error) = ctx
                .recorder
                .publish(&event, &resource.object_ref(&()))
                .await
            {
                tracing::warn!(%error, resource = %id, "cannot record an event");
            }
        }
    }
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
