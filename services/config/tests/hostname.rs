//! `server.hostname` defaults to the machine's host name, as in Stalwart; a machine whose
//! name cannot serve as one is a configuration error naming the key.

use std::path::Path;

use ferrymail_config::{ConfigErrors, Environment, load_documents, load_str};

/// The process environment, on a machine called `name` (`None`: a name that cannot be had).
struct Machine(Option<&'static str>);

impl Environment for Machine {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn hostname(&self) -> Option<String> {
        self.0.map(str::to_string)
    }
}

const LISTENER: &str = "[server.listener.admin]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n";

fn load_on(machine: Option<&'static str>, text: &str) -> Result<String, ConfigErrors> {
    load_documents(
        vec![("config.toml".to_string(), text.to_string())],
        &Machine(machine),
    )
    .map(|(config, _)| config.server.hostname)
}

/// The problems of a load that must fail.
fn refused(loaded: Result<String, ConfigErrors>) -> ConfigErrors {
    match loaded {
        Ok(hostname) => panic!("accepted, with hostname {hostname:?}"),
        Err(errors) => errors,
    }
}

#[test]
fn an_unset_hostname_is_the_machines() {
    assert_eq!(
        load_on(Some("mx7.example.net"), LISTENER).as_deref(),
        Ok("mx7.example.net")
    );
    // Without any [server] table at all, too.
    assert_eq!(
        load_on(Some("pod-5d8f"), "[session]\ntimeout = \"1m\"\n").as_deref(),
        Ok("pod-5d8f")
    );
}

#[test]
fn a_set_hostname_wins_over_the_machines() {
    let text = format!("[server]\nhostname = \"mx.example.org\"\n{LISTENER}");
    assert_eq!(
        load_on(Some("pod-5d8f"), &text).as_deref(),
        Ok("mx.example.org")
    );
    // Whatever the machine is called.
    assert_eq!(load_on(None, &text).as_deref(), Ok("mx.example.org"));
}

#[test]
fn a_machine_name_that_is_no_host_name_is_an_error_naming_the_key() {
    let errors = refused(load_on(Some("my laptop"), LISTENER));
    let error = errors
        .iter()
        .find(|e| e.key == "server.hostname")
        .unwrap_or_else(|| panic!("{errors}"));
    assert_eq!(error.file, "config.toml");
    assert!(
        error
            .message
            .contains("\"my laptop\" is not a valid host name"),
        "{error}"
    );
}

#[test]
fn a_machine_without_a_name_is_an_error_naming_the_key() {
    let errors = refused(load_on(None, LISTENER));
    assert!(
        errors.iter().any(|e| e.key == "server.hostname"
            && e.message
                .contains("the machine's host name cannot be found")),
        "{errors}"
    );
}

#[test]
fn the_default_is_the_name_the_kernel_reports() {
    // The kernel's own record of the name, read independently of the loader's lookup.
    let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/hostname") else {
        return;
    };
    let config = load_str("config.toml", LISTENER).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.hostname, kernel.trim_end());
}
