//! The roles a certificate can name, and what a caller proved about itself.

use std::collections::BTreeSet;
use std::fmt;

/// A role of ferrymail, as a certificate names it: the DNS name `<role>.<domain>` among
/// its subject alternative names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Accepts SMTP and LMTP: enqueues, and asks the directory.
    SmtpIngress,
    /// Serves the queue.
    QueueScheduler,
    /// Serves the directory.
    DirectoryProxy,
    /// Reads the remote hosts' states.
    Operator,
    /// A person or a script managing the queue (`ferrymail queue`).
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::SmtpIngress,
        Role::QueueScheduler,
        Role::DirectoryProxy,
        Role::Operator,
        Role::Admin,
    ];

    /// The role's name, as certificates and logs write it.
    pub fn name(self) -> &'static str {
        match self {
            Role::SmtpIngress => "smtp-ingress",
            Role::QueueScheduler => "queue-scheduler",
            Role::DirectoryProxy => "directory-proxy",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The DNS name that makes a certificate this role's: `<role>.<domain>`.
    pub fn dns_name(self, domain: &str) -> String {
        format!("{}.{domain}", self.name())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is calling, as its connection proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Plain text between the roles (`cluster.tls.enable = false`): nobody proves anything,
    /// and permissions are not checked.
    PlainText,
    /// TLS without a client certificate.
    Anonymous,
    /// A certificate the cluster's authorities issued, naming these roles (maybe none).
    Certified(BTreeSet<Role>),
}

impl Caller {
    /// How logs and metrics name the caller: its roles (`smtp-ingress`, `admin+operator`),
    /// `no-role`, `anonymous` or `plain-text`. Never an address.
    pub fn label(&self) -> String {
        match self {
            Caller::PlainText => "plain-text".to_owned(),
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::Certified(roles) if roles.is_empty() => "no-role".to_owned(),
            Caller::Certified(roles) => {
                roles.iter().map(|r| r.name()).collect::<Vec<_>>().join("+")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_labelled_by_their_roles_only() {
        let both = Caller::Certified([Role::Operator, Role::Admin].into());
        assert_eq!(both.label(), "operator+admin");
        assert_eq!(Caller::Certified(BTreeSet::new()).label(), "no-role");
        assert_eq!(Caller::Anonymous.label(), "anonymous");
        assert_eq!(Role::SmtpIngress.dns_name("x.test"), "smtp-ingress.x.test");
    }
}
