//! `session.<stage>.reject`: rule lists that refuse a connection or a command with a reply.
//!
//! The key is named after Stalwart's `session.ehlo.reject-non-fqdn`, and the reply is written
//! as in Stalwart's Sieve `reject "554 5.7.1 …"`: code, enhanced status code, text.

use super::rules::{Rules, Variable, parse_rules};
use crate::tree::{Node, Value};
use crate::value::{Context, FromNode, Invalid, ValueType};

/// A stage of an SMTP/LMTP session that has a `reject` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The client has connected; the greeting is not sent yet.
    Connect,
    /// EHLO, HELO or LHLO.
    Ehlo,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA or the first BDAT, before the body is read.
    Data,
}

/// Variables known from the first stage on.
const CONNECT_VARIABLES: &[Variable] = &[Variable::RemoteIp, Variable::Listener];
/// Those known once the client has said hello.
const EHLO_VARIABLES: &[Variable] = &[Variable::RemoteIp, Variable::Listener, Variable::HeloDomain];
/// Those known once a transaction has started (also at DATA, which has no address of its own).
const MAIL_VARIABLES: &[Variable] = &[
    Variable::RemoteIp,
    Variable::Listener,
    Variable::HeloDomain,
    Variable::Sender,
    Variable::SenderDomain,
    Variable::AuthenticatedAs,
];
/// Those known while a recipient is answered: every variable.
const RCPT_VARIABLES: &[Variable] = &[
    Variable::RemoteIp,
    Variable::Listener,
    Variable::HeloDomain,
    Variable::Sender,
    Variable::SenderDomain,
    Variable::AuthenticatedAs,
    Variable::Rcpt,
    Variable::RcptDomain,
];

impl Stage {
    /// The stage's name in configuration keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Ehlo => "ehlo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }

    /// The variables a rule of this stage may test: those that have a value by then.
    pub fn variables(self) -> &'static [Variable] {
        match self {
            Stage::Connect => CONNECT_VARIABLES,
            Stage::Ehlo => EHLO_VARIABLES,
            Stage::Mail | Stage::Data => MAIL_VARIABLES,
            Stage::Rcpt => RCPT_VARIABLES,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal as sent to the client: `554 5.7.1 Your address is blocked`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReply {
    /// The reply code, 400 to 599.
    pub code: u16,
    /// The enhanced status code (RFC 3463), of the same class as `code`.
    pub enhanced: String,
    /// The text, one line.
    pub text: String,
}

impl RejectReply {
    /// Whether the refusal is temporary (4xx): the client is to try again later.
    pub fn is_temporary(&self) -> bool {
        self.code < 500
    }

    /// Reads `"<4xx|5xx> <class.subject.detail> <text>"`.
    pub(crate) fn parse(reply: &str) -> Result<Self, String> {
        let shape = || {
            format!(
                "invalid reply {reply:?}: expected \"<code> <enhanced code> <text>\", e.g. \"554 5.7.1 Access denied\""
            )
        };
        let mut parts = reply.trim().splitn(3, ' ');
        let code_text = parts.next().unwrap_or_default();
        let enhanced = parts.next().unwrap_or_default();
        let text = parts.next().unwrap_or_default().trim();
        if code_text.len() != 3 || !code_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(shape());
        }
        let code: u16 = code_text.parse().map_err(|_| shape())?;
        if !(400..600).contains(&code) {
            return Err(format!(
                "reply code {code} does not refuse anything: use 4xx (try again later) or 5xx (permanent)"
            ));
        }
        let fields: Vec<&str> = enhanced.split('.').collect();
        let well_formed = fields.len() == 3
            && fields
                .iter()
                .all(|f| (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            return Err(format!(
                "invalid enhanced status code {enhanced:?} in reply {reply:?}: expected <class>.<subject>.<detail>, e.g. 5.7.1"
            ));
        }
        let class = &code_text[..1];
        if fields[0] != class {
            return Err(format!(
                "enhanced status code {enhanced} does not match reply code {code}: its class must be {class} (e.g. {class}.7.1)"
            ));
        }
        if text.is_empty() {
            return Err(format!("reply {reply:?} has no text after the codes"));
        }
        // A line break in the text would end the reply early and let the rest pass for another.
        if text.chars().any(char::is_control) {
            return Err(format!(
                "reply {reply:?} contains a control character; the text must be one line"
            ));
        }
        Ok(Self {
            code,
            enhanced: enhanced.to_string(),
            text: text.to_string(),
        })
    }
}

impl std::fmt::Display for RejectReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

/// What a reject rule decides: `false` lets the command through, a reply refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `false`: go on.
    Accept,
    /// A reply string: refuse with it.
    Reject(RejectReply),
}

impl ValueType for Decision {
    const TYPE: &'static str = "false or a reply";
}

impl FromNode for Decision {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::Boolean(false) => Ok(Decision::Accept),
            Value::Boolean(true) => Err(Invalid::at(
                node,
                "true is not a reply: write the reply to refuse with, e.g. \"554 5.7.1 Access denied\" (false accepts)",
            )),
            Value::String(_) => RejectReply::parse(&String::from_node(node, cx)?)
                .map(Decision::Reject)
                .map_err(|message| Invalid::at(node, message)),
            _ => Err(Invalid::expected(
                node,
                "false or a reply such as \"554 5.7.1 Access denied\"",
            )),
        }
    }
}

