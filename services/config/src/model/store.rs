//! `store.<id>` and `storage.data`.

use std::path::PathBuf;

use crate::keys;
use crate::reader::TableReader;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::StoreType;

/// Where a store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// `type = "embedded"`.
    Embedded {
        /// Directory of the database.
        path: PathBuf,
    },
    /// `type = "foundationdb"`.
    FoundationDb {
        /// Cluster file; `None` lets the client find it.
        cluster_file: Option<PathBuf>,
    },
}

/// `store.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Backend and its location.
    pub backend: StoreBackend,
    /// Key prefix of this installation.
    pub prefix: String,
}

pub(crate) fn read(t: &TableReader<'_>) -> Option<Store> {
    let kind = t.get(&keys::STORE_TYPE);
    let path = t.get(&keys::STORE_PATH);
    let cluster_file = t.get(&keys::STORE_CLUSTER_FILE);
    let prefix = t.get(&keys::STORE_PREFIX);
    if prefix.as_deref() == Some("") {
        t.report("prefix", "must not be empty");
    }
    let backend = match kind? {
        StoreType::Embedded => {
            if cluster_file.is_some() {
                t.report("cluster-file", "applies only to type = \"foundationdb\"");
            }
            match path {
                Some(path) if !path.is_empty() => StoreBackend::Embedded { path: path.into() },
                _ => {
                    t.report("path", "an embedded store needs a path");
                    return None;
                }
            }
        }
        StoreType::Foundationdb => {
            if path.is_some() {
                t.report("path", "applies only to type = \"embedded\"");
            }
            StoreBackend::FoundationDb {
                cluster_file: cluster_file.map(PathBuf::from),
            }
        }
    };
    Some(Store {
        backend,
        prefix: prefix?,
    })
}
