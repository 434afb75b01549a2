//! YAML in and out. serde_yaml is archived upstream: this module is the only place that
//! names it, so replacing it later touches nothing else.

use serde_json::Value;

use crate::OperatorError;

/// Writes values as a stream of YAML documents, each starting with `---`.
pub fn to_documents(values: &[Value]) -> Result<String, OperatorError> {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        let text = serde_yaml::to_string(value)
            .map_err(|e| OperatorError::Manifest(format!("cannot write YAML: {e}")))?;
        out.push_str(&text);
    }
    Ok(out)
}

/// Reads every non-empty document of a YAML stream.
pub fn from_documents(text: &str) -> Result<Vec<Value>, OperatorError> {
    let mut values = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| OperatorError::Manifest(format!("invalid YAML: {e}")))?;
        if !value.is_null() {
            values.push(value);
        }
    }
    Ok(values)
}
