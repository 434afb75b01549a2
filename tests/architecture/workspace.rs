//! The workspace's crates as Cargo sees them (`cargo metadata --no-deps`): their names, their
//! dependencies on each other, and the root files of their library and binary targets.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// How a crate depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyKind {
    /// `[dependencies]`: part of what the crate is.
    Normal,
    /// `[build-dependencies]`: runs when the crate is built.
    Build,
    /// `[dev-dependencies]`: tests, examples and benchmarks only.
    Dev,
}

/// One dependency of a crate.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// The package name, e.g. `ferrymail-store`.
    pub name: String,
    /// Normal, build or dev.
    pub kind: DependencyKind,
}

/// One crate of the workspace.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package name, e.g. `ferrymail-config`.
    pub name: String,
    /// Every dependency, of every kind.
    pub dependencies: Vec<Dependency>,
    /// Root files (`src/lib.rs`, `src/main.rs`) of the targets under the crate's `src/`.
    pub source_roots: Vec<PathBuf>,
}

/// The workspace's crates.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Every member, in Cargo's order.
    pub packages: Vec<Package>,
}

impl Workspace {
    /// Asks Cargo about the workspace this test crate belongs to.
    pub fn load() -> Workspace {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the test crate lives in the workspace");
        // Cargo sets CARGO when it runs a test; the one that built it is the fallback.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("cargo metadata prints UTF-8");
        Workspace::from_metadata(&text).expect("cargo metadata prints what it documents")
    }

    /// Reads the JSON of `cargo metadata --format-version 1`.
    pub fn from_metadata(json: &str) -> Result<Workspace, String> {
        let metadata: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let packages = metadata["packages"]
            .as_array()
            .ok_or("no packages in the metadata")?
            .iter()
            .map(package)
            .collect::<Result<_, _>>()?;
        Ok(Workspace { packages })
    }

    /// The member named `name`, if there is one.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }
}

fn package(json: &Value) -> Result<Package, String> {
    let name = text(json, "name")?;
    let manifest = PathBuf::from(text(json, "manifest_path")?);
    let source_dir = manifest.with_file_name("src");
    let dependencies = json["dependencies"]
        .as_array()
        .ok_or_else(|| format!("{name}: no dependencies array"))?
        .iter()
        .map(dependency)
        .collect::<Result<_, _>>()?;
    let source_roots = json["targets"]
        .as_array()
        .ok_or_else(|| format!("{name}: no targets array"))?
        .iter()
        .filter(|target| is_library_or_binary(target))
        .map(|target| text(target, "src_path").map(PathBuf::from))
        .filter(|path| path.as_ref().map_or(true, |p| p.starts_with(&source_dir)))
        .collect::<Result<_, _>>()?;
    Ok(Package {
        name,
        dependencies,
        source_roots,
    })
}

/// Libraries and binaries are the crate; tests, benchmarks and examples only use it.
fn is_library_or_binary(target: &Value) -> bool {
    target["kind"].as_array().is_some_and(|kinds| {
        kinds.iter().any(|kind| {
            matches!(
                kind.as_str(),
                Some("lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro" | "bin")
            )
        })
    })
}

fn dependency(json: &Value) -> Result<Dependency, String> {
    let kind = match json["kind"].as_str() {
        None => DependencyKind::Normal,
        Some("build") => DependencyKind::Build,
        Some("dev") => DependencyKind::Dev,
        Some(other) => return Err(format!("unknown dependency kind {other:?}")),
    };
    Ok(Dependency {
        name: text(json, "name")?,
        kind,
    })
}

fn text(json: &Value, field: &str) -> Result<String, String> {
    json[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no {field:?} in {json}"))
}
