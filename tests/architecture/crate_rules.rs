//! DESIGN §2's crate dependency rules: the crate graph is the architecture.
//!
//! Only what a crate is counts: `[dependencies]` and `[build-dependencies]`. Dev-dependencies
//! are exempt, since a test may start anything it needs.

use crate::workspace::{DependencyKind, Workspace};

/// The binary: it wires the roles.
const BINARY: &str = "ferrymail";
/// The role crates.
const ROLES: &[&str] = &[
    "ferrymail-smtp-ingress",
    "ferrymail-queue-scheduler",
    "ferrymail-directory-proxy",
    "ferrymail-operator",
];

/// Crates that do network or store I/O: the configuration, which only reads files, needs none.
const NETWORK_AND_STORE: &[&str] = &[
    "tokio",
    "hyper",
    "tonic",
    "hickory-resolver",
    "kube",
    "mail-send",
    "redb",
    "foundationdb",
];

/// A set of crates, by package name.
pub enum Crates {
    /// These crates.
    These(&'static [&'static str]),
    /// The crates of the workspace, but these.
    WorkspaceBut(&'static [&'static str]),
}

/// A dependency that must not exist.
pub struct Forbidden {
    /// The crates that must not depend…
    pub from: Crates,
    /// …on these.
    pub on: Crates,
    /// What DESIGN says, for the message.
    pub why: &'static str,
}

/// DESIGN §2, as dependencies that must not exist.
pub const RULES: &[Forbidden] = &[
    Forbidden {
        from: Crates::WorkspaceBut(&[BINARY]),
        on: Crates::These(ROLES),
        why: "ferrymail (the binary) is the only crate that depends on the role crates; it wires them",
    },
    Forbidden {
        from: Crates::These(&["ferrymail-smtp-ingress"]),
        on: Crates::These(&["ferrymail-store"]),
        why: "smtp-ingress never depends on store: it holds no state",
    },
    Forbidden {
        // Mail: dns, outbound and the roles; configuration: config; services: rpc.
        from: Crates::These(&["ferrymail-store"]),
        on: Crates::These(&[
            "ferrymail-config",
            "ferrymail-rpc",
            "ferrymail-dns",
            "ferrymail-outbound",
            "ferrymail-smtp-ingress",
            "ferrymail-queue-scheduler",
            "ferrymail-directory-proxy",
            "ferrymail-operator",
        ]),
        why: "store knows nothing of mail, config or services",
    },
    Forbidden {
        from: Crates::These(&["ferrymail-config"]),
        on: Crates::WorkspaceBut(&[]),
        why: "config is pure: it depends on no other ferrymail crate",
    },
    Forbidden {
        from: Crates::These(&["ferrymail-config"]),
        on: Crates::These(NETWORK_AND_STORE),
        why: "config is pure: no I/O beyond reading files, no store, no network",
    },
    Forbidden {
        from: Crates::These(&["ferrymail-rpc"]),
        on: Crates::These(&["ferrymail-store"]),
        why: "rpc carries contracts, not storage",
    },
    Forbidden {
        from: Crates::These(&["ferrymail-outbound"]),
        on: Crates::These(&[
            "ferrymail-store",
            "ferrymail-smtp-ingress",
            "ferrymail-queue-scheduler",
            "ferrymail-directory-proxy",
            "ferrymail-operator",
        ]),
        why: "outbound knows nothing of the store, leases or retries, and no role: the queue-scheduler calls it",
    },
];

impl Crates {
    fn contains(&self, name: &str, workspace: &Workspace) -> bool {
        match self {
            Crates::These(names) => names.contains(&name),
            Crates::WorkspaceBut(names) => {
                workspace.package(name).is_some() && !names.contains(&name)
            }
        }
    }

    fn names(&self) -> &'static [&'static str] {
        match self {
            Crates::These(names) | Crates::WorkspaceBut(names) => names,
        }
    }
}

/// Every dependency that breaks a rule, and every workspace crate a rule names that does not
/// exist (a rule about a renamed crate would hold for nothing).
pub fn violations(workspace: &Workspace, rules: &[Forbidden]) -> Vec<String> {
    let mut problems = unknown_crates(workspace, rules);
    for package in &workspace.packages {
        for dependency in &package.dependencies {
            if dependency.kind == DependencyKind::Dev {
                continue;
            }
            for rule in rules {
                if rule.from.contains(&package.name, workspace)
                    && rule.on.contains(&dependency.name, workspace)
                {
                    problems.push(format!(
                        "{} depends on {}, but {}",
                        package.name, dependency.name, rule.why
                    ));
                }
            }
        }
    }
    problems
}

