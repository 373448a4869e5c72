//! `balanced`, the node engine's command line. Everything happens in
//! [`balanced_engine::commands`]; this only parses, sets up logging and maps the result to the
//! exit-code table of [`balanced_engine::error`].

use std::process::ExitCode;

use balanced_engine::cli::Cli;
use balanced_engine::error::ExitStatus;
use balanced_engine::{commands, logging};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; a bad command line is invalid input.
            return ExitCode::from(if e.use_stderr() {
                ExitStatus::InvalidInput.code()
            } else {
                ExitStatus::Success.code()
            });
        }
    };
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
