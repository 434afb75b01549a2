//! `%{env:NAME}%` and `%{file:/path}%` inside string values, as Stalwart writes them.

use std::path::Path;

use super::{Context, Invalid};
use crate::tree::Node;

/// Where substitutions and machine facts are looked up; tests supply their own.
pub trait Environment {
    /// The value of an environment variable.
    fn var(&self, name: &str) -> Option<String>;
    /// The text of a file.
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
    /// The machine's host name (the default of `server.hostname`); `None` when it cannot be
    /// had as text.
    fn hostname(&self) -> Option<String> {
        machine_hostname()
    }
}

/// The host name the kernel reports (`gethostname(2)`; in a pod, the pod's name).
pub fn machine_hostname() -> Option<String> {
    // gethostname rather than /proc/sys/kernel/hostname: the same call on every Unix.
    gethostname::gethostname().into_string().ok()
}

/// The real process environment and file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Replaces every `%{kind:argument}%` in `text`.
pub(crate) fn expand(text: &str, node: &Node, cx: &Context<'_>) -> Result<String, Invalid> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("%{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}%") else {
            return Err(Invalid::at(
                node,
                "unterminated substitution: \"%{\" without a closing \"}%\"",
            ));
        };
        out.push_str(&substitute(&after[..end], node, cx)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute(spec: &str, node: &Node, cx: &Context<'_>) -> Result<String, Invalid> {
    match spec.split_once(':') {
        Some(("env", name)) => cx.env.var(name.trim()).ok_or_else(|| {
            Invalid::at(
                node,
                format!("environment variable {:?} is not set", name.trim()),
            )
        }),
        Some(("file", path)) => {
            let path = Path::new(path.trim());
            cx.env
                .read_file(path)
                // Secret files usually end in a newline that is not part of the secret.
                .map(|text| {
                    text.strip_suffix('\n')
                        .map(|t| t.strip_suffix('\r').unwrap_or(t))
                        .unwrap_or(&text)
                        .to_string()
                })
                .map_err(|e| Invalid::at(node, format!("cannot read {}: {e}", path.display())))
        }
        _ => Err(Invalid::at(
            node,
            format!(
                "unknown substitution \"%{{{spec}}}%\" (use %{{env:NAME}}% or %{{file:/path}}%)"
            ),
        )),
    }
}
