//! `mandate policy check`: load a policy directory exactly as `serve` would.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use mandate_policy::PolicyEngine;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Parse and validate a policy directory; print its policies and warnings.
    Check {
        /// The directory to check.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

pub(crate) fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { dir } => {
            let engine =
                PolicyEngine::load(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            let bundle = engine.current();
            for warning in bundle.warnings() {
                eprintln!("warning: {warning}");
            }
            for id in bundle.policy_ids() {
                println!("{id}");
            }
            println!(
                "{}: {} policies, {}",
                dir.display(),
                bundle.policy_count(),
                if bundle.has_schema() {
                    "validated against the schema"
                } else {
                    "no schema"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
