//! The modules of a crate, found as the compiler finds them: from the root file, following
//! `mod` declarations to inline bodies and to `name.rs` or `name/mod.rs` files.
//!
//! Test modules and other test-only items (`#[cfg(test)]`) are left out: a test may import
//! what it tests from anywhere without making the crate's files depend on each other.

use std::collections::BTreeMap;
use std::path::Path;

use syn::punctuated::Punctuated;
use syn::{Attribute, Item, Meta, Token};

/// The path of the crate root module.
pub const ROOT: &str = "crate";

/// The modules of a crate by path: `crate` for the root, `model::remote` for the others.
#[derive(Default)]
pub struct ModuleTree {
    /// Modules by path.
    pub modules: BTreeMap<String, Module>,
}

/// One module: what it says of itself and the items it holds (its submodules' items belong to
/// the submodules).
#[derive(Default)]
pub struct Module {
    /// Its attributes, such as its documentation: inner ones (`//!`) and those of its `mod`
    /// declaration.
    pub attributes: Vec<Attribute>,
    /// Its items, submodules and test-only items aside.
    pub items: Vec<Item>,
}

/// Reads a source file; an error for a file that does not exist.
pub type ReadSource<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

impl ModuleTree {
    /// Every module reachable from the crate's root file.
    pub fn load(root_file: &Path, read: ReadSource<'_>) -> Result<ModuleTree, String> {
        let mut tree = ModuleTree::default();
        let directory = root_file.parent().unwrap_or(Path::new(""));
        let file = parse(root_file, &read(root_file)?)?;
        tree.add(ROOT.to_string(), file.attrs, file.items, directory, read)?;
        Ok(tree)
    }

    /// Adds a module and its submodules; `directory` is where its submodules' files are.
    fn add(
        &mut self,
        module: String,
        module_attributes: Vec<Attribute>,
        items: Vec<Item>,
        directory: &Path,
        read: ReadSource<'_>,
    ) -> Result<(), String> {
        let mut own = Vec::new();
        for item in items {
            match item {
                item if is_test_only(attributes(&item)) => {}
                Item::Mod(mut declaration) => {
                    let name = declaration.ident.to_string();
                    let submodule = child(&module, &name);
                    let sub_directory = directory.join(&name);
                    if declaration.attrs.iter().any(|a| a.path().is_ident("path")) {
                        return Err(format!("{submodule}: #[path] modules are not followed"));
                    }
                    let items = match declaration.content {
                        Some((_, items)) => items,
                        None => {
                            let file = module_file(directory, &name, read)?;
                            declaration.attrs.extend(file.attrs);
                            file.items
                        }
                    };
                    self.add(submodule, declaration.attrs, items, &sub_directory, read)?;
                }
                item => own.push(item),
            }
        }
        let contents = Module {
            attributes: module_attributes,
            items: own,
        };
        self.modules.insert(module, contents);
        Ok(())
    }
}

/// The file of module `name`, declared without a body: `name.rs`, else `name/mod.rs`.
fn module_file(directory: &Path, name: &str, read: ReadSource<'_>) -> Result<syn::File, String> {
    let flat = directory.join(format!("{name}.rs"));
    match read(&flat) {
        Ok(text) => parse(&flat, &text),
        Err(_) => {
            let nested = directory.join(name).join("mod.rs");
            parse(&nested, &read(&nested)?)
        }
    }
}

fn parse(file: &Path, text: &str) -> Result<syn::File, String> {
    syn::parse_file(text).map_err(|e| format!("{}: {e}", file.display()))
}

/// The path of module `name` declared in `parent`.
pub fn child(parent: &str, name: &str) -> String {
    if parent == ROOT {
        name.to_string()
    } else {
        format!("{parent}::{name}")
    }
}

/// The module that declares `module`; `None` for the root.
pub fn parent(module: &str) -> Option<&str> {
    match module.rsplit_once("::") {
        Some((parent, _)) => Some(parent),
        None if module == ROOT => None,
        None => Some(ROOT),
    }
}

/// Whether `inner` is `outer` itself or one of its submodules, however deep.
pub fn is_within(inner: &str, outer: &str) -> bool {
    outer == ROOT
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// Whether attributes say the item exists only when compiling tests.
pub fn is_test_only(attributes: &[Attribute]) -> bool {
    attributes.iter().any(|attribute| {
        attribute.path().is_ident("cfg")
            && attribute
                .parse_args::<Meta>()
                .is_ok_and(|predicate| requires_test(&predicate))
    })
}

/// Whether a `cfg` predicate can hold only with `test` set.
fn requires_test(predicate: &Meta) -> bool {
    match predicate {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) => {
            let Ok(nested) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            else {
                return false;
            };
            if list.path.is_ident("all") {
                nested.iter().any(requires_test)
            } else if list.path.is_ident("any") {
                !nested.is_empty() && nested.iter().all(requires_test)
            } else {
                false
            }
        }
        Meta::NameValue(_) => false,
    }
}

/// The attributes of an item of any kind.
pub fn attributes(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_memory;

    #[test]
    fn follows_mod_declarations_to_files_and_inline_bodies() {
        let read = in_memory(&[
            ("src/lib.rs", "mod a; mod b; mod inline { mod deep; }"),
            ("src/a.rs", "mod nested;"),
            ("src/a/nested.rs", ""),
            ("src/b/mod.rs", ""),
            ("src/inline/deep.rs", ""),
            (
                "src/orphan.rs",
                "this is not Rust, and no module declares it",
            ),
        ]);
        let tree = ModuleTree::load(Path::new("src/lib.rs"), &read).expect("loads");
        let modules: Vec<&str> = tree.modules.keys().map(String::as_str).collect();
        assert_eq!(
            modules,
            ["a", "a::nested", "b", "crate", "inline", "inline::deep"]
        );
    }

    #[test]
    fn leaves_test_modules_out() {
        let read = in_memory(&[(
            "src/lib.rs",
            "#[cfg(test)] mod tests; #[cfg(all(test, unix))] mod unix_tests {} \
             #[cfg(not(test))] mod real {} #[cfg(any(test, feature = \"x\"))] mod maybe {}",
        )]);
        let tree = ModuleTree::load(Path::new("src/lib.rs"), &read).expect("loads");
        let modules: Vec<&str> = tree.modules.keys().map(String::as_str).collect();
        assert_eq!(modules, ["crate", "maybe", "real"]);
    }

    #[test]
    fn a_missing_module_file_is_an_error() {
        let read = in_memory(&[("src/lib.rs", "mod gone;")]);
        assert!(ModuleTree::load(Path::new("src/lib.rs"), &read).is_err());
    }

    #[test]
    fn within() {
        assert!(is_within("a::b", "a"));
        assert!(is_within("a", ROOT));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
        assert!(!is_within("a", "a::b"));
        assert_eq!(parent("a::b"), Some("a"));
        assert_eq!(parent("a"), Some(ROOT));
        assert_eq!(parent(ROOT), None);
    }
}
