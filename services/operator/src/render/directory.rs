//! `Directory` → `[directory.<name>]`.

use toml::{Table, Value};

use super::remote_host::{cache_table, insert_opt, insert_sub, tls_table};
use super::{Section, name_of};
use crate::resources::{Directory, RemoteHost};

/// The section of one Directory, or why it cannot be rendered. A directory that names a
/// RemoteHost takes its type, address, port, TLS and (unless set) timeout from it.
pub(super) fn render(directory: &Directory, remotes: &[RemoteHost]) -> Result<Section, String> {
    let spec = &directory.spec;
    let mut table = Table::new();
    match &spec.remote_host_ref {
        Some(reference) => {
            let remote = remotes
                .iter()
                .find(|r| name_of(*r) == reference.name && r.metadata.deletion_timestamp.is_none())
                .ok_or_else(|| format!("RemoteHost {:?} does not exist", reference.name))?;
            let from = &remote.spec;
            table.insert("type".into(), from.protocol.as_str().into());
            table.insert("address".into(), from.address.clone().into());
            insert_opt(&mut table, "port", from.port.map(i64::from));
            insert_opt(
                &mut table,
                "timeout",
                spec.timeout.clone().or_else(|| from.timeout.clone()),
            );
            insert_sub(&mut table, "tls", from.tls.as_ref().map(tls_table));
        }
        None => {
            let kind = spec.type_.ok_or("type is required when address is set")?;
            let address = spec
                .address
                .clone()
                .ok_or("either address or remoteHostRef is required")?;
            table.insert("type".into(), kind.as_str().into());
            table.insert("address".into(), address.into());
            insert_opt(&mut table, "port", spec.port.map(i64::from));
            insert_opt(&mut table, "timeout", spec.timeout.clone());
            insert_sub(&mut table, "tls", spec.tls.as_ref().map(tls_table));
        }
    }
    if let Some(pool) = &spec.pool {
        let mut t = Table::new();
        insert_opt(
            &mut t,
            "max-connections",
            pool.max_connections.map(i64::from),
        );
        insert_sub(&mut table, "pool", Some(t));
    }
    if let Some(limits) = &spec.limits {
        let mut t = Table::new();
        insert_opt(&mut t, "rcpt", limits.rcpt.map(i64::from));
        insert_opt(&mut t, "auth-errors", limits.auth_errors.map(i64::from));
        insert_sub(&mut table, "limits", Some(t));
    }
    insert_sub(&mut table, "cache", spec.cache.as_ref().map(cache_table));
    let mut lookup = Table::new();
    if !spec.domains.is_empty() {
        lookup.insert("domains".into(), string_list(&spec.domains));
    }
    for (name, values) in &spec.lookups {
        if name == "domains" {
            return Err("list the local domains in domains, not in lookups".into());
        }
        lookup.insert(name.clone(), string_list(values));
    }
    insert_sub(&mut table, "lookup", Some(lookup));
    Ok(Section {
        table,
        secret_files: Default::default(),
    })
}

fn string_list(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}
