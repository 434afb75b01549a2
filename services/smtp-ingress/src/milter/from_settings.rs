//! The milters of a session, built from the configuration.

use std::sync::Arc;

use super::session::MilterSession;
use crate::filter::Filter;
use crate::settings::Settings;

/// One filter per enabled `session.milter.<id>`, in id order, none of them connected yet.
pub(crate) fn session_milters(settings: &Settings) -> Vec<Box<dyn Filter>> {
    settings
        .milters
        .iter()
        .map(|m| Box::new(MilterSession::new(Arc::new(m.clone()))) as Box<dyn Filter>)
        .collect()
}
