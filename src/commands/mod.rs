//! One module per subcommand: each turns parsed arguments into a library call and a report.

pub mod annotate;
pub mod config;
pub mod datasets;
pub mod eval;
pub mod generate;
pub mod model;
pub mod report;
pub mod run;
pub mod train;

use ::datasets::config::{Config, LoadedConfig, Override};
use anyhow::Result;

use crate::cli::ConfigArgs;

/// Loads a config with its `--set` overrides.
pub fn load_config(args: &ConfigArgs) -> Result<LoadedConfig> {
    let overrides = args
        .overrides
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config::load(&args.config, &overrides)?)
}
