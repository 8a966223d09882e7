//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod policy;
pub(crate) mod serve;

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

/// Where the store is: the same settings `serve` reads (file, environment,
/// flags), so `audit` commands find the node's database without repeating it.
#[derive(Debug, Clone, Args, Serialize)]
pub(crate) struct StoreArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (its `mandate.db` is used unless --database is given).
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Store URL (`sqlite://PATH` or `postgres://...`).
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) database: Option<String>,
}

impl StoreArgs {
    pub(crate) fn database_url(&self) -> anyhow::Result<String> {
        let config = mandate_server::Config::load(self.config.as_deref(), self)?;
        Ok(config.database_url())
    }
}

/// Logs for commands other than `serve`: warnings and errors, as text, on stderr.
pub(crate) fn init_quiet_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .try_init();
}
