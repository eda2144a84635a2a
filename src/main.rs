//! `workbench`: the thin command line over the `datasets`, `distill` and `annotate` crates.
//!
//! Parse, turn raw arguments into a validated plan, call a library, report. Exit codes: 0 success,
//! 1 failure at run time, 2 bad input (config, file, argument).

mod allocator;
mod cli;
mod commands;
mod output;
mod stages;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

use crate::output::Output;

/// An error in the user's input that the libraries do not know about (a bad flag combination).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn exit_code(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<datasets::Error>() {
            return ExitCode::from(if e.is_bad_input() { 2 } else { 1 });
        }
        if let Some(e) = cause.downcast_ref::<distill::Error>() {
            return ExitCode::from(if e.is_bad_input() { 2 } else { 1 });
        }
        if let Some(e) = cause.downcast_ref::<annotate::Error>() {
            return ExitCode::from(if e.is_bad_input() { 2 } else { 1 });
        }
        if cause.downcast_ref::<BadInput>().is_some()
            || cause
                .downcast_ref::<datasets::config::ConfigError>()
                .is_some()
        {
            return ExitCode::from(2);
        }
    }
    ExitCode::from(1)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                // `workbench` (or `workbench datasets`) with nothing to do shows the help, but as
                // a refusal: a script that forgot its command must not read it as success.
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    eprintln!(
                        "\nerror: no command given; pick one of the commands above, e.g. \
                         `workbench run configs/demo.toml`"
                    );
                    ExitCode::from(2)
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let out = Output::new(cli.quiet);
    out.init_logging();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(&out, args),
        Command::Generate(args) => commands::generate::run(&out, args),
        Command::Teacher(cli::TeacherCommand::Train(args)) => {
            commands::train::teacher_train(&out, args)
        }
        Command::Distill(args) => commands::train::distill(&out, args),
        Command::Finetune(args) => commands::train::finetune(&out, args),
        Command::Eval(args) => commands::eval::run(&out, args),
        Command::Annotate(args) => commands::annotate::run(&out, args),
        Command::Config(cmd) => commands::config::run(&out, cmd),
        Command::Datasets(cmd) => commands::datasets::run(&out, cmd),
        Command::Model(cmd) => commands::model::run(&out, cmd),
        Command::Serve(args) => commands::model::serve(&out, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            exit_code(&e)
        }
    }
}
