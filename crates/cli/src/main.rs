//! `mandate`: the runtime authority broker for AI agents, as one binary.
//!
//! Exit codes: 0 success; 1 error (message on stderr); 2 bad usage;
//! 3 `audit verify` or `audit trace` found the log broken.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mandate: runtime authority broker for AI agents.
#[derive(Debug, Parser)]
#[command(name = "mandate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: AuthZEN decision endpoints, health, metrics.
    Serve(commands::serve::ServeArgs),
    /// Inspect and verify the audit log.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Check policy directories.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Register, inspect, suspend and renew agents (through the admin API).
    #[command(subcommand)]
    Agent(commands::agent::AgentCommand),
    /// Obtain a task token as an agent.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Serve MCP to a desktop client over stdio, through the node's gateway
    /// with a task token.
    #[command(subcommand)]
    Mcp(commands::mcp::McpCommand),
    /// Print a DPoP proof (RFC 9449) for one request.
    Dpop(commands::token::DpopArgs),
    /// Rotate the token signing key (through the admin API).
    #[command(subcommand)]
    Keys(commands::agent::KeysCommand),
    /// Set, rotate, list and delete secrets (through the admin API); values
    /// are read from stdin and never shown.
    #[command(subcommand)]
    Secret(commands::secret::SecretCommand),
    /// List, show, approve and deny calls held for a person's approval
    /// (through the admin API).
    #[command(subcommand)]
    Approvals(commands::approvals::ApprovalsCommand),
    /// Named admin credentials, one per approver (through the admin API).
    #[command(subcommand)]
    Admin(commands::admin::AdminCommand),
    /// What needs attention: idle agents, unused grants, tasks never ended,
    /// unrotated secrets, policies that never matched, standing rights wider
    /// than any task, each mapped to OWASP and NIST (through the admin API).
    Posture(commands::posture::PostureArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mandate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Audit(cmd) => commands::audit::run(cmd).await,
            Command::Policy(cmd) => commands::policy::run(cmd),
            Command::Agent(cmd) => commands::agent::run(cmd).await,
            Command::Keys(cmd) => commands::agent::run_keys(cmd).await,
            Command::Token(cmd) => commands::token::run(cmd).await,
            Command::Mcp(cmd) => {
                commands::init_quiet_logs();
                commands::mcp::run(cmd).await
            }
            Command::Dpop(args) => commands::token::dpop(args),
            Command::Secret(cmd) => commands::secret::run(cmd).await,
            Command::Approvals(cmd) => commands::approvals::run(cmd).await,
            Command::Admin(cmd) => commands::admin::run(cmd).await,
            Command::Posture(args) => commands::posture::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mandate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
