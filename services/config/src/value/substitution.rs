//! `%{env:NAME}%` and `%{file:/path}%` inside string values, as Stalwart writes them.

use std::path::Path;

use zeroize::Zeroizing;

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
///
/// Values read from files and the environment are often secrets: every intermediate copy is
/// wiped when dropped, and the result is allocated once at its final size, so that growing
/// it leaves no stray copy in freed memory.
pub(crate) fn expand(text: &str, node: &Node, cx: &Context<'_>) -> Result<String, Invalid> {
    let mut pieces: Vec<Zeroizing<String>> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("%{") {
        pieces.push(Zeroizing::new(rest[..start].to_owned()));
        let after = &rest[start + 2..];
        let Some(end) = after.find("}%") else {
            return Err(Invalid::at(
                node,
                "unterminated substitution: \"%{\" without a closing \"}%\"",
            ));
        };
        pieces.push(substitute(&after[..end], node, cx)?);
        rest = &after[end + 2..];
    }
    let mut out = String::with_capacity(pieces.iter().map(|p| p.len()).sum::<usize>() + rest.len());
    for piece in &pieces {
        out.push_str(piece);
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute(spec: &str, node: &Node, cx: &Context<'_>) -> Result<Zeroizing<String>, Invalid> {
    match spec.split_once(':') {
        Some(("env", name)) => cx.env.var(name.trim()).map(Zeroizing::new).ok_or_else(|| {
            Invalid::at(
                node,
                format!("environment variable {:?} is not set", name.trim()),
            )
        }),
        Some(("file", path)) => {
            let path = Path::new(path.trim());
            let text =
                cx.env.read_file(path).map(Zeroizing::new).map_err(|e| {
                    Invalid::at(node, format!("cannot read {}: {e}", path.display()))
                })?;
            // Secret files usually end in a newline that is not part of the secret.
            let value = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            Ok(Zeroizing::new(value.to_owned()))
        }
        _ => Err(Invalid::at(
            node,
            format!(
                "unknown substitution \"%{{{spec}}}%\" (use %{{env:NAME}}% or %{{file:/path}}%)"
            ),
        )),
    }
}