/// `session.<stage>.reject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRule(pub Rules<Decision>);

impl ValueType for RejectRule {
    const TYPE: &'static str = "false, a reply, or a rule list";
}

impl FromNode for RejectRule {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        parse_rules(node, cx).map(RejectRule)
    }
}

/// The reject rule of every stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRules {
    /// `session.connect.reject`.
    pub connect: RejectRule,
    /// `session.ehlo.reject`.
    pub ehlo: RejectRule,
    /// `session.mail.reject`.
    pub mail: RejectRule,
    /// `session.rcpt.reject`.
    pub rcpt: RejectRule,
    /// `session.data.reject`.
    pub data: RejectRule,
}

impl StageRules {
    /// The rule of `stage`.
    pub fn get(&self, stage: Stage) -> &Rules<Decision> {
        match stage {
            Stage::Connect => &self.connect.0,
            Stage::Ehlo => &self.ehlo.0,
            Stage::Mail => &self.mail.0,
            Stage::Rcpt => &self.rcpt.0,
            Stage::Data => &self.data.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_code_enhanced_code_and_text() {
        let reply = RejectReply::parse("554 5.7.1 Your address is blocked");
        assert_eq!(
            reply,
            Ok(RejectReply {
                code: 554,
                enhanced: "5.7.1".into(),
                text: "Your address is blocked".into()
            })
        );
        assert_eq!(
            RejectReply::parse("450 4.7.25 Try later").map(|r| r.is_temporary()),
            Ok(true)
        );
        for (bad, why) in [
            ("250 2.0.0 OK", "does not refuse anything"),
            ("55 5.7.1 x", "expected \"<code>"),
            ("554", "invalid enhanced status code"),
            ("554 5.7 x", "invalid enhanced status code"),
            ("554 5.7.1000 x", "invalid enhanced status code"),
            ("554 4.7.1 x", "its class must be 5"),
            ("451 5.7.1 x", "its class must be 4"),
            ("554 5.7.1", "has no text"),
            ("554 5.7.1 a\r\n250 ok", "control character"),
        ] {
            let error = RejectReply::parse(bad).err().unwrap_or_default();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn later_stages_know_more_variables() {
        let stages = [Stage::Connect, Stage::Ehlo, Stage::Mail, Stage::Rcpt];
        for pair in stages.windows(2) {
            let (earlier, later) = (pair[0].variables(), pair[1].variables());
            assert!(earlier.iter().all(|v| later.contains(v)), "{pair:?}");
            assert!(earlier.len() < later.len(), "{pair:?}");
        }
        assert_eq!(Stage::Data.variables(), Stage::Mail.variables());
    }
}
