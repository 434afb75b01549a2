//! The CustomResourceDefinitions, generated from the Rust types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::OperatorError;
use crate::resources::{Directory, RemoteHost};

/// Both CRDs, in a stable order.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    vec![RemoteHost::crd(), Directory::crd()]
}

/// Both CRDs as one YAML stream: what `ferrymail crd` prints and the chart ships.
pub fn yaml() -> Result<String, OperatorError> {
    let values = definitions()
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OperatorError::Manifest(format!("cannot serialize a CRD: {e}")))?;
    crate::yaml::to_documents(&values)
}
