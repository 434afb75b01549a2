//! Collects every problem of a load so that all of them are reported together.

use std::cell::RefCell;

use crate::error::{ConfigError, ConfigErrors};
use crate::source::{Origin, SourceMap};

#[derive(Debug)]
struct Pending {
    origin: Origin,
    key: String,
    message: String,
    /// For duplicates: where the first definition is.
    first: Option<Origin>,
}

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    pending: RefCell<Vec<Pending>>,
}

impl Diagnostics {
    /// Records a problem at `origin` under the dotted key path `key`.
    pub(crate) fn report(&self, origin: Origin, key: String, message: String) {
        self.pending.borrow_mut().push(Pending {
            origin,
            key,
            message,
            first: None,
        });
    }

    /// Records a key or table defined a second time under the dotted key path `key`, with
    /// where it was first defined.
    pub(crate) fn report_duplicate(
        &self,
        origin: Origin,
        key: String,
        what: &str,
        first: Option<&Origin>,
    ) {
        self.pending.borrow_mut().push(Pending {
            origin,
            key,
            message: format!("duplicate {what}"),
            first: first.cloned(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.borrow().is_empty()
    }

    /// Turns the pending problems into errors with file names and lines, sorted.
    pub(crate) fn into_errors(self, sources: &SourceMap) -> ConfigErrors {
        let mut errors: Vec<(usize, usize, ConfigError)> = self
            .pending
            .into_inner()
            .into_iter()
            .map(|p| {
                let (file, line, column) = sources.locate(&p.origin);
                let message = match &p.first {
                    Some(first) => {
                        let (name, line, _) = sources.locate(first);
                        format!("{} (first defined at {name}:{line})", p.message)
                    }
                    None => p.message,
                };
                (
                    p.origin.file.0,
                    p.origin.span.start,
                    ConfigError {
                        file,
                        line,
                        column,
                        key: p.key,
                        message,
                    },
                )
            })
            .collect();
        errors.sort_by(|a, b| (a.0, a.1, &a.2.key).cmp(&(b.0, b.1, &b.2.key)));
        errors.dedup_by(|a, b| a.2 == b.2);
        ConfigErrors(errors.into_iter().map(|(_, _, e)| e).collect())
    }
}
