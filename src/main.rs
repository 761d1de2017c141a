use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    paved::cli::run(paved::cli::Cli::parse())
}
