use std::process::ExitCode;

use clap::Parser;
use limiquantix_cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    limiquantix_cli::execute(Cli::parse()).await
}
