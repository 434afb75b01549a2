//! `session.*`: directories, limits and AUTH policy of SMTP/LMTP sessions.

use std::time::Duration;

use super::aliases::{self, Aliases};
use super::bounds::{require_nonzero, require_positive};
use super::references::{Known, check_directory, check_stage_rule};
use crate::key::Key;
use crate::keys;
use crate::reader::TableReader;
use crate::value::rules::Rules;
use crate::value::rules::Variable;
use crate::value::stage_rules::{RejectRule, Stage, StageRules};
use crate::value::{ByteSize, RewriteRules};

// The values of this section's keys, where other crates have always found them.
pub use crate::value::RelayRule;

/// `session.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `session.auth.directory`.
    pub auth_directory: Option<String>,
    /// `session.rcpt.directory`.
    pub rcpt_directory: Option<String>,
    /// `session.timeout`.
    pub timeout: Duration,
    /// `session.duration`.
    pub duration: Duration,
    /// `session.command-deadline`.
    pub command_deadline: Duration,
    /// `session.errors.total`.
    pub max_errors: u32,
    /// `session.auth.allow-plain-text`.
    pub auth_allow_plain_text: bool,
    /// `session.auth.errors.total`.
    pub max_auth_errors: u32,
    /// `session.rcpt.relay`.
    pub relay: RelayRule,
    /// `session.rcpt.max-recipients`.
    pub max_recipients: u32,
    /// `session.data.limits.size`.
    pub max_message_size: ByteSize,
    /// `session.data.limits.messages`.
    pub max_messages: u32,
    /// `session.data.timeout`.
    pub data_timeout: Duration,
    /// `session.data.min-rate`, in bytes per second; 0 for none.
    pub data_min_rate: u32,
    /// `session.<stage>.reject`.
    pub reject: StageRules,
    /// `session.mail.rewrite`.
    pub mail_rewrite: RewriteRules,
    /// `session.rcpt.rewrite`.
    pub rcpt_rewrite: RewriteRules,
    /// `session.rcpt.aliases`.
    pub aliases: Aliases,
    /// `session.dnsbl.*`: DNS blocklists.
    pub dnsbl: super::dnsbl::Dnsbl,
    /// `session.milter.<id>`, the enabled ones, by id.
    pub milters: Vec<super::milter::Milter>,
    /// `session.hook.<id>`, the enabled MTA hooks in the order of their ids.
    pub hooks: Vec<super::hook::Hook>,
}

