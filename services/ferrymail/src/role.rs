//! The roles one binary can run, and what each serves.

use ferrymail_config::model::server::ListenerProtocol;

/// A role of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every role in one process.
    All,
    /// SMTP/LMTP front door.
    SmtpIngress,
    /// Queue and delivery.
    QueueScheduler,
    /// Directory lookups.
    DirectoryProxy,
    /// Kubernetes operator.
    Operator,
}

/// One capability a role process hosts, with what it still lacks.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    /// Name used in logs and readiness (`smtp-ingress`, …).
    pub name: &'static str,
    /// Why it cannot serve yet, if it cannot.
    pub not_built: Option<&'static str>,
}

const SMTP_INGRESS: Part = Part {
    name: "smtp-ingress",
    not_built: None,
};
const QUEUE_SCHEDULER: Part = Part {
    name: "queue-scheduler",
    not_built: None,
};
const DIRECTORY_PROXY: Part = Part {
    name: "directory-proxy",
    not_built: None,
};

impl Role {
    /// The name used on the command line and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::SmtpIngress => "smtp-ingress",
            Role::QueueScheduler => "queue-scheduler",
            Role::DirectoryProxy => "directory-proxy",
            Role::Operator => "operator",
        }
    }

    /// The capabilities this process hosts. `all` leaves out the operator, which needs a
    /// Kubernetes API server and has no work on a single machine.
    pub fn parts(self) -> &'static [Part] {
        match self {
            Role::All => &[SMTP_INGRESS, QUEUE_SCHEDULER, DIRECTORY_PROXY],
            Role::SmtpIngress => &[SMTP_INGRESS],
            Role::QueueScheduler => &[QUEUE_SCHEDULER],
            Role::DirectoryProxy => &[DIRECTORY_PROXY],
            // The controller reports the operator's readiness itself: not ready until it
            // reaches a Kubernetes API (`operator_cli::kubernetes_configured`).
            Role::Operator => &[],
        }
    }

    /// Whether this role serves listeners of `protocol`.
    pub fn serves(self, protocol: ListenerProtocol) -> bool {
        match protocol {
            ListenerProtocol::Http => true,
            ListenerProtocol::Grpc => {
                matches!(
                    self,
                    Role::All | Role::QueueScheduler | Role::DirectoryProxy
                )
            }
            ListenerProtocol::Smtp | ListenerProtocol::Lmtp => {
                matches!(self, Role::All | Role::SmtpIngress)
            }
        }
    }

    /// Whether this process hosts the SMTP/LMTP front door.
    pub fn hosts_ingress(self) -> bool {
        matches!(self, Role::All | Role::SmtpIngress)
    }

    /// Whether this process hosts the directory-proxy.
    pub fn hosts_directory(self) -> bool {
        matches!(self, Role::All | Role::DirectoryProxy)
    }

    /// Whether this process hosts the queue (and serves the `Queue` service).
    pub fn hosts_queue(self) -> bool {
        matches!(self, Role::All | Role::QueueScheduler)
    }

    /// gRPC services this role will serve, by their full names (for gRPC health checks).
    pub fn grpc_services(self) -> &'static [&'static str] {
        match self {
            Role::All => &["ferrymail.v1.Directory", "ferrymail.v1.Queue"],
            Role::QueueScheduler => &["ferrymail.v1.Queue"],
            Role::DirectoryProxy => &["ferrymail.v1.Directory"],
            Role::SmtpIngress | Role::Operator => &[],
        }
    }
}
