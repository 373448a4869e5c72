//! `balanced`, the node engine's command line. Everything happens in
//! [`balanced_engine::commands`]; this only parses, sets up logging and maps the result to the
//! exit-code table of [`balanced_engine::error`].

use std::process::ExitCode;

use balanced_engine::cli::Cli;
use balanced_engine::{commands, logging};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.log_format);
    let status = match commands::run(cli) {
        Ok(status) => status,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_status()
        }
    };
    ExitCode::from(status.code())
}
