//! `session.milter.<id>`: mail filters spoken to over the Sendmail/Postfix milter protocol
//! (rspamd's proxy worker, OpenDKIM, clamav-milter), with Stalwart's keys and defaults.

use std::time::Duration;

use super::bounds::require_nonzero;
use crate::keys;
use crate::reader::TableReader;
use crate::value::stage_rules::Stage;

/// Every action (SMFIF_* bit) of protocol version 2: add/change headers, replace the body,
/// add/delete recipients, quarantine.
pub const ACTIONS_V2: u32 = 0x3f;
/// Every action this server carries out with version 6: version 2's, change the sender and
/// add a recipient with parameters (SMFIF_SETSYMLIST, 0x100, is not offered).
pub const ACTIONS_V6: u32 = 0xff;
/// Every protocol step (SMFIP_* bit) this server can leave out or not wait a reply for.
pub const PROTOCOL_KNOWN: u32 = 0x001f_ffff;

/// `session.milter.<id>`, an enabled one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milter {
    /// `<id>`.
    pub id: String,
    /// `hostname`.
    pub hostname: String,
    /// `port`.
    pub port: u16,
    /// `stages`: where its verdict is asked for.
    pub stages: Vec<Stage>,
    /// `tls`.
    pub tls: bool,
    /// `allow-invalid-certs`.
    pub allow_invalid_certs: bool,
    /// `timeout.connect`.
    pub timeout_connect: Duration,
    /// `timeout.command`.
    pub timeout_command: Duration,
    /// `timeout.data`.
    pub timeout_data: Duration,
    /// `options.tempfail-on-error`.
    pub tempfail_on_error: bool,
    /// `options.max-response-size`, in bytes.
    pub max_response_size: u64,
    /// `options.version`: 2 or 6.
    pub version: u32,
    /// `options.flags.actions`.
    pub actions: u32,
    /// `options.flags.protocol`.
    pub protocol: u32,
}

/// Every `session.milter.<id>`, the enabled ones, by id; `None` when one is invalid.
pub(crate) fn read_all(session: &TableReader<'_>) -> Option<Vec<Milter>> {
    let mut milters = Vec::new();
    let mut valid = true;
    for (id, t) in session.table("milter").entries() {
        let enabled = t.get(&keys::SESSION_MILTER_ENABLE);
        match read(&id, &t) {
            Some(milter) if enabled == Some(true) => milters.push(milter),
            Some(_) => {}
            None => valid = false,
        }
    }
    valid.then_some(milters)
}

fn read(id: &str, t: &TableReader<'_>) -> Option<Milter> {
    let hostname = t.get(&keys::SESSION_MILTER_HOSTNAME);
    let port = t.get(&keys::SESSION_MILTER_PORT);
    let stages = t.get(&keys::SESSION_MILTER_STAGES);
    let tls = t.get(&keys::SESSION_MILTER_TLS);
    let allow_invalid_certs = t.get(&keys::SESSION_MILTER_ALLOW_INVALID_CERTS);
    let timeout = t.table("timeout");
    let timeout_connect = timeout.get(&keys::SESSION_MILTER_TIMEOUT_CONNECT);
    let timeout_command = timeout.get(&keys::SESSION_MILTER_TIMEOUT_COMMAND);
    let timeout_data = timeout.get(&keys::SESSION_MILTER_TIMEOUT_DATA);
    let options = t.table("options");
    let tempfail_on_error = options.get(&keys::SESSION_MILTER_TEMPFAIL_ON_ERROR);
    let max_response_size = options.get(&keys::SESSION_MILTER_MAX_RESPONSE_SIZE);
    let version = options.get(&keys::SESSION_MILTER_VERSION);
    let flags = options.table("flags");
    let actions = flags.get(&keys::SESSION_MILTER_FLAGS_ACTIONS);
    let protocol = flags.get(&keys::SESSION_MILTER_FLAGS_PROTOCOL);
    require_nonzero(&timeout, "connect", timeout_connect);
    require_nonzero(&timeout, "command", timeout_command);
    require_nonzero(&timeout, "data", timeout_data);
    let mut valid = true;
    if let Some(name) = &hostname
        && (name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        t.report(
            "hostname",
            format!("{name:?} is not a host name or address"),
        );
        valid = false;
    }
    if port == Some(0) {
        t.report("port", "must be a port number from 1 to 65535");
        valid = false;
    }
    let stages = match stages.map(|s| parse_stages(&s)) {
        Some(Ok(stages)) => Some(stages),
        Some(Err(problem)) => {
            t.report("stages", problem);
            None
        }
        None => None,
    };
    if max_response_size.is_some_and(|s| s.0 < 1024) {
        options.report(
            "max-response-size",
            "must be at least 1024 bytes (a milter's ordinary replies would not fit)",
        );
        valid = false;
    }
    if let Some(v) = version
        && v != 2
        && v != 6
    {
        options.report(
            "version",
            format!("milter protocol version {v} is not supported: use 6 or 2"),
        );
        valid = false;
    }
    let all_actions = if version == Some(2) {
        ACTIONS_V2
    } else {
        ACTIONS_V6
    };
    let actions = actions.unwrap_or(all_actions);
    if actions & !all_actions != 0 {
        flags.report(
            "actions",
            format!(
                "{actions:#x} names actions this server does not carry out: at most {all_actions:#x} with version {}",
                version.unwrap_or(6)
            ),
        );
        valid = false;
    }
    if protocol.is_some_and(|p| p & !PROTOCOL_KNOWN != 0) {
        flags.report(
            "protocol",
            format!("has bits outside the milter protocol's steps ({PROTOCOL_KNOWN:#x})"),
        );
        valid = false;
    }
    valid.then_some(())?;
    Some(Milter {
        id: id.to_owned(),
        hostname: hostname?,
        port: port?,
        stages: stages?,
        tls: tls?,
        allow_invalid_certs: allow_invalid_certs?,
        timeout_connect: timeout_connect.filter(|d| !d.is_zero())?,
        timeout_command: timeout_command.filter(|d| !d.is_zero())?,
        timeout_data: timeout_data.filter(|d| !d.is_zero())?,
        tempfail_on_error: tempfail_on_error?,
        max_response_size: max_response_size?.0,
        version: version?,
        actions,
        protocol: protocol?,
    })
}

/// The `stages` list: at least one, each stage once.
fn parse_stages(stages: &[Stage]) -> Result<Vec<Stage>, String> {
    if stages.is_empty() {
        return Err("needs at least one stage (the default is [\"data\"])".to_owned());
    }
    for (i, stage) in stages.iter().enumerate() {
        if stages[..i].contains(stage) {
            return Err(format!("\"{stage}\" is listed twice"));
        }
    }
    Ok(stages.to_vec())
}
