//! Lookup lists: local domains and `directory.<name>.lookup.<list>`. The matcher lives in the
//! config crate so that the queue-scheduler's routing matches lists exactly as lookups do.

pub(crate) use ferrymail_config::model::lists::Lists;
