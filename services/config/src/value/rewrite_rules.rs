//! `session.mail.rewrite` and `session.rcpt.rewrite`: rules whose result is the new address.
//!
//! Stalwart writes these as expressions (`matches('^(.+)@old$', rcpt)` then `$1 + '@new'`);
//! ferrymail has no expression language, so a rule names the variable, the regular
//! expression it must match and the new address as a template of its captures:
//!
//! ```toml
//! rewrite = [ { if = "rcpt", matches = "^([^.]+)\\.([^.]+)@old\\.example$", then = "${1}+${2}@new.example" },
//!             { else = false } ]
//! ```
//!
//! The first rule whose pattern matches decides; `{ else = false }` (or plain `false`)
//! leaves the address as it is.

use regex::Regex;

use super::rules::{self, Variable, field, only_keys};
use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Table, Value};

/// Longest pattern or template: a rule, not a program.
const MAX_RULE_TEXT: usize = 1024;

/// One `{ if = …, matches = …, then = … }` rule.
#[derive(Debug, Clone)]
pub struct RewriteRule {
    /// What is matched: the address, or its domain.
    pub variable: Variable,
    /// The pattern, compiled (case-insensitive matching is the pattern's own `(?i)`).
    pub pattern: Regex,
    /// The new address, with `$1`, `${1}` or `${name}` for the pattern's captures.
    pub then: String,
}

/// Two rules are the same when they are written the same.
impl PartialEq for RewriteRule {
    fn eq(&self, other: &Self) -> bool {
        self.variable == other.variable
            && self.pattern.as_str() == other.pattern.as_str()
            && self.then == other.then
    }
}

impl Eq for RewriteRule {}

/// The rules of one stage; empty for no rewriting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteRules(pub Vec<RewriteRule>);

impl RewriteRules {
    /// The new address the first matching rule makes, given each variable's value; `None`
    /// when no rule matches.
    pub fn apply<'v>(&self, value_of: impl Fn(Variable) -> Option<&'v str>) -> Option<String> {
        self.0.iter().find_map(|rule| {
            let value = value_of(rule.variable)?;
            let captures = rule.pattern.captures(value)?;
            let mut rewritten = String::new();
            captures.expand(&rule.then, &mut rewritten);
            Some(rewritten)
        })
    }

    /// The variables the rules test, to check them against a stage.
    pub fn variables(&self) -> impl Iterator<Item = Variable> + '_ {
        self.0.iter().map(|rule| rule.variable)
    }
}

impl ValueType for RewriteRules {
    const TYPE: &'static str =
        "false, or a list of { if = …, matches = …, then = … } ending in { else = false }";
}

impl FromNode for RewriteRules {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let items = match &node.value {
            Value::Boolean(false) => return Ok(RewriteRules::default()),
            Value::Array(items) => items,
            _ => return Err(Invalid::expected(node, Self::TYPE)),
        };
        let Some((last, rules)) = items.split_last() else {
            return Err(Invalid::at(
                node,
                "a rewrite list needs at least an { else = false } entry",
            ));
        };
        check_else(last)?;
        rules
            .iter()
            .map(|item| rule(item, cx))
            .collect::<Result<Vec<_>, _>>()
            .map(RewriteRules)
    }
}

fn table_of(node: &Node) -> Result<&Table, Invalid> {
    rules::table_of(node, "a rewrite rule ({ if = …, matches = …, then = … })")
}

/// The last entry: `{ else = false }`, since a rewrite without a match keeps the address.
fn check_else(node: &Node) -> Result<(), Invalid> {
    let last_rule = |e: Invalid| Invalid {
        message: format!("{} (the last rule must be {{ else = false }})", e.message),
        ..e
    };
    let table = table_of(node).map_err(last_rule)?;
    only_keys(table, &["else"]).map_err(last_rule)?;
    let otherwise = field(node, table, "else").map_err(last_rule)?;
    match otherwise.value {
        Value::Boolean(false) => Ok(()),
        _ => Err(Invalid::at(
            otherwise,
            "else must be false: an address no rule matches stays as it is",
        )),
    }
}

fn rule(item: &Node, cx: &Context<'_>) -> Result<RewriteRule, Invalid> {
    let table = table_of(item)?;
    only_keys(table, &["if", "matches", "then"])?;
    let variable = Variable::from_node(field(item, table, "if")?, cx)?;
    let pattern_node = field(item, table, "matches")?;
    let pattern_text = String::from_node(pattern_node, cx)?;
    let then_node = field(item, table, "then")?;
    let then = String::from_node(then_node, cx)?;
    if pattern_text.len() > MAX_RULE_TEXT || then.len() > MAX_RULE_TEXT {
        return Err(Invalid::at(
            item,
            format!("a pattern or template longer than {MAX_RULE_TEXT} bytes"),
        ));
    }
    let pattern = Regex::new(&pattern_text)
        .map_err(|e| Invalid::at(pattern_node, format!("invalid regular expression: {e}")))?;
    check_template(&then, &pattern).map_err(|m| Invalid::at(then_node, m))?;
    Ok(RewriteRule {
        variable,
        pattern,
        then,
    })
}

/// Every `$n` / `${n}` / `${name}` of `template` must name a capture of `pattern`, so that
/// no rule silently writes an empty part; `$$` is a dollar sign.
fn check_template(template: &str, pattern: &Regex) -> Result<(), String> {
    if template.is_empty() {
        return Err("then must not be empty".into());
    }
    let names: Vec<&str> = pattern.capture_names().flatten().collect();
    let known = |reference: &str| match reference.parse::<usize>() {
        Ok(n) => n < pattern.captures_len(),
        Err(_) => names.contains(&reference),
    };
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        }
        let (reference, after) = match rest.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(format!("unclosed ${{ in {template:?}")),
            },
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if reference.is_empty() || !known(reference) {
            return Err(format!(
                "{template:?} refers to ${reference}, which the pattern does not capture (write ${{1}} or $$ for a dollar sign)"
            ));
        }
        rest = after;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pattern: &str, then: &str) -> RewriteRules {
        RewriteRules(vec![RewriteRule {
            variable: Variable::Rcpt,
            pattern: Regex::new(pattern).unwrap_or_else(|e| panic!("{e}")),
            then: then.into(),
        }])
    }

    #[test]
    fn the_first_matching_rule_writes_the_new_address() {
        let r = rules(r"^([^.]+)\.([^.]+)@old\.example$", "${1}+${2}@new.example");
        let value = |v: Variable| (v == Variable::Rcpt).then_some("john.doe@old.example");
        assert_eq!(r.apply(value).as_deref(), Some("john+doe@new.example"));
        let other = |_: Variable| Some("jane@other.example");
        assert_eq!(r.apply(other), None);
        let absent = |_: Variable| None;
        assert_eq!(r.apply(absent), None);
    }

    #[test]
    fn templates_name_only_captures_that_exist() {
        let pattern = Regex::new(r"^(?P<user>.+)@(.+)$").unwrap_or_else(|e| panic!("{e}"));
        for good in ["$1@new", "${1}@${2}", "${user}@x", "$$1@x", "$0"] {
            assert_eq!(check_template(good, &pattern), Ok(()), "{good}");
        }
        for bad in ["$3@x", "${3}", "${nobody}", "${1", "$@x", ""] {
            assert!(check_template(bad, &pattern).is_err(), "{bad}");
        }
    }
}
