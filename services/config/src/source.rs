//! The files a configuration is read from, and positions within them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where a configuration comes from: a main file plus an optional include directory whose
/// `*.toml` files are merged in name order (the operator writes `remote` and `directory`
/// sections there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The main configuration file.
    pub main: PathBuf,
    /// Directory of further `*.toml` files, merged after the main file.
    pub include_dir: Option<PathBuf>,
}

impl ConfigSource {
    /// A source made of one file.
    pub fn file(main: impl Into<PathBuf>) -> Self {
        Self {
            main: main.into(),
            include_dir: None,
        }
    }

    /// Adds an include directory.
    pub fn with_include_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.include_dir = Some(dir.into());
        self
    }

    /// The files to read, main first, then the include directory's `*.toml` files in name
    /// order. Hidden entries are skipped: Kubernetes mounts a ConfigMap as `..data` and
    /// timestamped hidden directories next to the visible symlinks.
    pub fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = vec![self.main.clone()];
        if let Some(dir) = &self.include_dir {
            let mut included = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !name.starts_with('.') && name.ends_with(".toml") && path.is_file() {
                    included.push(path);
                }
            }
            included.sort();
            files.extend(included);
        }
        Ok(files)
    }
}

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileId(pub(crate) usize);

/// A position in a file: byte span of a key or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) file: FileId,
    pub(crate) span: Range<usize>,
}

/// One file's name and text, with line starts for turning offsets into lines.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) name: String,
    pub(crate) text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub(crate) fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |prefix| prefix.chars().count() + 1);
        (line.max(1), column)
    }
}

/// All files of one load; the defaults' pseudo-file is always id 0.
#[derive(Debug)]
pub(crate) struct SourceMap {
    files: Vec<SourceFile>,
}

/// Name shown for problems in built-in defaults (which a test keeps free of problems).
pub(crate) const DEFAULTS_NAME: &str = "<default>";

impl SourceMap {
    pub(crate) fn new() -> Self {
        Self {
            files: vec![SourceFile::new(DEFAULTS_NAME, "")],
        }
    }

    pub(crate) const DEFAULTS: FileId = FileId(0);

    pub(crate) fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(self.files.len() - 1)
    }

    pub(crate) fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0)
    }

    /// File name, line and column of an origin.
    pub(crate) fn locate(&self, origin: &Origin) -> (String, usize, usize) {
        match self.get(origin.file) {
            Some(file) if origin.file != Self::DEFAULTS => {
                let (line, column) = file.position(origin.span.start);
                (file.name.clone(), line, column)
            }
            _ => (DEFAULTS_NAME.to_string(), 0, 0),
        }
    }

    /// SHA-256 over every real file's name and text: the identity of a loaded config.
    pub(crate) fn content_hash(&self) -> String {
        content_hash(
            self.files
                .iter()
                .skip(1)
                .map(|f| (f.name.as_str(), f.text.as_str())),
        )
    }
}

/// SHA-256 (hex) over files' names (the last component) and texts, in order.
pub(crate) fn content_hash<'a>(files: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in files {
        let name = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name);
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let file = SourceFile::new("a.toml", "a = 1\nbc = \"é\"\n\nx");
        assert_eq!(file.position(0), (1, 1));
        assert_eq!(file.position(4), (1, 5));
        assert_eq!(file.position(6), (2, 1));
        assert_eq!(file.position(11), (2, 6));
        assert_eq!(file.position(17), (4, 1));
    }
}
