//! `session.mail.rewrite` and `session.rcpt.rewrite` applied to a command's address: the new
//! address, checked, or the refusal of the command.

use ferrymail_config::model::rules::Variable;
use ferrymail_config::value::RewriteRules;

use super::reply::{Reply, quoted};
use crate::address::envelope_address;

/// Which address is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rewritten {
    /// The envelope sender (MAIL FROM).
    Sender,
    /// A recipient (RCPT TO).
    Recipient,
}

impl Rewritten {
    fn variables(self) -> (Variable, Variable) {
        match self {
            Rewritten::Sender => (Variable::Sender, Variable::SenderDomain),
            Rewritten::Recipient => (Variable::Rcpt, Variable::RcptDomain),
        }
    }
}

/// `address` as `rules` rewrite it: `Ok(None)` when no rule matches, `Ok(Some(new))` with
/// the new address (lower-cased domain), or the reply refusing the command when a rule made
/// something that is not an address.
pub(super) fn rewrite(
    rules: &RewriteRules,
    which: Rewritten,
    address: &str,
) -> Result<Option<String>, Reply> {
    if rules.0.is_empty() || address.is_empty() {
        return Ok(None);
    }
    let (whole, domain_variable) = which.variables();
    let domain = address.rsplit_once('@').map(|(_, d)| d);
    let value_of = |variable: Variable| {
        if variable == whole {
            Some(address)
        } else if variable == domain_variable {
            domain
        } else {
            None
        }
    };
    let Some(new) = rules.apply(value_of) else {
        return Ok(None);
    };
    match envelope_address(&new) {
        Some(new) => Ok(Some(new)),
        None => {
            tracing::warn!(
                address,
                rewritten = new.as_str(),
                "a rewrite rule made an invalid address"
            );
            Err(Reply::new(
                550,
                "5.1.3",
                format!(
                    "{} cannot be accepted: it is rewritten to an invalid address",
                    quoted(address)
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use ferrymail_config::value::RewriteRule;
    use regex::Regex;

    use super::*;

    fn to(template: &str) -> RewriteRules {
        RewriteRules(vec![RewriteRule {
            variable: Variable::Rcpt,
            pattern: Regex::new("^(.+)@(.+)$").unwrap_or_else(|e| panic!("{e}")),
            then: template.into(),
        }])
    }

    fn new_address(rules: &RewriteRules, which: Rewritten, address: &str) -> Option<String> {
        rewrite(rules, which, address).unwrap_or_else(|r| panic!("refused: {}", r.0))
    }

    #[test]
    fn a_new_address_has_its_domain_lower_cased() {
        let new = new_address(&to("${1}@New.EXAMPLE."), Rewritten::Recipient, "a@b");
        assert_eq!(new.as_deref(), Some("a@new.example"));
        // The rule tests the recipient: a sender is left alone.
        assert_eq!(new_address(&to("$1@x"), Rewritten::Sender, "a@b"), None);
        let none = RewriteRules::default();
        assert_eq!(new_address(&none, Rewritten::Recipient, "a@b"), None);
    }

    #[test]
    fn what_is_not_an_address_is_refused() {
        for template in ["$1", "$1@", "@$2", "$1 x@y", "<$1@$2>", "$1@$2\u{7}"] {
            match rewrite(&to(template), Rewritten::Recipient, "a@b") {
                Err(reply) => assert!(reply.0.starts_with("550 5.1.3"), "{template}: {}", reply.0),
                Ok(new) => panic!("{template}: accepted as {new:?}"),
            }
        }
    }
}
