//! lqctl: the LimiQuantix storage command line.

mod common;
mod control;
mod node;
mod output;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::OutputFormat;

#[derive(Debug, Parser)]
#[command(name = "lqctl", version, about = "LimiQuantix storage command line")]
struct Cli {
    /// Output: a table for people, or JSON for scripts.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: OutputFormat,
    #[command(flatten)]
    target: control::Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pools (datastores) of the cluster.
    #[command(subcommand)]
    Pool(control::PoolCommand),
    /// Volumes (virtual disks): create, clone, resize, import, attach...
    #[command(subcommand)]
    Volume(control::VolumeCommand),
    #[command(subcommand)]
    Snapshot(control::SnapshotCommand),
    /// Follow or cancel long operations.
    #[command(subcommand)]
    Task(control::TaskCommand),
    /// The cluster's nodes (list, get, drain), or one node daemon directly
    /// (`lqctl node --addr URL info|pool|volume|snapshot ...`).
    Node(node::NodeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = cli.output;
    let target = cli.target;
    macro_rules! control {
        ($method:ident, $cmd:expr) => {
            control::Clients::connect(&target, out).await?.$method($cmd).await
        };
    }
    match cli.command {
        Command::Pool(cmd) => control!(pool, cmd),
        Command::Volume(cmd) => control!(volume, cmd),
        Command::Snapshot(cmd) => control!(snapshot, cmd),
        Command::Task(cmd) => control!(task, cmd),
        Command::Node(args) => match args.into_cluster_command() {
            Ok(cmd) => control!(node, cmd),
            Err(args) => node::run(args, out).await,
        },
    }
}

/// gRPC errors read as "<code>: <message>"; others as the error chain.
fn describe(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        return format!("{:?}: {}", status.code(), status.message());
    }
    format!("{e:#}")
}
