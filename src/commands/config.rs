//! `workbench config check` and `workbench config schema`.

use anyhow::Result;
use datasets::config::{Config, memory};

use crate::cli::ConfigCommand;
use crate::output::Output;

pub fn run(out: &Output, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check { config, json } => {
            let loaded = super::load_config(&config)?;
            loaded
                .config
                .check_run(&loaded.path.display().to_string())?;
            let files = datasets::prepare::check_files(&loaded)?;
            if json {
                out.json(&serde_json::json!({ "config": loaded.config, "files": files }))?;
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
            for f in &files {
                out.say(format!(
                    "{}: `{}` ({}), {}; columns {}{}{}",
                    f.key,
                    f.path,
                    f.format,
                    if f.take < f.rows {
                        format!(
                            "{}, of which the first {} are taken (`{}_size`)",
                            datasets::text::count(f.rows, "row"),
                            datasets::text::thousands(f.take),
                            f.key
                        )
                    } else {
                        datasets::text::count(f.rows, "row")
                    },
                    f.columns.join(", "),
                    match &f.answers_from {
                        Some(c) if f.answers_in_messages => {
                            format!("; answers from the last assistant turn of `{c}`")
                        }
                        Some(c) => format!("; answers from `{c}`"),
                        None if f.key != "data.prompts" => "; no answers".to_string(),
                        None => String::new(),
                    },
                    if f.ignored.is_empty() {
                        String::new()
                    } else {
                        format!("; not read: {}", f.ignored.join(", "))
                    }
                ));
            }
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
