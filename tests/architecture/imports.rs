//! Which modules of its crate each module imports: the graph whose circles the test looks for.
//!
//! A module imports another when it names something defined there: in a `use` declaration
//! (grouped, renamed or glob), in a path in code (`crate::model::read(…)`, `super::Known`,
//! `keys::REMOTE_PORT` through an imported `keys`), or in a macro's tokens, which the parser
//! leaves unparsed (`format!("{}", crate::tree::display_path(…))`, `$crate::key::Key`), or in
//! an intra-doc link (`[`crate::runtime`]`), which rustdoc resolves as it resolves code.
//! A name re-exported by another module (`crate::Config`, re-exported by the root from
//! `model`) counts as an import of the module that defines it.
//!
//! A module and its own submodules are left aside: a parent declares its children, and children
//! may use what their parent holds.

use std::collections::BTreeMap;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{Item, UseTree};

use crate::module_tree::{ModuleTree, ROOT, attributes, child, is_test_only, is_within, parent};

/// Re-exports followed before a name is taken as defined where it was found: more than any
/// chain of re-exports, and an end to a name bound to itself (`use serde_json;`).
const MOST_RE_EXPORTS: usize = 16;

/// The imports between the modules of one crate.
#[derive(Debug, Default)]
pub struct ImportGraph {
    /// For each (importer, imported) pair, the first path that makes it, for messages.
    pub edges: BTreeMap<(String, String), String>,
}

impl ImportGraph {
    /// The imports of every module of `tree`.
    pub fn of(tree: &ModuleTree) -> ImportGraph {
        let scopes = Scopes::of(tree);
        let mut graph = ImportGraph::default();
        for (module, contents) in &tree.modules {
            let mut paths = PathsNamed::default();
            for attribute in &contents.attributes {
                paths.visit_attribute(attribute);
            }
            for item in &contents.items {
                paths.visit_item(item);
            }
            for path in paths.found {
                let Some(target) = scopes.resolve(module, &path, 0) else {
                    continue;
                };
                if !is_within(module, &target) && !is_within(&target, module) {
                    graph
                        .edges
                        .entry((module.clone(), target))
                        .or_insert_with(|| path.join("::"));
                }
            }
        }
        graph
    }

    /// The modules `module` imports, with the path that makes each import.
    pub fn imports_of<'a>(&'a self, module: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.edges
            .iter()
            .filter(move |((from, _), _)| from == module)
            .map(|((_, to), path)| (to.as_str(), path.as_str()))
    }
}

/// What names each module brings into scope with `use`, to follow paths through them.
struct Scopes<'t> {
    tree: &'t ModuleTree,
    /// For each module, the names its `use` declarations bind, to the paths they stand for.
    bindings: BTreeMap<&'t str, BTreeMap<String, Vec<String>>>,
}

impl<'t> Scopes<'t> {
    fn of(tree: &'t ModuleTree) -> Scopes<'t> {
        let bindings = tree
            .modules
            .iter()
            .map(|(module, contents)| {
                let mut names = BTreeMap::new();
                for item in &contents.items {
                    if let Item::Use(declaration) = item
                        && !is_test_only(&declaration.attrs)
                    {
                        bind(&declaration.tree, &mut Vec::new(), &mut names);
                    }
                }
                (module.as_str(), names)
            })
            .collect();
        Scopes { tree, bindings }
    }

    /// The module of this crate that defines what `path`, written in `module`, names; `None`
    /// when it names nothing of this crate (another crate, a local name, a primitive type).
    fn resolve(&self, module: &str, path: &[String], depth: usize) -> Option<String> {
        let (start, rest) = match path.first()?.as_str() {
            "crate" | "$crate" => (ROOT.to_string(), &path[1..]),
            "self" => (module.to_string(), &path[1..]),
            "super" => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let mut start = module;
                for _ in 0..supers {
                    start = parent(start)?;
                }
                (start.to_string(), &path[supers..])
            }
            // A submodule, a name brought into scope, or another crate.
            _ => {
                let first = &path[0];
                let declared = self.tree.modules.contains_key(&child(module, first));
                let bound = self.binding(module, first).is_some();
                if !declared && !bound {
                    return None;
                }
                (module.to_string(), path)
            }
        };
        self.walk(start, rest, depth)
    }

    /// Follows `rest` from `module` down through submodules and re-exports.
    fn walk(&self, mut module: String, rest: &[String], depth: usize) -> Option<String> {
        for (i, segment) in rest.iter().enumerate() {
            let submodule = child(&module, segment);
            if self.tree.modules.contains_key(&submodule) {
                module = submodule;
                continue;
            }
            if let Some(target) = self.binding(&module, segment)
                && depth < MOST_RE_EXPORTS
            {
                let full: Vec<String> = target.iter().chain(&rest[i + 1..]).cloned().collect();
                // A name bound to another crate's item is still found in this module.
                return self.resolve(&module, &full, depth + 1).or(Some(module));
            }
            break;
        }
        Some(module)
    }

