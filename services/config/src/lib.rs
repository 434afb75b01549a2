//! ferrymail's configuration: Stalwart-compatible TOML, read strictly.
//!
//! A configuration is a main file plus an include directory. Every problem — a TOML syntax
//! error, an unknown key, a wrong type, a bad duration, a table defined twice, a reference
//! to a remote that does not exist — is reported with its file, line and key path, all of
//! them at once. Reading is pure: no network, no store; files are read only for the
//! configuration itself, `%{file:…}%` substitutions and `file://` lookup lists.

mod diagnostics;
mod error;
mod key;
mod key_paths;
pub mod keys;
pub mod model;
mod reader;
pub mod reference;
mod source;
mod tree;
pub mod value;

use std::path::PathBuf;

pub use error::{ConfigError, ConfigErrors};
pub use key::{Key, KeyInfo, Presence};
pub use model::Config;
pub use source::ConfigSource;
pub use tree::display_path;
pub use value::{ByteSize, Environment, ProcessEnvironment, Secret, machine_hostname};

use diagnostics::Diagnostics;
use reader::TableReader;
use source::{SourceFile, SourceMap};
use tree::{Node, Value};
use value::Context;

/// A configuration with the identity of the text it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated configuration.
    pub config: Config,
    /// SHA-256 (hex) of the files' names and contents, including referenced files: changes
    /// exactly when any of them does.
    pub hash: String,
    /// The files read, in merge order.
    pub files: Vec<PathBuf>,
    /// Files read through `%{file:…}%` and `file://` lists (certificates, secrets, lists):
    /// watched like the configuration itself, and part of [`LoadedConfig::hash`].
    pub referenced_files: Vec<PathBuf>,
}

/// One reading of a configuration's files: what they held, and whether it loads.
#[derive(Debug)]
pub struct Reading {
    /// SHA-256 (hex) of what was read: [`LoadedConfig::hash`] when it loads, and computed the
    /// same way when it does not, so that refused content is known again when read again.
    pub hash: String,
    /// The configuration, or every problem with it.
    pub outcome: Result<LoadedConfig, ConfigErrors>,
}

/// Reads, merges and validates a configuration from disk.
pub fn load(source: &ConfigSource) -> Result<LoadedConfig, ConfigErrors> {
    load_with(source, &ProcessEnvironment)
}

/// [`load`] with a chosen environment for substitutions.
pub fn load_with(
    source: &ConfigSource,
    env: &dyn Environment,
) -> Result<LoadedConfig, ConfigErrors> {
    read_with(source, env).outcome
}

/// [`load`], telling what was read even when it does not load (to recognise it later).
pub fn read(source: &ConfigSource) -> Reading {
    read_with(source, &ProcessEnvironment)
}

/// [`read`] with a chosen environment for substitutions.
pub fn read_with(source: &ConfigSource, env: &dyn Environment) -> Reading {
    // Files that cannot be listed or read: what is known of them is the problem itself.
    let unreadable = |errors: ConfigErrors| Reading {
        hash: source::content_hash(std::iter::once(("", errors.to_string().as_str()))),
        outcome: Err(errors),
    };
    let file_error = |file: &std::path::Path, message: String| ConfigError {
        file: file.display().to_string(),
        line: 0,
        column: 0,
        key: String::new(),
        message,
    };
    let files = match source.files() {
        Ok(files) => files,
        Err(e) => {
            let dir = source.include_dir.as_deref().unwrap_or(&source.main);
            return unreadable(ConfigErrors(vec![file_error(
                dir,
                format!("cannot list the include directory: {e}"),
            )]));
        }
    };
    let mut documents = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => documents.push((file.display().to_string(), text)),
            Err(e) => errors.push(file_error(file, format!("cannot read: {e}"))),
        }
    }
    if !errors.is_empty() {
        return unreadable(ConfigErrors(errors));
    }
    let recorder = value::RecordingEnvironment::new(env);
    let content = source::content_hash(
        documents
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    );
    let outcome = load_documents(documents, &recorder);
    // The files read through substitutions count too, also those of a refused load.
    let hash = recorder.fold_into(&content);
    Reading {
        outcome: outcome.map(|(config, _)| LoadedConfig {
            config,
            hash: hash.clone(),
            files,
            referenced_files: recorder.files(),
        }),
        hash,
    }
}

/// Reads a configuration from texts, as if they were files with these names merged in order.
pub fn load_documents(
    documents: Vec<(String, String)>,
    env: &dyn Environment,
) -> Result<(Config, String), ConfigErrors> {
    let diagnostics = Diagnostics::default();
    let mut sources = SourceMap::new();
    let mut merged: Option<Node> = None;
    for (name, text) in documents {
        let file = sources.add(SourceFile::new(name, text));
        let Some(source) = sources.get(file) else {
            continue;
        };
        let node = tree::parse_file(&source.text, file, &diagnostics);
        match (&mut merged, node.value) {
            (
                Some(Node {
                    value: Value::Table(into),
                    ..
                }),
                Value::Table(from),
            ) => {
                tree::merge(into, from, &mut Vec::new(), &diagnostics);
            }
            (_, value) => {
                merged = Some(Node {
                    origin: node.origin,
                    value,
                })
            }
        }
    }
    let config = merged.as_ref().and_then(|root| {
        let cx = Context {
            diagnostics: &diagnostics,
            env,
        };
        let reader = TableReader::root(&cx, root);
        model::read(&reader)
        // The reader is dropped here, which reports the keys nobody asked for.
    });
    match config {
        Some(config) if diagnostics.is_empty() => Ok((config, sources.content_hash())),
        _ if diagnostics.is_empty() => Err(ConfigErrors(vec![ConfigError {
            file: String::new(),
            line: 0,
            column: 0,
            key: String::new(),
            message: "no configuration was given".into(),
        }])),
        _ => Err(diagnostics.into_errors(&sources)),
    }
}

/// Reads one configuration text (tests, previews of rendered files).
pub fn load_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    load_documents(
        vec![(name.to_string(), text.to_string())],
        &ProcessEnvironment,
    )
    .map(|(c, _)| c)
}
