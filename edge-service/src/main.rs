//! The `tillbridge` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tillbridge_edge::cli::{self, Cli};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tillbridge: error: {err:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let status = cli::run(
        &cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )?;
    Ok(ExitCode::from(status.code()))
}