fn unknown_crates(workspace: &Workspace, rules: &[Forbidden]) -> Vec<String> {
    let mut named: Vec<&str> = rules
        .iter()
        .flat_map(|rule| rule.from.names().iter().chain(rule.on.names()))
        .copied()
        .filter(|name| name.starts_with(BINARY))
        .filter(|name| workspace.package(name).is_none())
        .collect();
    named.sort_unstable();
    named.dedup();
    named
        .into_iter()
        .map(|name| format!("a rule names {name}, which is not a crate of the workspace"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::{Dependency, Package};

    /// A workspace of every crate the rules name, each depending on `dependencies`.
    fn workspace(dependencies: &[(&str, &str, DependencyKind)]) -> Workspace {
        let mut names: Vec<&str> = RULES
            .iter()
            .flat_map(|rule| rule.from.names().iter().chain(rule.on.names()))
            .copied()
            .filter(|name| name.starts_with(BINARY))
            .collect();
        names.extend([BINARY, "ferrymail-telemetry"]);
        names.sort_unstable();
        names.dedup();
        let packages = names
            .into_iter()
            .map(|name| Package {
                name: name.to_string(),
                dependencies: dependencies
                    .iter()
                    .filter(|(from, _, _)| *from == name)
                    .map(|&(_, on, kind)| Dependency {
                        name: on.to_string(),
                        kind,
                    })
                    .collect(),
                source_roots: Vec::new(),
            })
            .collect();
        Workspace { packages }
    }

    use DependencyKind::{Build, Dev, Normal};

    #[test]
    fn the_designed_graph_passes() {
        let designed = workspace(&[
            (BINARY, "ferrymail-smtp-ingress", Normal),
            (BINARY, "ferrymail-store", Normal),
            ("ferrymail-queue-scheduler", "ferrymail-store", Normal),
            ("ferrymail-queue-scheduler", "ferrymail-outbound", Normal),
            ("ferrymail-outbound", "ferrymail-rpc", Normal),
            ("ferrymail-smtp-ingress", "ferrymail-config", Normal),
            ("ferrymail-store", "tokio", Normal),
            ("ferrymail-config", "toml", Normal),
            // Tests may use anything.
            ("ferrymail-smtp-ingress", "ferrymail-store", Dev),
            ("ferrymail-config", "ferrymail-store", Dev),
        ]);
        assert_eq!(violations(&designed, RULES), Vec::<String>::new());
    }

    #[test]
    fn each_rule_catches_its_dependency() {
        let cases = [
            ("ferrymail-rpc", "ferrymail-smtp-ingress"),
            ("ferrymail-directory-proxy", "ferrymail-queue-scheduler"),
            ("ferrymail-smtp-ingress", "ferrymail-store"),
            ("ferrymail-store", "ferrymail-config"),
            ("ferrymail-store", "ferrymail-rpc"),
            ("ferrymail-config", "ferrymail-telemetry"),
            ("ferrymail-config", "tokio"),
            ("ferrymail-rpc", "ferrymail-store"),
            ("ferrymail-outbound", "ferrymail-store"),
            ("ferrymail-outbound", "ferrymail-queue-scheduler"),
        ];
        for (from, on) in cases {
            for kind in [Normal, Build] {
                let broken = workspace(&[(from, on, kind)]);
                let problems = violations(&broken, RULES);
                assert!(
                    problems
                        .iter()
                        .any(|p| p.starts_with(&format!("{from} depends on {on}, but"))),
                    "{from} -> {on} ({kind:?}): {problems:?}"
                );
            }
        }
    }

    #[test]
    fn a_rule_about_a_crate_that_is_gone_fails() {
        let mut renamed = workspace(&[]);
        renamed.packages.retain(|p| p.name != "ferrymail-rpc");
        assert_eq!(
            violations(&renamed, RULES),
            ["a rule names ferrymail-rpc, which is not a crate of the workspace"]
        );
    }
}
