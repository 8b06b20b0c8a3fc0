//! lqctl: the LimiQuantix storage command line. The binary is `main.rs`;
//! the command tree is public so tests can inspect it.

// Stdout and stderr are written through `output`, which handles a reader
// that went away (`lqctl ... | head -1`) instead of panicking.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod common;
mod control;
mod node;
mod output;
mod session;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::OutputFormat;

#[derive(Debug, Parser)]
#[command(name = "lqctl", version, about = "LimiQuantix storage command line")]
pub struct Cli {
    /// Output: a table for people, or JSON for scripts.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: OutputFormat,
    /// The credentials file (server, CA, token) [default: $LQCTL_CREDENTIALS,
    /// else ~/.config/limiquantix/lqctl.toml, else ./lq-data/lqctl.toml].
    #[arg(long, global = true)]
    credentials: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Command {
    /// Pools (datastores) of the cluster.
    Pool {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        command: control::PoolCommand,
    },
    /// Volumes (virtual disks): create, clone, resize, import, attach...
    Volume {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        command: control::VolumeCommand,
    },
    /// Snapshots of a volume: take, list, revert to, delete.
    Snapshot {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        command: control::SnapshotCommand,
    },
    /// Follow or cancel long operations.
    Task {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        command: control::TaskCommand,
    },
    /// The cluster's nodes (list, get, drain, remove, join tokens), or one
    /// node daemon directly (`lqctl node --addr URL info|pool|volume|snapshot ...`).
    Node(node::NodeArgs),
    /// API tokens (admin, viewer): create, list, revoke, whoami.
    Token {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        command: control::TokenCommand,
    },
}

/// Runs a parsed command line and reports its outcome the way lqctl exits.
pub async fn execute(cli: Cli) -> ExitCode {
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output is gone: nobody is left to tell.
        Err(e) if e.is::<output::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            output::warn(format_args!("error: {}", describe(&e)));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = cli.output;
    let s = session::Session::load(cli.credentials.as_deref()).map_err(|e| tonic::Status::failed_precondition(format!("{e:#}")))?;
    let done = match cli.command {
        Command::Pool { target, command } => control::Clients::connect(&target, &s, out).await?.pool(command).await,
        Command::Volume { target, command } => control::Clients::connect(&target, &s, out).await?.volume(command).await,
        Command::Snapshot { target, command } => control::Clients::connect(&target, &s, out).await?.snapshot(command).await,
        Command::Task { target, command } => control::Clients::connect(&target, &s, out).await?.task(command).await,
        Command::Token { target, command } => control::Clients::connect(&target, &s, out).await?.token(command).await,
        Command::Node(args) => node::run(args, &s, out).await,
    };
    done.map_err(|e| s.explain(e))
}

/// Every error reads "<gRPC code>: <message>": lqctl's own errors are
/// `tonic::Status` values too, so scripts can match on the code.
fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(status) => format!("{:?}: {}", status.code(), status.message()),
        None => format!("{:?}: {e:#}", tonic::Code::Unknown),
    }
}
