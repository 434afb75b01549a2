//! Stage names in a filter's `stages` list (`session.hook.<id>.stages`): `connect`, `ehlo`,
//! `mail`, `rcpt`, `data`, as Stalwart writes them.

use super::stage_rules::Stage;
use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::Node;

impl ValueType for Stage {
    const TYPE: &'static str = "\"connect\" | \"ehlo\" | \"mail\" | \"rcpt\" | \"data\"";
    const LIST_TYPE: &'static str =
        "a list of stages (\"connect\", \"ehlo\", \"mail\", \"rcpt\", \"data\")";
}

impl FromNode for Stage {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let text = String::from_node(node, cx)?;
        match text.as_str() {
            "connect" => Ok(Stage::Connect),
            "ehlo" => Ok(Stage::Ehlo),
            "mail" => Ok(Stage::Mail),
            "rcpt" => Ok(Stage::Rcpt),
            "data" => Ok(Stage::Data),
            // Stalwart's `auth` stage: ferrymail asks no filter about AUTH, and says so
            // rather than ignore the stage.
            "auth" => Err(Invalid::at(
                node,
                "the \"auth\" stage is not supported: filters are asked at connect, ehlo, mail, rcpt and data",
            )),
            other => Err(Invalid::at(
                node,
                format!("unknown stage {other:?}, expected {}", Self::TYPE),
            )),
        }
    }
}
