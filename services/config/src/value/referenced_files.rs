//! Files a configuration reads through `%{file:…}%` and `file://` lists: recorded so that a
//! change to one of them (a rotated certificate, a new secret) reloads the configuration.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Environment;

/// An environment that remembers every file read through it, with a digest of its text.
pub(crate) struct RecordingEnvironment<'a> {
    inner: &'a dyn Environment,
    read: RefCell<Vec<(PathBuf, [u8; 32])>>,
}

impl<'a> RecordingEnvironment<'a> {
    pub(crate) fn new(inner: &'a dyn Environment) -> Self {
        Self {
            inner,
            read: RefCell::default(),
        }
    }

    /// The files read, sorted and without repeats.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.read.borrow().iter().map(|(p, _)| p.clone()).collect();
        files.sort();
        files.dedup();
        files
    }

    /// Folds the files' paths and contents into `hash`, so the hash changes when they do.
    pub(crate) fn fold_into(&self, hash: &str) -> String {
        let mut read = self.read.borrow().clone();
        if read.is_empty() {
            return hash.to_string();
        }
        read.sort();
        let mut hasher = Sha256::new();
        hasher.update(hash.as_bytes());
        for (path, digest) in read {
            let path = path.to_string_lossy();
            hasher.update((path.len() as u64).to_le_bytes());
            hasher.update(path.as_bytes());
            hasher.update(digest);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Environment for RecordingEnvironment<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.inner.var(name)
    }

    fn hostname(&self) -> Option<String> {
        self.inner.hostname()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        let text = self.inner.read_file(path)?;
        self.read
            .borrow_mut()
            .push((path.to_path_buf(), Sha256::digest(text.as_bytes()).into()));
        Ok(text)
    }
}
