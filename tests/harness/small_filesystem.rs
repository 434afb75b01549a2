//! A small filesystem of the test's own (a tmpfs mounted on a temporary directory), to run
//! out of disk space on purpose, and files that fill it.
//!
//! Mounting needs the privilege to mount (root, as in CI); where it is not permitted the
//! test is skipped with the reason, since there is no other way to fill a real filesystem.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes in one filler file: space is given back a filler at a time.
pub const FILLER_BYTES: u64 = 1 << 20;

/// A tmpfs of a fixed size, unmounted on drop.
pub struct SmallFilesystem {
    dir: tempfile::TempDir,
    fillers: Vec<PathBuf>,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `bytes` on a new temporary directory; `Err` says why it cannot be
    /// (not permitted here), for the test to report as a skip.
    pub fn mount(bytes: u64) -> Result<SmallFilesystem, String> {
        let dir = tempfile::Builder::new()
            .prefix("small-fs.")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallFilesystem {
            dir,
            fillers: Vec::new(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left with filler files, but `keep` bytes (rounded to a filler).
    /// Returns how many fillers were written.
    pub fn fill_leaving(&mut self, keep: u64) -> usize {
        let mut written = 0;
        while self.free_bytes() >= keep + FILLER_BYTES {
            if !self.add_filler() {
                break;
            }
            written += 1;
        }
        written
    }

    /// Fills every byte left (the last filler is cut short by the full disk).
    pub fn fill(&mut self) {
        while self.add_filler() {}
    }

    /// Writes one filler file; false when the disk is full.
    fn add_filler(&mut self) -> bool {
        let path = self
            .path()
            .join(format!("filler-{:05}", self.fillers.len()));
        let mut file = std::fs::File::create(&path).unwrap();
        self.fillers.push(path);
        let block = vec![0xa5u8; 64 << 10];
        for _ in 0..FILLER_BYTES / block.len() as u64 {
            if file
                .write_all(&block)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Removes fillers until at least `bytes` are free again.
    pub fn release(&mut self, bytes: u64) {
        while self.free_bytes() < bytes {
            let Some(path) = self.fillers.pop() else {
                panic!(
                    "no filler left to free {bytes} bytes; {} free",
                    self.free_bytes()
                );
            };
            std::fs::remove_file(path).unwrap();
        }
    }

    /// Removes every filler.
    pub fn release_all(&mut self) {
        for path in self.fillers.drain(..) {
            std::fs::remove_file(path).unwrap();
        }
    }

    /// Bytes free now.
    pub fn free_bytes(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.path()).unwrap();
        stat.f_bavail * stat.f_frsize
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        // Lazily: a process under test may still hold a file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
