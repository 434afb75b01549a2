//! Offline rendering: resources read from YAML files, rendered by the same code as the
//! controller (`ferrymail operator render -f FILE…`), for GitOps previews and tests.

use std::path::Path;

use serde_json::Value;

use crate::OperatorError;
use crate::render::{self, Kind, Outcome, RenderSettings, ResourceId, Secrets, UnknownFields};
use crate::resources::{Directory, GROUP, RemoteHost, VERSION, unknown_fields};

/// Every non-empty document of a YAML stream, as JSON values (chart tests, tools).
pub fn documents(text: &str) -> Result<Vec<Value>, OperatorError> {
    crate::yaml::from_documents(text)
}

/// The resources found in manifests.
#[derive(Debug, Default, Clone)]
pub struct Manifests {
    /// Every `RemoteHost`.
    pub remotes: Vec<RemoteHost>,
    /// Every `Directory`.
    pub directories: Vec<Directory>,
    /// The fields of each resource that its type does not have (they make it refused).
    pub unknown_fields: UnknownFields,
}

impl Manifests {
    /// Reads the resources of one YAML stream; other kinds are skipped, `List`s opened.
    pub fn add_yaml(&mut self, source: &str, text: &str) -> Result<(), OperatorError> {
        for document in crate::yaml::from_documents(text)
            .map_err(|e| OperatorError::Manifest(format!("{source}: {e}")))?
        {
            self.add_value(source, document)?;
        }
        Ok(())
    }

    /// Reads a YAML file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), OperatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| OperatorError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.add_yaml(&path.display().to_string(), &text)
    }

    fn add_value(&mut self, source: &str, value: Value) -> Result<(), OperatorError> {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ours = api_version == format!("{GROUP}/{VERSION}");
        let invalid = |e: serde_json::Error| {
            OperatorError::Manifest(format!("{source}: invalid {kind}: {e}"))
        };
        match kind.as_str() {
            "List" => {
                let items = value.get("items").and_then(Value::as_array).cloned();
                for item in items.unwrap_or_default() {
                    self.add_value(source, item)?;
                }
            }
            "RemoteHost" if ours => {
                let (remote, unknown) = unknown_fields::from_value(value).map_err(invalid)?;
                self.note_unknown(Kind::RemoteHost, &remote, unknown);
                self.remotes.push(remote);
            }
            "Directory" if ours => {
                let (directory, unknown) = unknown_fields::from_value(value).map_err(invalid)?;
                self.note_unknown(Kind::Directory, &directory, unknown);
                self.directories.push(directory);
            }
            _ => {}
        }
        Ok(())
    }

    fn note_unknown<K: kube::Resource>(&mut self, kind: Kind, resource: &K, unknown: Vec<String>) {
        if unknown.is_empty() {
            return;
        }
        let id = ResourceId {
            kind,
            name: render::name_of(resource),
        };
        self.unknown_fields.entry(id).or_default().extend(unknown);
    }

    /// Renders the resources; Secret values are not known offline, only referenced.
    pub fn render(&self, settings: &RenderSettings) -> Result<Outcome, OperatorError> {
        let mut remotes = self.remotes.clone();
        let mut directories = self.directories.clone();
        remotes.sort_by_key(render::name_of);
        directories.sort_by_key(render::name_of);
        render::render(
            &remotes,
            &directories,
            &Secrets::Unknown,
            None,
            settings,
            &self.unknown_fields,
        )
    }
}
