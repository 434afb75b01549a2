//! Re-reading the configuration when its files change.
//!
//! The main file's directory and the include directory are watched (not the files
//! themselves: editors and Kubernetes replace files by renaming, which a watch on the old
//! file would miss). Events are debounced; the new text is validated whole and swapped in
//! atomically; an invalid change is logged with every problem and the old configuration
//! stays in force.
//!
//! Only events that can change a file's content count: a watch also sees every open and read
//! of the files, this process's own among them, which would otherwise make each reload
//! trigger the next. And what is read is compared with what was read last, loaded or
//! refused, so that the same content is reported at most once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::{ConfigSource, LoadedConfig};
use ferrymail_telemetry::Metrics;
use notify::{EventKind, RecursiveMode, Watcher};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::restart_keys;
use crate::role::Role;

/// Quiet time after the last file event before reloading: a ConfigMap update or an editor's
/// save is several events in a burst.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The `result` of a reload that was applied.
const RELOAD_SUCCESS: &str = "success";
/// The `result` of a reload refused as invalid.
const RELOAD_FAILURE: &str = "failure";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabel {
    hash: String,
}

/// Metrics of the active configuration and of reloads.
#[derive(Clone)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
    active: Family<HashLabel, Gauge>,
    rendered: Family<HashLabel, Gauge>,
}

impl ReloadMetrics {
    /// Registers `config_reloads_total{result}` and `config_hash_info{hash}`.
    pub fn register(metrics: &Metrics, initial_hash: &str) -> Self {
        let this = Self {
            reloads: Family::default(),
            active: Family::default(),
            rendered: Family::default(),
        };
        metrics.register(
            "config_reloads_total",
            "Configuration reloads after a file change, by result (success or failure).",
            this.reloads.clone(),
        );
        metrics.register(
            "config_hash_info",
            "SHA-256 of the configuration in force; always 1.",
            this.active.clone(),
        );
        // Both results exist from the start, at 0, so a dashboard or an alert on failures
        // sees a series before the first reload.
        for result in [RELOAD_SUCCESS, RELOAD_FAILURE] {
            drop(this.reloads.get_or_create(&ResultLabel { result }));
        }
        metrics.register(
            "config_rendered_hash_info",
            "Hash of the operator-rendered files in force (remotes.toml, directories.toml); \
             equals the rendered ConfigMap's config-hash once this pod runs it. Always 1.",
            this.rendered.clone(),
        );
        this.set_active(initial_hash);
        this
    }

    /// Records which operator rendering `loaded` includes, if any.
    pub fn set_rendered(&self, loaded: &LoadedConfig) {
        self.rendered.clear();
        if let Some(hash) = rendered_hash(loaded) {
            self.rendered.get_or_create(&HashLabel { hash }).set(1);
        }
    }

    fn set_active(&self, hash: &str) {
        self.active.clear();
        self.active
            .get_or_create(&HashLabel {
                hash: hash.to_string(),
            })
            .set(1);
    }

    fn record(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }
}

/// The operator's content hash of the rendered files among `loaded`'s include files, computed
/// as the operator computes it; `None` when the configuration has no rendered files.
fn rendered_hash(loaded: &LoadedConfig) -> Option<String> {
    use ferrymail_operator::render::{DIRECTORIES_FILE, REMOTES_FILE, Rendered};
    let text_of = |name: &str| {
        // The main file (first) is the user's, whatever its name.
        let file = loaded
            .files
            .iter()
            .skip(1)
            .find(|f| f.file_name().is_some_and(|n| n == name))?;
        // Re-read: a file changed since the load is followed by another reload.
        std::fs::read_to_string(file).ok()
    };
    let (remotes, directories) = (text_of(REMOTES_FILE), text_of(DIRECTORIES_FILE));
    if remotes.is_none() && directories.is_none() {
        return None;
    }
    let rendered = Rendered {
        remotes_toml: remotes.unwrap_or_default(),
        directories_toml: directories.unwrap_or_default(),
        secret_files: Default::default(),
    };
    Some(rendered.hash())
}

/// The directory holding `file` (`.` for a bare file name).
fn parent_dir(file: &std::path::Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Directories to watch: the main file's, the include directory, and those of files the
/// configuration reads (certificates rotated by cert-manager, mounted secrets).
fn watched_dirs(source: &ConfigSource, loaded: &LoadedConfig) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::iter::once(parent_dir(&source.main))
        .chain(source.include_dir.clone())
        .chain(loaded.referenced_files.iter().map(|f| parent_dir(f)))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// A watch on the configuration's directories, installed before the role reports itself
/// started so that no change made after that can be missed.
pub struct ConfigWatcher {
    source: ConfigSource,
    changes: mpsc::UnboundedReceiver<()>,
    // Dropping the watcher ends the watch.
    watcher: notify::RecommendedWatcher,
    watching: Vec<PathBuf>,
}

impl ConfigWatcher {
    /// Starts watching the directories of `loaded`'s files.
    pub fn install(source: ConfigSource, loaded: &LoadedConfig) -> notify::Result<Self> {
        let (events, changes) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| may_change_content(&e.kind)) {
                    // A closed channel means the process is stopping; nothing to do then.
                    let _ = events.send(());
                }
            })?;
        let watching = watched_dirs(&source, loaded);
        for dir in &watching {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            tracing::debug!(dir = %dir.display(), "watching for configuration changes");
        }
        Ok(Self {
            source,
            changes,
            watcher,
            watching,
        })
    }

    /// Starts watching directories a new configuration reads from.
    fn follow(&mut self, loaded: &LoadedConfig) {
        for dir in watched_dirs(&self.source, loaded) {
            if self.watching.contains(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watching.push(dir),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch; changes there need a restart")
                }
            }
        }
    }

    /// Publishes each valid new version of the configuration on `sender` until `shutdown`.
    /// `role` says which changed keys wait for a restart.
    pub async fn run(
        mut self,
        role: Role,
        sender: watch::Sender<Arc<LoadedConfig>>,
        metrics: ReloadMetrics,
        shutdown: CancellationToken,
    ) {
        let mut reloader = Reloader::new(self.source.clone(), role, sender.borrow().clone());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = self.changes.recv() => if event.is_none() { return },
            }
            // Debounce: wait until the files have been quiet for a moment.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.changes.recv()).await {}
            reloader.reload(&sender, &metrics);
            let current = sender.borrow().clone();
            self.follow(&current);
        }
    }
}

