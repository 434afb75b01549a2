//! `session.*`: which directory checks logins and recipients.

use super::references::{Known, check_directory};
use crate::keys;
use crate::reader::TableReader;

/// `session.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// `session.auth.directory`.
    pub auth_directory: Option<String>,
    /// `session.rcpt.directory`.
    pub rcpt_directory: Option<String>,
}

fn directory(
    t: &TableReader<'_>,
    key: &crate::key::Key<String>,
    known: &Known<'_>,
) -> Option<String> {
    let name = t.get(key)?;
    if let Some(problem) = check_directory(known, &name) {
        t.report(key.name(), problem);
    }
    Some(name)
}

pub(crate) fn read(root: &TableReader<'_>, known: &Known<'_>) -> Session {
    let t = root.table("session");
    Session {
        auth_directory: directory(&t.table("auth"), &keys::SESSION_AUTH_DIRECTORY, known),
        rcpt_directory: directory(&t.table("rcpt"), &keys::SESSION_RCPT_DIRECTORY, known),
    }
}
