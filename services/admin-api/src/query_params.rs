//! Query strings read strictly: a repeated or unknown parameter is refused rather than
//! ignored, so that a typo in a script never widens a selection.

use crate::problem::Problem;

/// Longest value a parameter may have.
const MAX_VALUE: usize = 1024;

/// The parameters of one request, taken one by one.
#[derive(Debug, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// The parameters of `query` (the part after `?`).
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Self { pairs }
    }

    /// Takes `name`'s value; an error when it is given twice or is too long.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, Problem> {
        let mut found = None;
        let mut rest = Vec::with_capacity(self.pairs.len());
        for (key, value) in std::mem::take(&mut self.pairs) {
            if key != name {
                rest.push((key, value));
            } else if found.is_some() {
                return Err(Problem::bad_request(format!(
                    "parameter {name} is given twice"
                )));
            } else if value.len() > MAX_VALUE {
                return Err(Problem::bad_request(format!(
                    "parameter {name} is longer than {MAX_VALUE} bytes"
                )));
            } else {
                found = Some(value);
            }
        }
        self.pairs = rest;
        Ok(found)
    }

    /// Takes `name` as text; an empty value counts as absent.
    pub fn text(&mut self, name: &str) -> Result<Option<String>, Problem> {
        Ok(self.take(name)?.filter(|v| !v.is_empty()))
    }

    /// Takes `name` as a number in `range`.
    pub fn number(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, Problem> {
        let Some(value) = self.take(name)? else {
            return Ok(None);
        };
        match value.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(Problem::bad_request(format!(
                "parameter {name} must be a whole number from {} to {}, not {value:?}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// Takes `name` as a time: RFC 3339 or Unix seconds.
    pub fn time(&mut self, name: &str) -> Result<Option<u64>, Problem> {
        let Some(value) = self.take(name)? else {
            return Ok(None);
        };
        crate::timestamps::parse(&value).map(Some).ok_or_else(|| {
            Problem::bad_request(format!(
                "parameter {name} must be an RFC 3339 time or Unix seconds, not {value:?}"
            ))
        })
    }

    /// Takes `name` as a flag: `name`, `name=1` or `name=true` set it (Stalwart writes
    /// `values=1`), `0` or `false` leave it unset.
    pub fn flag(&mut self, name: &str) -> Result<bool, Problem> {
        match self.take(name)?.as_deref() {
            None | Some("0" | "false") => Ok(false),
            Some("" | "1" | "true") => Ok(true),
            Some(other) => Err(Problem::bad_request(format!(
                "parameter {name} must be 1, true, 0 or false, not {other:?}"
            ))),
        }
    }

    /// `Ok` when every parameter was taken.
    pub fn finish(self) -> Result<(), Problem> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(Problem::bad_request(format!("unknown parameter {name:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_taken_once_and_checked() {
        let mut params = QueryParams::parse(Some("from=a%40b&limit=5&values=1&text=&at=1"));
        assert_eq!(params.text("from"), Ok(Some("a@b".into())));
        assert_eq!(params.number("limit", 1..=10), Ok(Some(5)));
        assert_eq!(params.flag("values"), Ok(true));
        assert_eq!(params.text("text"), Ok(None));
        assert_eq!(params.time("missing"), Ok(None));
        assert!(params.finish().is_err(), "`at` was never taken");
    }

    #[test]
    fn malformed_parameters_are_refused() {
        let refused = |query: &str, take: fn(&mut QueryParams) -> Result<(), Problem>| {
            let mut params = QueryParams::parse(Some(query));
            assert!(take(&mut params).is_err(), "{query}");
        };
        refused("from=a&from=b", |p| p.text("from").map(drop));
        refused("limit=0", |p| p.number("limit", 1..=10).map(drop));
        refused("limit=11", |p| p.number("limit", 1..=10).map(drop));
        refused("limit=-1", |p| p.number("limit", 1..=10).map(drop));
        refused("limit=x", |p| p.number("limit", 1..=10).map(drop));
        refused("before=yesterday", |p| p.time("before").map(drop));
        refused("before=", |p| p.time("before").map(drop));
        refused("values=yes", |p| p.flag("values").map(drop));
        let long = format!("text={}", "a".repeat(MAX_VALUE + 1));
        let mut params = QueryParams::parse(Some(&long));
        assert!(params.text("text").is_err());
        assert!(QueryParams::parse(Some("%ff=1")).finish().is_err());
        assert!(QueryParams::parse(None).finish().is_ok());
        assert!(QueryParams::parse(Some("")).finish().is_ok());
    }
}
