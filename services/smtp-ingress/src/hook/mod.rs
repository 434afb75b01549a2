//! MTA hooks (`session.hook.<id>`): HTTP endpoints asked at the SMTP stages with Stalwart's
//! JSON request ([`request`]), whose answer is parsed and checked whole ([`response`])
//! before the session sees it, sent by one client per process ([`client`]); each hook is
//! one of the session's [filters](crate::filter) ([`filter`]).

mod client;
mod filter;
mod request;
mod response;

#[cfg(test)]
mod tests;

use crate::Shared;
use crate::filter::Filter;
use crate::settings::Settings;

pub(crate) use client::HookClient;

/// The enabled hooks of `settings`, in the order of their ids, for one session.
pub(crate) fn session_hooks(shared: &Shared, settings: &Settings) -> Vec<Box<dyn Filter>> {
    settings
        .hooks
        .iter()
        .map(|hook| {
            Box::new(filter::MtaHook::new(
                hook.clone(),
                shared.hook_client.clone(),
                shared.connections.clone(),
            )) as Box<dyn Filter>
        })
        .collect()
}
