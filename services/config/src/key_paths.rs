//! The full key path of every key written in one TOML text.
//!
//! The `toml` crate reports a key or table defined twice in one file ("duplicate key") with
//! the span of the offending key, not with its path. The path depends on the table header
//! in force, the dotted keys before it on its line and the inline tables around it, so it is
//! recovered here from the same parser's event stream (`toml_parser`, which `toml` itself
//! is built on): no second grammar to keep in step with the first.

use std::ops::Range;

use toml_parser::parser::{Event, EventKind, RecursionGuard};
use toml_parser::{Raw, Source};

/// Nesting deeper than this is not followed (the `toml` crate's own limit).
const MAX_DEPTH: u32 = 80;

/// One key as written: where, and the path it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WrittenKey {
    /// Byte span of the key itself (quotes included).
    pub(crate) span: Range<usize>,
    /// Every segment from the document root to this key.
    pub(crate) path: Vec<String>,
    /// Whether the key is in a `[table]` or `[[array]]` header.
    pub(crate) in_header: bool,
    /// Whether this is the last key of its header or key-value pair: the one it defines,
    /// rather than a table it passes through.
    pub(crate) defines: bool,
}

/// Every key of a TOML text, in the order written.
#[derive(Debug, Default)]
pub(crate) struct KeyPaths {
    keys: Vec<WrittenKey>,
}

impl KeyPaths {
    /// Reads the keys of `text`; syntax errors are left to the real parse, which reports them.
    pub(crate) fn of(text: &str) -> Self {
        let source = Source::new(text);
        let tokens = source.lex().into_vec();
        let mut events: Vec<Event> = Vec::with_capacity(tokens.len());
        {
            let mut collect = |event: Event| events.push(event);
            let mut guarded = RecursionGuard::new(&mut collect, MAX_DEPTH);
            toml_parser::parser::parse_document(&tokens, &mut guarded, &mut ());
        }
        let mut walk = Walk::new(source);
        for event in &events {
            walk.on(event);
        }
        Self { keys: walk.keys }
    }

    /// The key written at byte `offset`, if one starts there.
    pub(crate) fn at(&self, offset: usize) -> Option<&WrittenKey> {
        self.keys.iter().find(|k| k.span.start == offset)
    }

    /// Where `path` was first defined before `offset`: the first key that defines it, else the
    /// first that names it on the way to another (`[a.b]` defines `a` implicitly).
    pub(crate) fn first_definition(&self, path: &[String], offset: usize) -> Option<&WrittenKey> {
        let earlier = || {
            self.keys
                .iter()
                .filter(move |k| k.span.start < offset && k.path == path)
        };
        earlier().find(|k| k.defines).or_else(|| earlier().next())
    }
}

/// Where the walk is in the document.
struct Walk<'s> {
    source: Source<'s>,
    keys: Vec<WrittenKey>,
    /// The table the current `[header]` opened.
    table: Vec<String>,
    /// Paths of the inline tables and arrays being read, innermost last.
    nested: Vec<Vec<String>>,
    /// Keys read so far of the current header or key-value pair.
    pending: Vec<String>,
    /// Path of the value being read (for an inline table or array in it).
    value_path: Vec<String>,
    in_header: bool,
}

impl<'s> Walk<'s> {
    fn new(source: Source<'s>) -> Self {
        Self {
            source,
            keys: Vec::new(),
            table: Vec::new(),
            nested: Vec::new(),
            pending: Vec::new(),
            value_path: Vec::new(),
            in_header: false,
        }
    }

    /// The table keys are currently read into.
    fn base(&self) -> &[String] {
        self.nested.last().unwrap_or(&self.table)
    }

    fn on(&mut self, event: &Event) {
        match event.kind() {
            EventKind::StdTableOpen | EventKind::ArrayTableOpen => {
                self.nested.clear();
                self.pending.clear();
                self.in_header = true;
            }
            EventKind::StdTableClose | EventKind::ArrayTableClose => {
                self.mark_defining();
                self.table = std::mem::take(&mut self.pending);
                self.in_header = false;
            }
            EventKind::SimpleKey => self.on_key(event),
            EventKind::KeyValSep => {
                self.mark_defining();
                let mut path = self.base().to_vec();
                path.append(&mut self.pending);
                self.value_path = path;
            }
            EventKind::InlineTableOpen | EventKind::ArrayOpen => {
                self.nested.push(self.value_path.clone());
            }
            EventKind::InlineTableClose | EventKind::ArrayClose => {
                self.nested.pop();
                // The next element of an enclosing array is a value of that array.
                self.value_path = self.base().to_vec();
            }
            EventKind::ValueSep => self.pending.clear(),
            EventKind::Newline if self.nested.is_empty() => {
                self.pending.clear();
                self.in_header = false;
            }
            _ => {}
        }
    }

    fn on_key(&mut self, event: &Event) {
        let span = event.span();
        let raw = Raw::new_unchecked(
            self.source
                .input()
                .get(span.start()..span.end())
                .unwrap_or(""),
            event.encoding(),
            span,
        );
        let mut name = String::new();
        raw.decode_key(&mut name, &mut ());
        self.pending.push(name);
        let mut path = if self.in_header {
            Vec::new()
        } else {
            self.base().to_vec()
        };
        path.extend(self.pending.iter().cloned());
        self.keys.push(WrittenKey {
            span: span.start()..span.end(),
            path,
            in_header: self.in_header,
            defines: false,
        });
    }

    /// The last key read ends its header or key-value pair: it is the one defined.
    fn mark_defining(&mut self) {
        if !self.pending.is_empty()
            && let Some(last) = self.keys.last_mut()
        {
            last.defines = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_at(text: &str, needle: &str, nth: usize) -> Vec<String> {
        let offset = text
            .match_indices(needle)
            .nth(nth)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{needle:?} #{nth} not in text"));
        KeyPaths::of(text)
            .at(offset)
            .map(|k| k.path.clone())
            .unwrap_or_default()
    }

    #[test]
    fn keys_under_headers_dotted_keys_and_inline_tables_have_their_full_path() {
        let text = "top = 1\n[a.\"b.c\"]\nd.e = 2\nf = { g = 3, h = { i = 4 } }\n[[j]]\nk = [{ l = 5 }, { m = 6 }]\n";
        assert_eq!(path_at(text, "top", 0), ["top"]);
        assert_eq!(path_at(text, "\"b.c\"", 0), ["a", "b.c"]);
        assert_eq!(path_at(text, "e =", 0), ["a", "b.c", "d", "e"]);
        assert_eq!(path_at(text, "g =", 0), ["a", "b.c", "f", "g"]);
        assert_eq!(path_at(text, "i =", 0), ["a", "b.c", "f", "h", "i"]);
        assert_eq!(path_at(text, "j", 0), ["j"]);
        assert_eq!(path_at(text, "l =", 0), ["j", "k", "l"]);
        assert_eq!(path_at(text, "m =", 0), ["j", "k", "m"]);
    }

    #[test]
    fn the_first_definition_is_the_key_that_defines_the_path() {
        let text = "[a.b]\nx = 1\n[a]\ny = 2\n[a]\n";
        let keys = KeyPaths::of(text);
        let second = text.rfind("[a]").map(|i| i + 1).unwrap_or_default();
        let first = keys
            .first_definition(&["a".to_string()], second)
            .map(|k| k.span.start);
        assert_eq!(first, text.find("[a]\n").map(|i| i + 1));
    }
}
