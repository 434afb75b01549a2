//! A recipient state as `ferrymail queue` filters take it (`--state temp-failed`).

use clap::ValueEnum;
use ferrymail_rpc::queue::RecipientState;

/// A recipient state on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// Not attempted yet.
    Pending,
    /// Failed temporarily; will be retried.
    TempFailed,
    /// Failed permanently.
    PermFailed,
    /// Delivered.
    Delivered,
    /// Cancelled by an administrator.
    Cancelled,
}

impl From<StateArg> for RecipientState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Pending => RecipientState::Pending,
            StateArg::TempFailed => RecipientState::TempFailed,
            StateArg::PermFailed => RecipientState::PermFailed,
            StateArg::Delivered => RecipientState::Delivered,
            StateArg::Cancelled => RecipientState::Cancelled,
        }
    }
}
