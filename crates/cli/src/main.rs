//! lqctl: the LimiQuantix storage command line.

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Talk to one node daemon directly.
    Node(node::NodeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => node::run(args, cli.output).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// gRPC errors read as "<code>: <message>"; others as the error chain.
fn describe(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        return format!("{:?}: {}", status.code(), status.message());
    }
    format!("{e:#}")
}