    fn binding(&self, module: &str, name: &str) -> Option<&Vec<String>> {
        self.bindings.get(module)?.get(name)
    }
}

/// Records the names a `use` tree binds, each to the full path it stands for.
fn bind(tree: &UseTree, prefix: &mut Vec<String>, names: &mut BTreeMap<String, Vec<String>>) {
    match tree {
        UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            bind(&path.tree, prefix, names);
            prefix.pop();
        }
        UseTree::Name(name) if name.ident == "self" => {
            if let Some(last) = prefix.last() {
                names.insert(last.clone(), prefix.clone());
            }
        }
        UseTree::Name(name) => {
            let mut full = prefix.clone();
            full.push(name.ident.to_string());
            names.insert(name.ident.to_string(), full);
        }
        UseTree::Rename(rename) => {
            let mut full = prefix.clone();
            full.push(rename.ident.to_string());
            names.insert(rename.rename.to_string(), full);
        }
        UseTree::Glob(_) => {}
        UseTree::Group(group) => {
            for tree in &group.items {
                bind(tree, prefix, names);
            }
        }
    }
}

/// Every path a `use` tree imports (a glob imports its prefix).
fn use_paths(tree: &UseTree, prefix: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    match tree {
        UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_paths(&path.tree, prefix, found);
            prefix.pop();
        }
        UseTree::Name(name) if name.ident == "self" => found.push(prefix.clone()),
        UseTree::Name(name) => found.push(with(prefix, name.ident.to_string())),
        UseTree::Rename(rename) => found.push(with(prefix, rename.ident.to_string())),
        UseTree::Glob(_) => found.push(prefix.clone()),
        UseTree::Group(group) => {
            for tree in &group.items {
                use_paths(tree, prefix, found);
            }
        }
    }
}

fn with(prefix: &[String], last: String) -> Vec<String> {
    let mut path = prefix.to_vec();
    path.push(last);
    path
}

/// Collects the paths a module's items write, test-only items and nested modules aside.
#[derive(Default)]
struct PathsNamed {
    found: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathsNamed {
    fn visit_item(&mut self, item: &'ast Item) {
        if !is_test_only(attributes(item)) {
            visit::visit_item(self, item);
        }
    }

    // A nested module is a module of its own, read on its own.
    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    fn visit_impl_item_fn(&mut self, function: &'ast syn::ImplItemFn) {
        if !is_test_only(&function.attrs) {
            visit::visit_impl_item_fn(self, function);
        }
    }

    fn visit_item_use(&mut self, declaration: &'ast syn::ItemUse) {
        use_paths(&declaration.tree, &mut Vec::new(), &mut self.found);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            self.found
                .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        paths_in_tokens(mac.tokens.clone(), &mut self.found);
    }

    // `pub(in crate::a)` says who may see an item, not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    // Of attributes, only documentation names modules of the crate: `#[derive]`, `#[serde]`
    // and the like name other crates' items.
    fn visit_attribute(&mut self, attribute: &'ast syn::Attribute) {
        if let syn::Meta::NameValue(doc) = &attribute.meta
            && doc.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) = &doc.value
        {
            self.found
                .extend(link_targets(&text.value()).into_iter().filter_map(as_path));
        }
    }
}

/// The targets of the links in Markdown documentation: `[target]`, `[text](target)` and
/// `[text][target]`. Markdown is not Rust, so this is the one place the sources are read as
/// text; what is not a Rust path is dropped by [`as_path`].
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let inside = &rest[open + 1..];
        let Some(close) = inside.find(']') else {
            break;
        };
        targets.push(&inside[..close]);
        rest = &inside[close + 1..];
        if let Some(destination) = rest.strip_prefix('(')
            && let Some(end) = destination.find(')')
        {
            targets.push(&destination[..end]);
        }
    }
    targets
}

/// A link target that is a path of two segments or more, as rustdoc would resolve it:
/// `` `crate::runtime` ``, `struct@super::Known`, `crate::tree::display_path()`.
fn as_path(target: &str) -> Option<Vec<String>> {
    let target = target.trim().trim_matches('`');
    let target = target.split_once('@').map_or(target, |(_, path)| path);
    let target = target.trim_end_matches("()").trim_end_matches('!');
    let is_path_text = target
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let segments: Vec<String> = target.split("::").map(str::to_string).collect();
    (is_path_text && segments.len() > 1 && segments.iter().all(|s| !s.is_empty()))
        .then_some(segments)
}

