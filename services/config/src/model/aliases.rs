//! `session.rcpt.aliases`: a lookup list of `alias = target, …` entries that replace a
//! recipient by its targets, as Postfix's virtual alias maps do.

use std::collections::BTreeMap;

use super::references::{Known, check_list};
use crate::keys;
use crate::reader::TableReader;
use crate::value::rules::ListRef;

/// Most targets of one alias: a list, not a mailing-list server.
pub const MAX_TARGETS: usize = 1000;

/// Aliases by address (lower-cased), each with its targets in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases(pub BTreeMap<String, Vec<String>>);

impl Aliases {
    /// The targets of `address`, if it is an alias (ASCII case does not matter).
    pub fn targets(&self, address: &str) -> Option<&[String]> {
        self.0.get(&address.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// Reads `session.rcpt.aliases` from the `rcpt` table; `None` when a problem was reported.
pub(crate) fn read(rcpt: &TableReader<'_>, known: &Known<'_>) -> Option<Aliases> {
    let key = &keys::SESSION_RCPT_ALIASES;
    let Some(reference) = rcpt.get(key) else {
        return (!rcpt.contains(key.name())).then(Aliases::default);
    };
    let entries = match lookup_entries(&reference, known) {
        Ok(entries) => entries,
        Err(problem) => {
            rcpt.report(key.name(), problem);
            return None;
        }
    };
    let mut aliases = BTreeMap::new();
    for (n, entry) in entries.iter().enumerate() {
        match parse_entry(entry) {
            Ok((alias, _)) if aliases.contains_key(&alias) => {
                let problem = format!("{reference} entry {}: {alias} is given twice", n + 1);
                rcpt.report(key.name(), problem);
                return None;
            }
            Ok((alias, targets)) => {
                aliases.insert(alias, targets);
            }
            Err(problem) => {
                rcpt.report(
                    key.name(),
                    format!("{reference} entry {}: {problem}", n + 1),
                );
                return None;
            }
        }
    }
    Some(Aliases(aliases))
}

/// The entries of the lookup list `reference` names.
fn lookup_entries<'k>(reference: &str, known: &Known<'k>) -> Result<&'k [String], String> {
    let list = ListRef::parse(reference)?;
    if let Some(problem) = check_list(known, &list) {
        return Err(problem);
    }
    match &list {
        ListRef::Directory { directory, list } => known
            .directories
            .get(directory)
            .and_then(|d| d.lists.get(list))
            .map(|l| l.values.as_slice())
            .ok_or_else(|| format!("no lookup list {reference}")),
        ListRef::Remote { .. } => Err(format!(
            "{reference}: aliases come from a directory's lookup list, not a remote"
        )),
    }
}

/// `alias@domain = target@domain, …`.
fn parse_entry(entry: &str) -> Result<(String, Vec<String>), String> {
    let (alias, targets) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not `alias = target, …`"))?;
    let alias = address(alias.trim())?.to_ascii_lowercase();
    let targets = targets
        .split(',')
        .map(|t| address(t.trim()).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.len() > MAX_TARGETS {
        return Err(format!("{alias} has more than {MAX_TARGETS} targets"));
    }
    Ok((alias, targets))
}

/// An address with a local part and a domain, nothing that breaks an SMTP command.
fn address(text: &str) -> Result<&str, String> {
    let valid = text.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !text
        .contains(|c: char| c.is_whitespace() || c.is_control() || "<>,".contains(c));
    if valid {
        Ok(text)
    } else {
        Err(format!("{text:?} is not an address"))
    }
}