/// Whether a file event can mean new content: creating, writing, renaming, removing (and
/// events a backend cannot tell apart). Opening, reading and closing cannot, nor can
/// closing after a write, which follows a modification already seen.
fn may_change_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    )
}

/// Reads the files after a change and publishes what loads.
struct Reloader {
    source: ConfigSource,
    role: Role,
    /// The configuration the process started with: what its listeners, store and clients
    /// were made from.
    started: Arc<LoadedConfig>,
    /// Hash of what was read last, loaded or refused.
    last_read: String,
}

impl Reloader {
    fn new(source: ConfigSource, role: Role, started: Arc<LoadedConfig>) -> Self {
        Self {
            source,
            role,
            last_read: started.hash.clone(),
            started,
        }
    }

    fn reload(&mut self, sender: &watch::Sender<Arc<LoadedConfig>>, metrics: &ReloadMetrics) {
        let reading = ferrymail_config::read(&self.source);
        if reading.hash == self.last_read {
            // Written again with the same bytes, or touched: reported already, if at all.
            tracing::debug!(hash = %reading.hash, "configuration files unchanged");
            return;
        }
        self.last_read = reading.hash;
        let current = sender.borrow().clone();
        match reading.outcome {
            Ok(loaded) if loaded.hash == current.hash => {
                tracing::info!(hash = %loaded.hash, "configuration files are back to the configuration in force");
            }
            Ok(loaded) => {
                self.warn_restart_keys(&current, &loaded);
                tracing::info!(hash = %loaded.hash, previous = %current.hash, "configuration reloaded");
                metrics.set_active(&loaded.hash);
                metrics.set_rendered(&loaded);
                metrics.record(RELOAD_SUCCESS);
                sender.send_replace(Arc::new(loaded));
            }
            Err(errors) => {
                metrics.record(RELOAD_FAILURE);
                tracing::error!(
                    problems = errors.len(),
                    "configuration change refused; the previous configuration stays in force:\n{errors}"
                );
            }
        }
    }

    /// One warning per key of `next` that this process applies only at start.
    fn warn_restart_keys(&self, previous: &LoadedConfig, next: &LoadedConfig) {
        let keys = restart_keys::to_warn(
            self.role,
            &self.started.config,
            &previous.config,
            &next.config,
        );
        for key in keys {
            tracing::warn!(
                key = %key.key,
                "{} {}; takes effect after a restart",
                key.key,
                key.change
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ferrymail_operator::render::Rendered;

    #[test]
    fn opening_and_reading_the_files_is_no_change() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode,
        };
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Other,
        ] {
            assert!(!may_change_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(may_change_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn the_events_a_read_of_the_files_causes_are_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "[server]\nhostname = \"h\"\n").unwrap();
        let (sender, events) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = sender.send(event);
        })
        .unwrap();
        watcher
            .watch(dir.path(), RecursiveMode::NonRecursive)
            .unwrap();

        // What a reload does to the files, then a change to mark the end: the watch reports
        // events in order, so whatever comes before the marker was caused by the read.
        assert!(ferrymail_config::load(&ConfigSource::file(&file)).is_ok());
        let marker = dir.path().join("marker");
        std::fs::write(&marker, "").unwrap();
        let mut before_marker = Vec::new();
        loop {
            let event = events
                .recv_timeout(Duration::from_secs(30))
                .expect("the marker's event")
                .unwrap();
            if event.paths.contains(&marker) {
                break;
            }
            before_marker.push(event.kind);
        }
        assert!(!before_marker.is_empty(), "the read was seen by the watch");
        for kind in before_marker {
            assert!(!may_change_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn the_rendered_hash_is_the_operators() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.toml");
        std::fs::write(&main, "[server]\nhostname = \"h\"\n").unwrap();
        let include = dir.path().join("conf.d");
        std::fs::create_dir(&include).unwrap();
        let source = ConfigSource::file(&main).with_include_dir(&include);
        let loaded = ferrymail_config::load(&source).unwrap();
        assert_eq!(rendered_hash(&loaded), None, "no rendered files");

        let remotes = "[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n";
        let directories = "# none\n";
        std::fs::write(include.join("remotes.toml"), remotes).unwrap();
        std::fs::write(include.join("directories.toml"), directories).unwrap();
        let loaded = ferrymail_config::load(&source).unwrap();
        let expected = Rendered {
            remotes_toml: remotes.into(),
            directories_toml: directories.into(),
            secret_files: Default::default(),
        }
        .hash();
        assert_eq!(rendered_hash(&loaded), Some(expected));
    }
}
