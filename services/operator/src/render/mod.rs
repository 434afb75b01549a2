//! Rendering resources into the TOML a person would write by hand.
//!
//! Pure and deterministic: the same resources give byte-identical files (tables are sorted,
//! only keys the resource sets are written, defaults stay with the configuration loader).
//! Secret values never appear in the text: a password becomes `%{file:<dir>/<key>}%`, the
//! file being a key of the Secret projection mounted next to the rendered files.
//!
//! Each resource is checked alone by the real configuration loader; one that does not load
//! is reported and keeps its last good rendering (taken from the previous output), so one bad
//! edit never removes a working remote from the pods' configuration.

mod directory;
mod remote_host;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::OperatorError;
use crate::resources::{Directory, RemoteHost};

/// File name of the rendered remotes in the ConfigMap and the include directory.
pub const REMOTES_FILE: &str = "remotes.toml";
/// File name of the rendered directories.
pub const DIRECTORIES_FILE: &str = "directories.toml";
/// ConfigMap key holding the content hash (not `*.toml`, so the loader ignores it).
pub const HASH_KEY: &str = "config-hash";

/// Which resource kind a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A `RemoteHost`.
    RemoteHost,
    /// A `Directory`.
    Directory,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::RemoteHost => "RemoteHost",
            Kind::Directory => "Directory",
        })
    }
}

/// A resource by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// Its kind.
    pub kind: Kind,
    /// Its `metadata.name`, which is also its id in the configuration.
    pub name: String,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// What is known of the Secrets resources reference.
#[derive(Debug, Clone)]
pub enum Secrets {
    /// Read from the API: secret name → key → value. A missing Secret or key is a problem.
    Fetched(BTreeMap<String, BTreeMap<String, Vec<u8>>>),
    /// Offline rendering (GitOps preview): references are trusted, values are not known.
    Unknown,
}

impl Secrets {
    /// The value of `name`/`key`: `Ok(None)` when values are not known.
    fn value(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Secrets::Unknown => Ok(None),
            Secrets::Fetched(secrets) => match secrets.get(name) {
                None => Err(format!("Secret {name:?} does not exist")),
                Some(data) => match data.get(key) {
                    None => Err(format!("Secret {name:?} has no key {key:?}")),
                    Some(value) => Ok(Some(value.clone())),
                },
            },
        }
    }
}

/// The rendered files and the Secret projection they point at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// `remote.<id>` sections.
    pub remotes_toml: String,
    /// `directory.<name>` sections.
    pub directories_toml: String,
    /// Projection key → value: the files `%{file:}%` points at.
    pub secret_files: BTreeMap<String, Vec<u8>>,
}

impl Rendered {
    /// SHA-256 (hex) of the two files' names and texts: changes exactly when they do.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, text) in [
            (REMOTES_FILE, &self.remotes_toml),
            (DIRECTORIES_FILE, &self.directories_toml),
        ] {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where pods find the projected Secret files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    /// Directory the Secret projection is mounted at in every pod.
    pub secret_dir: PathBuf,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            secret_dir: PathBuf::from("/etc/ferrymail/conf.d"),
        }
    }
}

/// The result of rendering: the files, and what is wrong with which resource.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Files to apply.
    pub rendered: Rendered,
    /// Resources that could not be rendered, with the reason; each is either left out or,
    /// when the previous output had it, kept at its last good rendering.
    pub problems: BTreeMap<ResourceId, String>,
}

/// One rendered section: its TOML table and the Secret files it points at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Section {
    pub(crate) table: toml::Table,
    pub(crate) secret_files: BTreeMap<String, Vec<u8>>,
}

/// The text of `%{file:…}%` pointing at projection key `key`.
pub(crate) fn file_reference(settings: &RenderSettings, key: &str) -> String {
    format!("%{{file:{}}}%", settings.secret_dir.join(key).display())
}

/// The fields each resource carries that its type does not have (see
/// [`crate::resources::unknown_fields`]); a resource listed here is not rendered.
pub type UnknownFields = BTreeMap<ResourceId, Vec<String>>;

