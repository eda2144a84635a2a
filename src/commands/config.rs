//! `workbench config check` and `workbench config schema`.

use anyhow::Result;
use datasets::config::{Config, memory};

use crate::cli::ConfigCommand;
use crate::output::Output;

pub fn run(out: &Output, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check { config, json } => {
            let loaded = super::load_config(&config)?;
            if json {
                out.json(&loaded.config)?;
            } else {
                out.data(&format!(
                    "# resolved from `{}` (config hash {})\n{}",
                    loaded.path.display(),
                    loaded.config.hash(),
                    loaded.config.to_toml()
                ))?;
            }
            out.say(format!(
                "`{}` is valid; its run directory is `{}`",
                loaded.path.display(),
                loaded.run_dir().display()
            ));
            if let Some((stage, bytes)) = memory::peak(&loaded.config) {
                let machine = memory::available()
                    .map(|m| format!("; this machine has {}", memory::human_bytes(m as f64)))
                    .unwrap_or_default();
                out.say(format!(
                    "memory: about {} at the peak ({}){machine}",
                    memory::human_bytes(bytes),
                    stage.stage
                ));
            }
            Ok(())
        }
        ConfigCommand::Schema => out.json(&Config::json_schema()),
    }
}
