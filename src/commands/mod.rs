//! One module per subcommand: each turns parsed arguments into a library call and a report.

pub mod annotate;
pub mod config;
pub mod datasets;
pub mod eval;
pub mod generate;
pub mod model;
pub mod run;
pub mod train;

use ::datasets::config::{Config, LoadedConfig, Override};
use anyhow::Result;

use crate::cli::ConfigArgs;

/// Parses `--set` overrides.
pub fn parse_overrides(raw: &[String]) -> Result<Vec<Override>> {
    Ok(raw
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Loads a config with its `--set` overrides.
/// A config that needs more memory than this machine has is refused here, before any work.
pub fn load_config(args: &ConfigArgs) -> Result<LoadedConfig> {
    let overrides = parse_overrides(&args.overrides)?;
    let loaded = Config::load(&args.config, &overrides)?;
    ::datasets::config::check_memory(&loaded, &overrides)?;
    Ok(loaded)
}

/// `workbench SUBCOMMAND CONFIG --set ...` as the user can paste it back: the same config and
/// overrides, quoted for a POSIX shell where needed, so a printed "run it again" command runs the
/// same run.
pub fn command_line(subcommand: &str, args: &ConfigArgs) -> String {
    let mut line = format!(
        "workbench {subcommand} {}",
        shell_word(&args.config.to_string_lossy())
    );
    for o in &args.overrides {
        line.push_str(" --set ");
        line.push_str(&shell_word(o));
    }
    line
}

/// `word` as one word of a POSIX shell command line.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_command_keeps_the_overrides_and_quotes_what_a_shell_would_split() {
        let args = ConfigArgs {
            config: "my configs/demo.toml".into(),
            overrides: vec![
                "run.name=human".into(),
                "annotate.simulated_expert=false".into(),
                "annotate.guidelines=it's here.md".into(),
            ],
        };
        assert_eq!(
            command_line("run", &args),
            "workbench run 'my configs/demo.toml' --set run.name=human --set \
             annotate.simulated_expert=false --set 'annotate.guidelines=it'\\''s here.md'"
        );
    }
}
