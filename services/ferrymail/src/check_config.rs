//! `ferrymail check-config`: every problem of a configuration, or a summary of what it holds.

use std::process::ExitCode;

use ferrymail_config::ConfigSource;

/// Prints the problems (stderr) or a summary (stdout); exit code 1 when there are problems.
pub fn run(source: &ConfigSource) -> ExitCode {
    match ferrymail_config::load(source) {
        Ok(loaded) => {
            let c = &loaded.config;
            println!(
                "{}: OK ({} file(s), {} listener(s), {} remote(s), {} directory(ies), {} store(s); sha256 {})",
                source.main.display(),
                loaded.files.len(),
                c.server.listeners.len(),
                c.remotes.len(),
                c.directories.len(),
                c.stores.len(),
                loaded.hash
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s) found", errors.len());
            ExitCode::FAILURE
        }
    }
}