/// Reads a `rewrite` key, refusing rules that test a variable other than `allowed`.
fn rewrite(
    t: &TableReader<'_>,
    key: &Key<RewriteRules>,
    allowed: &[Variable],
) -> Option<RewriteRules> {
    let rules = t.get(key)?;
    if let Some(variable) = rules.variables().find(|v| !allowed.contains(v)) {
        t.report(
            key.name(),
            format!(
                "a rewrite rule cannot test {variable}: use {}",
                allowed
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        );
        return None;
    }
    Some(rules)
}

fn directory(t: &TableReader<'_>, key: &Key<String>, known: &Known<'_>) -> Option<String> {
    let name = t.get(key)?;
    if let Some(problem) = check_directory(known, &name) {
        t.report(key.name(), problem);
    }
    Some(name)
}

/// Reports the variables and lists a rule run at `stage` cannot use.
fn check_rule<T>(
    t: &TableReader<'_>,
    name: &str,
    stage: Stage,
    rules: Option<&Rules<T>>,
    known: &Known<'_>,
) {
    for problem in rules
        .into_iter()
        .flat_map(|r| check_stage_rule(known, stage, r))
    {
        t.report(name, problem);
    }
}

/// Reads `session.<stage>.reject` from the stage's table.
fn reject(
    t: &TableReader<'_>,
    key: &Key<RejectRule>,
    stage: Stage,
    known: &Known<'_>,
) -> Option<RejectRule> {
    let rule = t.get(key);
    check_rule(t, key.name(), stage, rule.as_ref().map(|r| &r.0), known);
    rule
}

pub(crate) fn read(root: &TableReader<'_>, known: &Known<'_>) -> Option<Session> {
    let t = root.table("session");
    let timeout = t.get(&keys::SESSION_TIMEOUT);
    let duration = t.get(&keys::SESSION_DURATION);
    let command_deadline = t.get(&keys::SESSION_COMMAND_DEADLINE);
    let max_errors = t.table("errors").get(&keys::SESSION_ERRORS_TOTAL);
    let connect_reject = reject(
        &t.table("connect"),
        &keys::SESSION_CONNECT_REJECT,
        Stage::Connect,
        known,
    );
    let ehlo_reject = reject(
        &t.table("ehlo"),
        &keys::SESSION_EHLO_REJECT,
        Stage::Ehlo,
        known,
    );
    let auth = t.table("auth");
    let auth_directory = directory(&auth, &keys::SESSION_AUTH_DIRECTORY, known);
    let auth_allow_plain_text = auth.get(&keys::SESSION_AUTH_ALLOW_PLAIN_TEXT);
    let max_auth_errors = auth.table("errors").get(&keys::SESSION_AUTH_ERRORS_TOTAL);
    let mail = t.table("mail");
    let mail_reject = reject(&mail, &keys::SESSION_MAIL_REJECT, Stage::Mail, known);
    let mail_rewrite = rewrite(
        &mail,
        &keys::SESSION_MAIL_REWRITE,
        &[Variable::Sender, Variable::SenderDomain],
    );
    let rcpt = t.table("rcpt");
    let rcpt_directory = directory(&rcpt, &keys::SESSION_RCPT_DIRECTORY, known);
    let max_recipients = rcpt.get(&keys::SESSION_RCPT_MAX_RECIPIENTS);
    let relay = rcpt.get(&keys::SESSION_RCPT_RELAY);
    let relay_rules = relay.as_ref().map(|r| &r.0);
    check_rule(&rcpt, "relay", Stage::Rcpt, relay_rules, known);
    let rcpt_reject = reject(&rcpt, &keys::SESSION_RCPT_REJECT, Stage::Rcpt, known);
    let rcpt_rewrite = rewrite(
        &rcpt,
        &keys::SESSION_RCPT_REWRITE,
        &[Variable::Rcpt, Variable::RcptDomain],
    );
    let aliases = aliases::read(&rcpt, known);
    let data = t.table("data");
    let limits = data.table("limits");
    let max_message_size = limits.get(&keys::SESSION_DATA_LIMITS_SIZE);
    let max_messages = limits.get(&keys::SESSION_DATA_LIMITS_MESSAGES);
    let data_timeout = data.get(&keys::SESSION_DATA_TIMEOUT);
    let data_min_rate = data.get(&keys::SESSION_DATA_MIN_RATE);
    let data_reject = reject(&data, &keys::SESSION_DATA_REJECT, Stage::Data, known);
    let dnsbl = super::dnsbl::read(&t.table("dnsbl"));
    let milters = super::milter::read_all(&t);
    let hooks = super::hook::read_all(&t);
    require_nonzero(&t, "timeout", timeout);
    require_nonzero(&t, "duration", duration);
    require_nonzero(&t, "command-deadline", command_deadline);
    require_nonzero(&data, "timeout", data_timeout);
    require_positive(&rcpt, "max-recipients", max_recipients);
    require_positive(&limits, "messages", max_messages);
    Some(Session {
        auth_directory,
        rcpt_directory,
        timeout: timeout?,
        duration: duration?,
        command_deadline: command_deadline?,
        max_errors: max_errors?,
        auth_allow_plain_text: auth_allow_plain_text?,
        max_auth_errors: max_auth_errors?,
        relay: relay?,
        max_recipients: max_recipients?,
        max_message_size: max_message_size?,
        max_messages: max_messages?,
        data_timeout: data_timeout?,
        data_min_rate: data_min_rate?,
        reject: StageRules {
            connect: connect_reject?,
            ehlo: ehlo_reject?,
            mail: mail_reject?,
            rcpt: rcpt_reject?,
            data: data_reject?,
        },
        mail_rewrite: mail_rewrite?,
        rcpt_rewrite: rcpt_rewrite?,
        aliases: aliases?,
        dnsbl: dnsbl?,
        milters: milters?,
        hooks: hooks?,
    })
}
