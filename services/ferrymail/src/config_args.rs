//! `--config` and `--config-dir`: where a role reads its configuration, for the roles and
//! the operator alike.

use std::path::PathBuf;

use clap::Args;
use ferrymail_config::ConfigSource;

/// Where a role reads its configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Main configuration file.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/ferrymail/config.toml",
        env = "FERRYMAIL_CONFIG"
    )]
    pub config: PathBuf,
    /// Directory of further `*.toml` files merged after the main file, in name order.
    #[arg(long = "config-dir", env = "FERRYMAIL_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration source these arguments name.
    pub fn source(&self) -> ConfigSource {
        let source = ConfigSource::file(&self.config);
        match &self.config_dir {
            Some(dir) => source.with_include_dir(dir),
            None => source,
        }
    }
}
