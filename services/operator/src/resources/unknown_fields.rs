//! Fields a resource carries that its type does not have.
//!
//! serde drops such fields silently, so a `Directory` with `spec.lookup.domains` (the field is
//! `spec.domains`) would render without local domains and without a word. The structural
//! schema of the CRD makes the API server prune them, but a CRD installed without the schema,
//! an older one, or `x-kubernetes-preserve-unknown-fields` lets them through, and
//! `ferrymail operator render` reads files that no API server has seen.
//!
//! `#[serde(deny_unknown_fields)]` does not fit: kube's derive generates the root type (whose
//! `apiVersion` and `kind` are not fields), and serde would stop at the first unknown field.
//! Instead resources are deserialized through `serde_ignored` (by serde's author; MIT or
//! Apache-2.0), which names every field the types skip, so all of them are reported at once.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A resource of type `K` read from `value`, with the paths (`spec.lookup`) of the fields `K`
/// does not have (in the order serde meets them: key order).
pub fn from_value<K: DeserializeOwned>(
    value: Value,
) -> Result<(K, Vec<String>), serde_json::Error> {
    let mut unknown = Vec::new();
    let resource = serde_ignored::deserialize(value, |path| {
        let segments = segments(&path);
        if is_users(&segments) {
            unknown.push(segments.join("."));
        }
    })?;
    Ok((resource, unknown))
}

/// Whether a skipped field is one the user wrote and the operator would miss. `apiVersion`
/// and `kind` are read by kube rather than by the type; `metadata` is the API server's (which
/// may know fields newer than this client) and `status` the operator's own.
fn is_users(segments: &[String]) -> bool {
    !matches!(
        segments.first().map(String::as_str),
        None | Some("apiVersion" | "kind" | "metadata" | "status")
    )
}

/// The keys and indices from the root to a field; the steps serde takes into an `Option` or
/// a newtype are not written in the resource, so they are left out.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut segments = segments(parent);
            match segments.last_mut() {
                Some(last) => last.push_str(&format!("[{index}]")),
                None => segments.push(format!("[{index}]")),
            }
            segments
        }
        Path::Map { parent, key } => {
            let mut segments = segments(parent);
            segments.push(key.clone());
            segments
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

/// The problem of a resource with unknown fields, for its status and `operator render`.
pub fn problem(unknown: &[String]) -> String {
    unknown
        .iter()
        .map(|field| format!("{field}: unknown field"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::resources::{Directory, RemoteHost};

    #[test]
    fn every_unknown_field_of_the_spec_is_named_with_its_path() {
        let value = json!({
            "apiVersion": "ferrymail.io/v1alpha1", "kind": "Directory",
            "metadata": {"name": "corp", "somethingNewer": 1},
            "spec": {"type": "lmtp", "address": "h", "lookup": {"domains": ["example.org"]},
                     "tls": {"implicit": true, "verify": false}},
            "status": {"conditions": [], "extra": 1},
            "extra": true
        });
        let (directory, unknown) = from_value::<Directory>(value).unwrap();
        assert!(directory.spec.domains.is_empty());
        assert_eq!(unknown, ["extra", "spec.lookup", "spec.tls.verify"]);
    }

    #[test]
    fn a_resource_with_known_fields_only_has_none() {
        let value = json!({
            "apiVersion": "ferrymail.io/v1alpha1", "kind": "RemoteHost",
            "metadata": {"name": "relay"},
            "spec": {"address": "h", "protocol": "smtp", "auth": {"username": "u",
                     "secretRef": {"name": "s", "key": "k"}}}
        });
        let (_, unknown) = from_value::<RemoteHost>(value).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
