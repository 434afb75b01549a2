//! Checks that names used in one section exist in another.

use std::collections::BTreeMap;

use super::directory::Directory;
use super::remote::Remote;
use super::store::Store;
use crate::value::rules::{ListRef, Rules, Variable};
use crate::value::stage_rules::Stage;
use crate::value::{Hop, NextHop, RemoteProtocol};

/// The named things a reference may point at.
pub(crate) struct Known<'a> {
    pub(crate) remotes: &'a BTreeMap<String, Remote>,
    pub(crate) directories: &'a BTreeMap<String, Directory>,
    pub(crate) stores: &'a BTreeMap<String, Store>,
}

fn names<T>(map: &BTreeMap<String, T>) -> String {
    if map.is_empty() {
        "none is configured".to_string()
    } else {
        format!(
            "configured: {}",
            map.keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Why a directory reference points at nothing, if it does.
pub(crate) fn check_directory(known: &Known<'_>, name: &str) -> Option<String> {
    (!known.directories.contains_key(name))
        .then(|| format!("no directory named {name:?} ({})", names(known.directories)))
}

/// Why a store reference points at nothing, if it does.
pub(crate) fn check_store(known: &Known<'_>, id: &str) -> Option<String> {
    (!known.stores.contains_key(id))
        .then(|| format!("no store named {id:?} ({})", names(known.stores)))
}

/// Variables a next-hop rule, and a quota's or throttle's `match`, may test: those of the
/// message, not of the session.
pub(crate) const NEXT_HOP_VARIABLES: &[Variable] = &[
    Variable::Rcpt,
    Variable::RcptDomain,
    Variable::Sender,
    Variable::SenderDomain,
];

/// Everything wrong with the remotes and lists a next-hop setting names.
pub(crate) fn check_next_hop(known: &Known<'_>, next_hop: &NextHop) -> Vec<String> {
    let mut problems = Vec::new();
    for hop in next_hop.0.outcomes() {
        if let Hop::Remote(id) = hop {
            match known.remotes.get(id) {
                None => problems.push(format!("no remote named {id:?} ({})", names(known.remotes))),
                Some(remote) if remote.protocol == RemoteProtocol::Imap => {
                    problems.push(format!("remote {id:?} speaks imap and cannot take mail"))
                }
                Some(_) => {}
            }
        }
    }
    for branch in &next_hop.0.branches {
        if !NEXT_HOP_VARIABLES.contains(&branch.variable) {
            problems.push(format!(
                "variable {:?} is not known when routing; use rcpt, rcpt-domain, sender or sender-domain",
                branch.variable.as_str()
            ));
        }
        if let Some(problem) = check_list(known, &branch.list) {
            problems.push(problem);
        }
    }
    problems
}

/// Everything wrong with a rule list run at `stage`: variables without a value by then, and
/// lists that do not exist.
pub(crate) fn check_stage_rule<T>(
    known: &Known<'_>,
    stage: Stage,
    rules: &Rules<T>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for branch in &rules.branches {
        if !stage.variables().contains(&branch.variable) {
            let usable: Vec<&str> = stage.variables().iter().map(|v| v.as_str()).collect();
            problems.push(format!(
                "variable {:?} is not known at the {stage} stage; use {}",
                branch.variable.as_str(),
                usable.join(", ")
            ));
        }
        if let Some(problem) = check_list(known, &branch.list) {
            problems.push(problem);
        }
    }
    problems
}

/// Why a list reference points at nothing, if it does.
pub(crate) fn check_list(known: &Known<'_>, list: &ListRef) -> Option<String> {
    match list {
        ListRef::Remote { id } => match known.remotes.get(id) {
            None => Some(format!(
                "in-list {list}: no remote named {id:?} ({})",
                names(known.remotes)
            )),
            Some(remote) if !remote.lookup => Some(format!(
                "in-list {list}: remote {id:?} does not have lookup = true"
            )),
            Some(_) => None,
        },
        ListRef::Directory {
            directory,
            list: name,
        } => match known.directories.get(directory) {
            None => Some(format!(
                "in-list {list}: no directory named {directory:?} ({})",
                names(known.directories)
            )),
            Some(d) if !d.lists.contains_key(name) => Some(format!(
                "in-list {list}: directory {directory:?} has no lookup list {name:?}"
            )),
            Some(_) => None,
        },
    }
}
