//! Import circles: strongly connected components of an import graph, found with Tarjan's
//! algorithm. Every module of a component imports every other, directly or through others.

use std::collections::{BTreeMap, BTreeSet};

/// The components of more than one module, each sorted, in sorted order.
pub fn circles<'a>(edges: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Vec<String>> {
    let mut successors: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges {
        successors.entry(from).or_default().insert(to);
        successors.entry(to).or_default();
    }
    let mut search = Search {
        successors: &successors,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in successors.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    let mut circles: Vec<Vec<String>> = search
        .components
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let mut members: Vec<String> = component.into_iter().map(str::to_string).collect();
            members.sort();
            members
        })
        .collect();
    circles.sort();
    circles
}

/// Tarjan's depth-first search; graphs of a crate's modules are small enough for recursion.
struct Search<'g> {
    successors: &'g BTreeMap<&'g str, BTreeSet<&'g str>>,
    index: BTreeMap<&'g str, usize>,
    low: BTreeMap<&'g str, usize>,
    stack: Vec<&'g str>,
    on_stack: BTreeSet<&'g str>,
    components: Vec<Vec<&'g str>>,
}

impl<'g> Search<'g> {
    fn visit(&mut self, node: &'g str) {
        let index = self.index.len();
        self.index.insert(node, index);
        self.low.insert(node, index);
        self.stack.push(node);
        self.on_stack.insert(node);
        for &next in &self.successors[node] {
            if !self.index.contains_key(next) {
                self.visit(next);
                let low = self.low[node].min(self.low[next]);
                self.low.insert(node, low);
            } else if self.on_stack.contains(next) {
                let low = self.low[node].min(self.index[next]);
                self.low.insert(node, low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(member);
                component.push(member);
                if member == node {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_circle_and_only_circles() {
        let edges = [
            ("a", "b"),
            ("b", "a"),
            ("c", "d"),
            ("d", "e"),
            ("e", "c"),
            ("e", "f"),
            ("f", "g"),
            ("a", "c"),
        ];
        assert_eq!(circles(edges), [vec!["a", "b"], vec!["c", "d", "e"]]);
    }

    #[test]
    fn a_graph_that_goes_one_way_has_none() {
        let edges = [("a", "b"), ("b", "c"), ("a", "c"), ("d", "c")];
        assert!(circles(edges).is_empty());
    }
}
