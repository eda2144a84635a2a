//! The job config: TOML text through `Config::from_str_with` (what `Config::load` and so
//! `workbench config check` run after reading the file), then what `config check` prints.
//!
//! Lines of the form `# --set key=value` are TOML comments, so the text stays a config, and are
//! also applied as `--set` overrides: one input exercises the file and the overrides together.
//!
//! Besides "never panics", one property: the resolved config (`to_toml`, what is written into
//! the run directory and read back on resume) parses again to the same resolved config.
#![no_main]

use datasets::config::{Config, Override};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `Config::load` turns invalid UTF-8 into an error before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides: Vec<Override> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# --set "))
        .filter_map(|o| Override::parse(o).ok())
        .collect();
    let Ok(config) = Config::from_str_with(text, "fuzz.toml", &overrides) else {
        return;
    };
    // `workbench config check` and `--json`, and what the stages hash.
    let resolved = config.to_toml();
    let _ = config.hash();
    let _ = config.stage_hash(&["run", "data", "teacher", "export"]);
    let _ = serde_json::to_string(&config);
    let _ = config.export.splits(config.run.seed).validate();

    let again = Config::from_str_with(&resolved, "resolved.toml", &[]).unwrap_or_else(|e| {
        panic!("the resolved config does not parse again: {e}\n--- resolved ---\n{resolved}")
    });
    assert_eq!(
        again.to_toml(),
        resolved,
        "the resolved config changes when read back"
    );
});