/// Renders every resource not being deleted. `previous` is the last applied output. A
/// resource with unknown fields is refused like one that does not load: what it meant to
/// say is not known.
pub fn render(
    remotes: &[RemoteHost],
    directories: &[Directory],
    secrets: &Secrets,
    previous: Option<&Rendered>,
    settings: &RenderSettings,
    unknown_fields: &UnknownFields,
) -> Result<Outcome, OperatorError> {
    let mut problems = BTreeMap::new();
    let previous_remotes = previous.map(|p| parse_sections(&p.remotes_toml, "remote"));
    let previous_directories = previous.map(|p| parse_sections(&p.directories_toml, "directory"));
    let mut rendered = Rendered::default();

    let mut remote_sections = BTreeMap::new();
    for remote in live(remotes) {
        let name = name_of(remote);
        let id = ResourceId {
            kind: Kind::RemoteHost,
            name: name.clone(),
        };
        let section = known_fields_only(&id, unknown_fields)
            .and_then(|()| remote_host::render(remote, secrets, settings))
            .and_then(|section| validate::section("remote", &name, section));
        keep_or_retain(
            id,
            section,
            previous_remotes.as_ref(),
            previous,
            &mut remote_sections,
            &mut problems,
        );
    }
    let mut directory_sections = BTreeMap::new();
    for directory in live(directories) {
        let name = name_of(directory);
        let id = ResourceId {
            kind: Kind::Directory,
            name: name.clone(),
        };
        let section = known_fields_only(&id, unknown_fields)
            .and_then(|()| directory::render(directory, remotes))
            .and_then(|section| validate::section("directory", &name, section));
        keep_or_retain(
            id,
            section,
            previous_directories.as_ref(),
            previous,
            &mut directory_sections,
            &mut problems,
        );
    }
    rendered.remotes_toml = to_file("remote", &remote_sections, &mut rendered.secret_files)?;
    rendered.directories_toml =
        to_file("directory", &directory_sections, &mut rendered.secret_files)?;
    validate::whole(&rendered)?;
    Ok(Outcome { rendered, problems })
}

/// Refuses a resource with fields its type does not have, naming them.
fn known_fields_only(id: &ResourceId, unknown_fields: &UnknownFields) -> Result<(), String> {
    match unknown_fields.get(id) {
        Some(fields) if !fields.is_empty() => {
            Err(crate::resources::unknown_fields::problem(fields))
        }
        _ => Ok(()),
    }
}

/// Resources that are not being deleted.
fn live<K: kube::Resource>(resources: &[K]) -> impl Iterator<Item = &K> {
    resources
        .iter()
        .filter(|r| r.meta().deletion_timestamp.is_none())
}

/// The `metadata.name` of a resource (empty when absent, which the loader then refuses).
pub(crate) fn name_of<K: kube::Resource>(resource: &K) -> String {
    resource.meta().name.clone().unwrap_or_default()
}

/// Keeps a good section, or records the problem and carries over the previous one.
fn keep_or_retain(
    id: ResourceId,
    section: Result<Section, String>,
    previous_sections: Option<&BTreeMap<String, toml::Table>>,
    previous: Option<&Rendered>,
    into: &mut BTreeMap<String, Section>,
    problems: &mut BTreeMap<ResourceId, String>,
) {
    match section {
        Ok(section) => {
            into.insert(id.name.clone(), section);
        }
        Err(problem) => {
            if let (Some(table), Some(previous)) =
                (previous_sections.and_then(|s| s.get(&id.name)), previous)
            {
                let prefix = projection_prefix(id.kind, &id.name);
                let secret_files = previous
                    .secret_files
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                into.insert(
                    id.name.clone(),
                    Section {
                        table: table.clone(),
                        secret_files,
                    },
                );
            }
            problems.insert(id, problem);
        }
    }
}

/// The projection keys of one resource start with this.
pub(crate) fn projection_prefix(kind: Kind, name: &str) -> String {
    match kind {
        Kind::RemoteHost => format!("remote.{name}."),
        Kind::Directory => format!("directory.{name}."),
    }
}

/// The sections under `root` of a previously rendered file (none when it does not parse).
fn parse_sections(text: &str, root: &str) -> BTreeMap<String, toml::Table> {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return BTreeMap::new();
    };
    match table.remove(root) {
        Some(toml::Value::Table(sections)) => sections
            .into_iter()
            .filter_map(|(name, value)| match value {
                toml::Value::Table(t) => Some((name, t)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// One file holding `[root.<name>]` for every section, sorted by name.
fn to_file(
    root: &str,
    sections: &BTreeMap<String, Section>,
    secret_files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<String, OperatorError> {
    let mut tables = toml::Table::new();
    for (name, section) in sections {
        tables.insert(name.clone(), toml::Value::Table(section.table.clone()));
        secret_files.extend(section.secret_files.clone());
    }
    let mut out = String::from(
        "# Rendered by the ferrymail operator from Kubernetes resources; edits here are replaced.\n",
    );
    if tables.is_empty() {
        return Ok(out);
    }
    let mut root_table = toml::Table::new();
    root_table.insert(root.to_string(), toml::Value::Table(tables));
    let text = toml::to_string(&root_table)
        .map_err(|e| OperatorError::Manifest(format!("cannot write TOML: {e}")))?;
    out.push('\n');
    out.push_str(&text);
    Ok(out)
}

/// Reads a previous rendering back from ConfigMap data and Secret projection data.
pub fn previous_from(
    config_map: &BTreeMap<String, String>,
    secret_files: BTreeMap<String, Vec<u8>>,
) -> Rendered {
    Rendered {
        remotes_toml: config_map.get(REMOTES_FILE).cloned().unwrap_or_default(),
        directories_toml: config_map
            .get(DIRECTORIES_FILE)
            .cloned()
            .unwrap_or_default(),
        secret_files,
    }
}
