//! Lookup lists: local domains and `directory.<name>.lookup.<list>`, prepared for matching
//! without any network request, by the directory-proxy and the queue-scheduler's routing alike.
//! IP addresses match CIDR ranges; everything else matches case-insensitively.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::Config;

/// One list, prepared for matching.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompiledList {
    words: HashSet<String>,
    networks: Vec<IpNet>,
}

impl CompiledList {
    /// The list of `values`: CIDR ranges and addresses become networks, the rest words.
    pub fn new(values: &[String]) -> Self {
        let mut list = CompiledList::default();
        for value in values {
            let value = value.trim();
            if let Ok(network) = value.parse::<IpNet>() {
                list.networks.push(network);
            } else if let Ok(address) = value.parse::<IpAddr>() {
                list.networks.push(IpNet::from(address));
            } else {
                list.words.insert(value.to_ascii_lowercase());
            }
        }
        list
    }

    /// Whether `value` is in the list.
    pub fn contains(&self, value: &str) -> bool {
        let value = value.trim();
        // "[192.0.2.1]" address literals and IPv4-mapped IPv6 addresses match their IP.
        let literal = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        if let Ok(address) = literal.parse::<IpAddr>() {
            let address = match address {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
                v4 => v4,
            };
            return self.networks.iter().any(|n| n.contains(&address));
        }
        self.words.contains(&value.to_ascii_lowercase())
    }
}

/// Every directory's lists: `(directory, list) → values`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lists {
    lists: BTreeMap<(String, String), CompiledList>,
}

impl Lists {
    /// Every list of every directory of `config`.
    pub fn from_config(config: &Config) -> Self {
        let lists = config
            .directories
            .iter()
            .flat_map(|(directory, d)| {
                d.lists.iter().map(move |(name, list)| {
                    (
                        (directory.clone(), name.clone()),
                        CompiledList::new(&list.values),
                    )
                })
            })
            .collect();
        Self { lists }
    }

    /// The list `name` of `directory`, if it exists.
    pub fn get(&self, directory: &str, name: &str) -> Option<&CompiledList> {
        self.lists.get(&(directory.to_string(), name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_words() {
        let list = CompiledList::new(&[
            "10.0.0.0/8".into(),
            "192.0.2.7".into(),
            "2001:db8::/32".into(),
            "Example.ORG".into(),
        ]);
        assert!(list.contains("10.1.2.3"));
        assert!(list.contains("192.0.2.7"));
        assert!(!list.contains("192.0.2.8"));
        assert!(list.contains("2001:db8::1"));
        assert!(
            list.contains("::ffff:10.0.0.1"),
            "IPv4-mapped addresses match IPv4 ranges"
        );
        assert!(list.contains("[10.9.9.9]"));
        assert!(list.contains("example.org"));
        assert!(!list.contains("example.org.evil"));
        assert!(!list.contains(""));
    }
}
