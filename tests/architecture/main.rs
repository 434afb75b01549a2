//! The architecture of DESIGN §2, kept true: no two files of a crate import each other,
//! directly or through others, and the crates depend on each other only as the design says.
//!
//! Sources are read with `syn`, the parser the Rust macro ecosystem uses, rather than with
//! regular expressions: grouped and nested `use` trees, `super::super`, paths in types and
//! expressions, re-exports and `#[cfg(test)]` items are Rust syntax, which a parser sees as
//! the compiler does and a pattern over lines only approximates.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod crate_rules;
mod cycles;
mod imports;
mod module_tree;
mod workspace;

use std::path::Path;

use imports::ImportGraph;
use module_tree::ModuleTree;
use workspace::Workspace;

/// An import circle between modules of one crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Circle {
    /// The package name.
    krate: String,
    /// Its modules, sorted.
    modules: Vec<String>,
}

/// Import circles known and being removed, by crate and member modules: none today. Each
/// must still exist exactly as listed: once one is gone, the test asks for its entry to be
/// removed, so that this list only shrinks. Any other circle fails.
const KNOWN_CIRCLES: &[(&str, &[&str])] = &[];

#[test]
fn no_import_circles_but_the_known_ones() {
    let workspace = Workspace::load();
    let mut found = Vec::new();
    let mut details = Vec::new();
    let mut imports = 0;
    for package in &workspace.packages {
        for root in &package.source_roots {
            let tree = ModuleTree::load(root, &read_file).unwrap_or_else(|e| panic!("{e}"));
            let graph = ImportGraph::of(&tree);
            imports += graph.edges.len();
            let edges = graph.edges.keys().map(|(a, b)| (a.as_str(), b.as_str()));
            for modules in cycles::circles(edges) {
                let circle = Circle {
                    krate: package.name.clone(),
                    modules,
                };
                if !is_known(&circle, KNOWN_CIRCLES) {
                    details.push(describe(&circle, &graph));
                }
                found.push(circle);
            }
        }
    }
    // A parser that saw nothing would find no circle either.
    assert!(
        imports > 100,
        "only {imports} imports found in the workspace"
    );
    let problems = compare(&found, KNOWN_CIRCLES);
    assert!(
        problems.is_empty(),
        "{}\n\n{}",
        problems.join("\n"),
        details.join("\n\n")
    );
}

#[test]
fn crate_dependencies_follow_the_design() {
    let problems = crate_rules::violations(&Workspace::load(), crate_rules::RULES);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `circle` is one of those `known`.
fn is_known(circle: &Circle, known: &[(&str, &[&str])]) -> bool {
    known
        .iter()
        .any(|(krate, modules)| circle.krate == *krate && circle.modules == *modules)
}

/// What is wrong with the circles found, given those known: new ones, and known ones gone.
fn compare(found: &[Circle], known: &[(&str, &[&str])]) -> Vec<String> {
    let mut problems: Vec<String> = found
        .iter()
        .filter(|circle| !is_known(circle, known))
        .map(|circle| {
            format!(
                "{}: import circle between {}",
                circle.krate,
                circle.modules.join(", ")
            )
        })
        .collect();
    for &(krate, modules) in known {
        let still_there = found
            .iter()
            .any(|circle| is_known(circle, &[(krate, modules)]));
        if !still_there {
            problems.push(format!(
                "{krate}: the known circle between {} is gone: remove it from KNOWN_CIRCLES",
                modules.join(", ")
            ));
        }
    }
    problems
}

/// Each module of a circle with the imports that keep it in the circle.
fn describe(circle: &Circle, graph: &ImportGraph) -> String {
    let mut lines = vec![format!("{}:", circle.krate)];
    for module in &circle.modules {
        for (target, path) in graph.imports_of(module) {
            if circle.modules.iter().any(|m| m == target) {
                lines.push(format!("  {module} -> {target}  ({path})"));
            }
        }
    }
    lines.join("\n")
}

/// Source files held in memory, for the tests of the test.
fn in_memory(files: &[(&str, &str)]) -> impl Fn(&Path) -> Result<String, String> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    move |path: &Path| {
        files
            .iter()
            .find(|(name, _)| Path::new(name) == path)
            .map(|(_, text)| text.clone())
            .ok_or_else(|| format!("{}: no such file", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circle(krate: &str, modules: &[&str]) -> Circle {
        Circle {
            krate: krate.to_string(),
            modules: modules.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn a_circle_in_a_crate_is_found_and_fails() {
        let read = in_memory(&[
            ("src/lib.rs", "mod envelope; mod rules; mod reply;"),
            (
                "src/envelope.rs",
                "use crate::rules::Rule; pub struct Envelope;",
            ),
            (
                "src/rules.rs",
                "pub struct Rule; fn f(_: &crate::reply::Reply) {}",
            ),
            (
                "src/reply.rs",
                "pub struct Reply(super::envelope::Envelope);",
            ),
        ]);
        let tree = ModuleTree::load(Path::new("src/lib.rs"), &read).expect("loads");
        let graph = ImportGraph::of(&tree);
        let edges = graph.edges.keys().map(|(a, b)| (a.as_str(), b.as_str()));
        let circles: Vec<Circle> = cycles::circles(edges)
            .into_iter()
            .map(|modules| Circle {
                krate: "demo".into(),
                modules,
            })
            .collect();
        assert_eq!(circles, [circle("demo", &["envelope", "reply", "rules"])]);
        assert_eq!(
            compare(&circles, &[]),
            ["demo: import circle between envelope, reply, rules"]
        );
        assert_eq!(
            compare(&circles, &[("demo", &["envelope", "reply", "rules"])]),
            Vec::<String>::new()
        );
        let description = describe(&circles[0], &graph);
        assert!(
            description.contains("envelope -> rules  (crate::rules::Rule)"),
            "{description}"
        );
    }

    #[test]
    fn a_known_circle_that_is_gone_must_leave_the_list() {
        let found = [circle("queue", &["a", "b"])];
        let known: &[(&str, &[&str])] = &[("queue", &["a", "b"]), ("queue", &["c", "d"])];
        assert_eq!(
            compare(&found, known),
            ["queue: the known circle between c, d is gone: remove it from KNOWN_CIRCLES"]
        );
    }

    #[test]
    fn a_known_circle_that_changed_is_reported_both_ways() {
        let found = [circle("queue", &["a", "b", "c"])];
        let known: &[(&str, &[&str])] = &[("queue", &["a", "b"])];
        assert_eq!(compare(&found, known).len(), 2);
    }
}
