//! `RemoteHost` → `[remote.<name>]`.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::{Kind, RenderSettings, Secrets, Section, file_reference, name_of, projection_prefix};
use crate::resources::{Cache, RemoteHost, Tls};

/// The section of one RemoteHost, or why it cannot be rendered.
pub(super) fn render(
    remote: &RemoteHost,
    secrets: &Secrets,
    settings: &RenderSettings,
) -> Result<Section, String> {
    let spec = &remote.spec;
    let mut table = Table::new();
    table.insert("address".into(), spec.address.clone().into());
    insert_opt(&mut table, "port", spec.port.map(i64::from));
    table.insert("protocol".into(), spec.protocol.as_str().into());
    insert_opt(&mut table, "concurrency", spec.concurrency.map(i64::from));
    insert_opt(&mut table, "timeout", spec.timeout.clone());
    insert_opt(&mut table, "lookup", spec.lookup);
    insert_sub(&mut table, "tls", spec.tls.as_ref().map(tls_table));
    if let Some(limits) = &spec.limits {
        let mut t = Table::new();
        insert_opt(&mut t, "errors", limits.errors.map(i64::from));
        insert_opt(&mut t, "requests", limits.requests.map(i64::from));
        insert_sub(&mut table, "limits", Some(t));
    }
    insert_sub(&mut table, "cache", spec.cache.as_ref().map(cache_table));
    if let Some(probe) = &spec.probe {
        let mut t = Table::new();
        insert_opt(&mut t, "interval", probe.interval.clone());
        insert_sub(&mut table, "probe", Some(t));
    }
    let mut secret_files = BTreeMap::new();
    if let Some(auth) = &spec.auth {
        let key = format!(
            "{}auth.secret",
            projection_prefix(Kind::RemoteHost, &name_of(remote))
        );
        let reference = &auth.secret_ref;
        if let Some(value) = secrets.value(&reference.name, &reference.key)? {
            secret_files.insert(key.clone(), value);
        }
        let mut t = Table::new();
        t.insert("username".into(), auth.username.clone().into());
        t.insert("secret".into(), file_reference(settings, &key).into());
        table.insert("auth".into(), Value::Table(t));
    }
    Ok(Section {
        table,
        secret_files,
    })
}

/// `tls.*` of either resource.
pub(super) fn tls_table(tls: &Tls) -> Table {
    let mut t = Table::new();
    insert_opt(&mut t, "implicit", tls.implicit);
    insert_opt(&mut t, "allow-invalid-certs", tls.allow_invalid_certs);
    insert_opt(&mut t, "allow-plain-text", tls.allow_plain_text);
    t
}

/// `cache.*` of either resource.
pub(super) fn cache_table(cache: &Cache) -> Table {
    let mut t = Table::new();
    insert_opt(
        &mut t,
        "entries",
        cache.entries.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    );
    if let Some(ttl) = &cache.ttl {
        let mut ttl_table = Table::new();
        insert_opt(&mut ttl_table, "positive", ttl.positive.clone());
        insert_opt(&mut ttl_table, "negative", ttl.negative.clone());
        insert_sub(&mut t, "ttl", Some(ttl_table));
    }
    t
}

/// Sets `key` when the resource sets it; unset keys keep the loader's default.
pub(super) fn insert_opt(table: &mut Table, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        table.insert(key.to_string(), value.into());
    }
}

/// Adds a sub-table when it has any key.
pub(super) fn insert_sub(table: &mut Table, key: &str, sub: Option<Table>) {
    if let Some(sub) = sub.filter(|t| !t.is_empty()) {
        table.insert(key.to_string(), Value::Table(sub));
    }
}