/// Finds `a::b::c` and `$crate::a::b` in the unparsed tokens of a macro.
fn paths_in_tokens(tokens: TokenStream, found: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(group) => paths_in_tokens(group.stream(), found),
            TokenTree::Ident(ident) => {
                let dollar =
                    i > 0 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
                let first = if dollar {
                    format!("${ident}")
                } else {
                    ident.to_string()
                };
                let mut path = vec![first];
                while let Some(next) = path_continues(&tokens, i) {
                    path.push(next);
                    i += 3;
                }
                if path.len() > 1 {
                    found.push(path);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The identifier after `::` when the tokens after position `i` are `::` and an identifier.
fn path_continues(tokens: &[TokenTree], i: usize) -> Option<String> {
    match tokens.get(i + 1..i + 4)? {
        [
            TokenTree::Punct(a),
            TokenTree::Punct(b),
            TokenTree::Ident(next),
        ] if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':' => {
            Some(next.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::in_memory;

    fn graph_of(files: &[(&str, &str)]) -> Vec<(String, String)> {
        let read = in_memory(files);
        let tree = ModuleTree::load(Path::new("src/lib.rs"), &read).expect("loads");
        ImportGraph::of(&tree).edges.into_keys().collect()
    }

    fn pair(from: &str, to: &str) -> (String, String) {
        (from.to_string(), to.to_string())
    }

    #[test]
    fn use_declarations_of_every_form() {
        let edges = graph_of(&[
            ("src/lib.rs", "mod a; mod b; mod c; mod d; mod e;"),
            ("src/a.rs", "use crate::{b::{self, X}, c::Y as Z};"),
            ("src/b.rs", "pub struct X; use super::d::*;"),
            ("src/c.rs", "pub struct Y;"),
            ("src/d.rs", ""),
            ("src/e.rs", "use std::time::Duration; use serde::Serialize;"),
        ]);
        assert_eq!(edges, [pair("a", "b"), pair("a", "c"), pair("b", "d")]);
    }

    #[test]
    fn paths_in_code_types_and_macros() {
        let edges = graph_of(&[
            ("src/lib.rs", "mod a; mod b; mod c; mod d; mod e;"),
            ("src/a.rs", "fn f() { crate::b::g(); }"),
            ("src/b.rs", "pub fn g() -> Option<super::c::T> { None }"),
            (
                "src/c.rs",
                "pub struct T; fn h() { println!(\"{}\", crate::d::NAME); }",
            ),
            ("src/d.rs", "macro_rules! m { () => { $crate::e::E }; }"),
            ("src/e.rs", "pub struct E;"),
        ]);
        assert_eq!(
            edges,
            [
                pair("a", "b"),
                pair("b", "c"),
                pair("c", "d"),
                pair("d", "e")
            ]
        );
    }

    #[test]
    fn names_through_imports_and_re_exports() {
        let edges = graph_of(&[
            ("src/lib.rs", "mod a; mod b; mod c; pub use c::Config;"),
            // `crate::Config` is defined in c; `b::f` goes through the imported module `b`.
            (
                "src/a.rs",
                "use crate::b; fn f(_: crate::Config) { b::f() }",
            ),
            ("src/b.rs", "pub fn f() {}"),
            ("src/c.rs", "pub struct Config;"),
        ]);
        assert_eq!(edges, [pair("a", "b"), pair("a", "c")]);
    }

    #[test]
    fn a_module_and_its_own_submodules_aside() {
        let edges = graph_of(&[
            ("src/lib.rs", "mod model; fn f() { model::read() }"),
            (
                "src/model/mod.rs",
                "mod remote; pub fn read() { remote::read() } pub struct Config;",
            ),
            ("src/model/remote.rs", "use super::Config; pub fn read() {}"),
        ]);
        assert_eq!(edges, []);
    }

    #[test]
    fn intra_doc_links() {
        let edges = graph_of(&[
            ("src/lib.rs", "mod a; mod b; mod c; mod d;"),
            (
                "src/a.rs",
                "//! Started by [`crate::b`].\n/// See [the rules](super::c::Rule).\nfn f() {}",
            ),
            (
                "src/b.rs",
                "/// Not a link: crate::d, [a list], [`Self::f`], [`d`]\npub struct B;",
            ),
            ("src/c.rs", "pub struct Rule;"),
            ("src/d.rs", ""),
        ]);
        assert_eq!(edges, [pair("a", "b"), pair("a", "c")]);
    }

    #[test]
    fn test_only_code_is_left_out() {
        let edges = graph_of(&[
            ("src/lib.rs", "mod a; mod b;"),
            (
                "src/a.rs",
                "#[cfg(test)] use crate::b::X; #[cfg(test)] fn t() { crate::b::y() } \
                 struct S; impl S { #[cfg(test)] fn t() { crate::b::y() } } \
                 #[cfg(test)] mod tests { use crate::b::X; }",
            ),
            ("src/b.rs", "pub struct X; pub fn y() {}"),
        ]);
        assert_eq!(edges, []);
    }
}
