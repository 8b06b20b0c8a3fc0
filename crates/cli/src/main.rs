use std::process::ExitCode;

use clap::Parser;
use limiquantix_cli::Cli;

// One thread: a command does one thing at a time, and starts faster without a pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    limiquantix_cli::execute(Cli::parse()).await
}
