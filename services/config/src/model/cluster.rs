//! `cluster.*`: where split roles find each other's gRPC services.

use crate::keys;
use crate::reader::TableReader;

/// `cluster.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cluster {
    /// `cluster.directory.endpoint`.
    pub directory_endpoint: Option<String>,
    /// `cluster.queue.endpoint`.
    pub queue_endpoint: Option<String>,
}

fn endpoint(t: &TableReader<'_>, key: &crate::key::Key<String>) -> Option<String> {
    let value = t.get(key)?;
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        t.report(
            key.name(),
            format!("invalid endpoint {value:?}: expected http://host:port or https://host:port"),
        );
    }
    Some(value)
}

pub(crate) fn read(root: &TableReader<'_>) -> Cluster {
    let t = root.table("cluster");
    Cluster {
        directory_endpoint: endpoint(&t.table("directory"), &keys::CLUSTER_DIRECTORY_ENDPOINT),
        queue_endpoint: endpoint(&t.table("queue"), &keys::CLUSTER_QUEUE_ENDPOINT),
    }
}
