//! One module per subcommand.

pub(crate) mod admin;
pub(crate) mod admin_client;
pub(crate) mod agent;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod mcp;
pub(crate) mod policy;
pub(crate) mod posture;
pub(crate) mod secret;
pub(crate) mod serve;
pub(crate) mod token;
pub(crate) mod trace;

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
    pub(crate) fn config(&self) -> anyhow::Result<mandate_server::Config> {
        Ok(mandate_server::Config::load(self.config.as_deref(), self)?)
    }

    /// The store URL. A SQLite file must already exist: reading commands must
    /// not create an empty database at a mistyped path and report it intact.
    pub(crate) fn database_url(&self) -> anyhow::Result<String> {
        let url = self.config()?.database_url();
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or(rest);
            anyhow::ensure!(
                std::path::Path::new(path).is_file(),
                "no database at {path} (check --data-dir / --database; `mandate serve` creates it)"
            );
        }
        Ok(url)
    }
}

/// Logs for commands other than `serve`: warnings and errors, as text, on stderr.
pub(crate) fn init_quiet_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .try_init();
}
