//! `workbench annotate RUN|SET` (the terminal app) and `workbench annotate stats RUN|SET`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use annotate::app::{self, Options};
use annotate::store::{DB_FILE, Location, Store, is_postgres_url};
use anyhow::Result;
use datasets::config::{AnnotateConfig, Config, Override};
use datasets::export::is_run_dir;

use crate::BadInput;
use crate::cli::{AnnotateArgs, AnnotateCommand};
use crate::output::{Output, thousands};
use datasets::text::count;

/// Where a review's database and items are, and how it is set up.
pub struct Target {
    /// The annotation store: the database file, or `annotate.store`'s PostgreSQL URL.
    pub store: Location,
    /// The set whose rows are the items (none when the target is the database itself).
    pub items: Option<PathBuf>,
    /// `[annotate]` of the run's config, or the defaults.
    pub config: AnnotateConfig,
    /// Relative guidelines paths resolve against these, in order.
    pub bases: Vec<PathBuf>,
    /// The seed of the `random` queue order (`run.seed` of a run or config); stored with the
    /// items, so every reviewer of the database sees one shuffle.
    pub seed: Option<u64>,
}

/// Resolves a run directory, a config file, a set directory, a data file, a database file or a
/// PostgreSQL URL. With `need_items`, a run without a set to review is an error that says how to
/// make one. `overrides` (`--set`) apply to the config of a config file or a run directory.
/// `store` (`--store`) wins over the config's `annotate.store` and the file beside the items.
pub fn resolve(
    target: &Path,
    need_items: bool,
    overrides: &[Override],
    store: Option<&str>,
) -> Result<Target> {
    let mut t = resolve_target(target, need_items, overrides)?;
    if let Some(url) = store {
        t.store = postgres_at(url, "`--store`")?;
    } else if let Some(url) = &t.config.store {
        t.store = Location::Postgres(url.clone());
    }
    Ok(t)
}

fn resolve_target(target: &Path, need_items: bool, overrides: &[Override]) -> Result<Target> {
    if let Some(url) = target.to_str().filter(|t| is_postgres_url(t)) {
        return Ok(Target {
            store: postgres_at(url, "The store URL")?,
            items: None,
            config: AnnotateConfig::default(),
            bases: vec![],
            seed: None,
        });
    }
    let run_items = |run: &Path| -> Result<Option<PathBuf>> {
        match annotate::import::run_items(run) {
            Ok(p) => Ok(Some(p)),
            Err(e) if need_items => Err(e.into()),
            Err(_) => Ok(None),
        }
    };
    if !target.exists() {
        return Err(BadInput(format!(
            "`{}` does not exist; expected a run directory (`runs/NAME`), its config file, a set directory or a data file",
            target.display()
        ))
        .into());
    }
    let ext = target
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    if target.is_file() && ext == "toml" {
        let loaded = Config::load(target, overrides)?;
        let run = loaded.run_dir();
        let config_dir = loaded.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok(Target {
            store: Location::File(run.join(DB_FILE)),
            items: run_items(&run)?,
            seed: Some(loaded.config.run.seed),
            config: loaded.config.annotate,
            bases: vec![config_dir],
        });
    }
    if target.is_dir() && is_run_dir(target) {
        // The run's config is a copy; its relative paths were written against the config file
        // it was made from, which the copy names.
        let loaded = datasets::rundir::load_config(target, overrides)?;
        let config_dir = loaded.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok(Target {
            store: Location::File(target.join(DB_FILE)),
            items: run_items(target)?,
            seed: Some(loaded.config.run.seed),
            config: loaded.config.annotate,
            bases: vec![config_dir, PathBuf::from("."), target.to_path_buf()],
        });
    }
    if !overrides.is_empty() {
        return Err(BadInput(format!(
            "`--set` changes a config, but `{}` is not a config file or a run directory, so \
             there is none to change\n\nhint: use the review flags (`--order`, `--overlap`, \
             `--guidelines`) instead",
            target.display()
        ))
        .into());
    }
    if target.is_file() && ext == "db" {
        return Ok(Target {
            store: Location::File(target.to_path_buf()),
            items: None,
            config: AnnotateConfig::default(),
            bases: vec![],
            seed: None,
        });
    }
    let db = if target.is_dir() {
        target.join(DB_FILE)
    } else {
        let stem = target
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(format!("{stem}.{DB_FILE}"))
    };
    Ok(Target {
        store: Location::File(db),
        items: Some(target.to_path_buf()),
        config: AnnotateConfig::default(),
        bases: vec![],
        seed: None,
    })
}

fn default_annotator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "expert".into())
}

/// Opens the store and brings the target's items into it (once per version of the files).
pub fn open_store(out: &Output, target: &Target) -> Result<Store> {
    let mut store = Store::open_at(&target.store, true)?;
    if let Some(seed) = target.seed {
        annotate::import::set_queue_seed(&mut store, seed)?;
    }
    if let Some(items) = &target.items {
        let bar = out.progress("import", "rows", None);
        let done = annotate::import::import(&mut store, items, &mut |n| bar.set_position(n))?;
        bar.finish_and_clear();
        if done.rows > 0 {
            out.say(format!(
                "Read {} of `{}`: {} new {}",
                count(done.rows, "row"),
                items.display(),
                thousands(done.added),
                if done.added == 1 { "item" } else { "items" }
            ));
        }
    }
    Ok(store)
}

pub fn run(out: &Output, args: AnnotateArgs) -> Result<()> {
    match args.command {
        Some(AnnotateCommand::Stats {
            target,
            overlap,
            json,
            store,
        }) => return stats(out, &target, overlap, json, store.as_deref()),
        Some(AnnotateCommand::ImportStore { from, to }) => return import_store(out, &from, &to),
        None => {}
    }
    let target_path = args
        .target
        .expect("clap requires a target without a subcommand");
    let review = args.review;
    let overrides = super::parse_overrides(&review.overrides)?;
    let target = resolve(&target_path, true, &overrides, review.store.as_deref())?;
    let overlap = review.overlap.unwrap_or(target.config.overlap);
    if overlap == 0 {
        return Err(BadInput("`--overlap 0`: an item needs at least 1 annotator".into()).into());
    }
    let guidelines = match review
        .guidelines
        .clone()
        .or(target.config.guidelines.clone())
    {
        Some(path) => {
            let found = if path.is_absolute() || review.guidelines.is_some() {
                path.clone()
            } else {
                target
                    .bases
                    .iter()
                    .map(|b| b.join(&path))
                    .find(|p| p.is_file())
                    .unwrap_or(path.clone())
            };
            Some(app::read_guidelines(&found).map_err(|e| {
                anyhow::Error::new(e).context(
                    "The guidelines named by `--guidelines` or `annotate.guidelines` cannot be read",
                )
            })?)
        }
        None => None,
    };
    let annotator = review.annotator.unwrap_or_else(default_annotator);
    if annotator.trim() == annotate::simulated::SIMULATED_EXPERT {
        return Err(BadInput(format!(
            "`--annotator {}` is the name of the simulated expert's decisions, so a person's \
             would be counted as simulated\n\nhint: pass your own name, e.g. `--annotator ana`",
            annotate::simulated::SIMULATED_EXPERT
        ))
        .into());
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(BadInput(
            "`workbench annotate` is interactive and needs a terminal (stdin and stdout are not one)\n\nhint: run it in a terminal (over SSH works); `workbench annotate stats` prints the figures without one".into(),
        )
        .into());
    }
    let store = open_store(out, &target)?;
    let options = Options {
        annotator: annotator.clone(),
        order: review.order.unwrap_or(target.config.order),
        overlap,
        guidelines,
        title: target_path.display().to_string(),
    };
    let store = app::run(store, options)?;
    let progress = store.progress(&annotator, overlap)?;
    out.say(format!(
        "{} has {} in force; {} of {} complete. Every decision is in `{}`.",
        datasets::text::inert_line(&annotator),
        count(progress.mine, "decision"),
        thousands(progress.complete),
        count(progress.items, "item"),
        target.store
    ));
    out.hint(export_hint(
        &target_path,
        review.store.is_some().then_some(&target.store),
    ));
    Ok(())
}

/// How to export the feedback of `target` after a review; `store` is the store the review was
/// told to use (`--store`), which the export must be told too (a URL never holds a password:
/// it comes from PGPASSWORD).
fn export_hint(target: &Path, store: Option<&annotate::store::Location>) -> String {
    let store_flag = store
        .map(|at| format!(" --store {}", super::shell_word(&at.to_string())))
        .unwrap_or_default();
    if is_run_dir(target) {
        format!(
            "export the feedback with `workbench datasets export {}{store_flag} --kind sft --out DIR` (or `--kind preference`)",
            target.display()
        )
    } else {
        format!(
            "export the feedback with `workbench datasets export {}{store_flag} --annotations --kind sft --out DIR`",
            target.display()
        )
    }
}

fn stats(
    out: &Output,
    target: &Path,
    overlap: Option<u32>,
    json: bool,
    store: Option<&str>,
) -> Result<()> {
    let t = resolve(target, false, &[], store)?;
    let store = Store::open_at(&t.store, false)?;
    let overlap = overlap.unwrap_or(t.config.overlap).max(1);
    let stats = annotate::stats::stats(&store, overlap)?;
    if json {
        out.json(&stats)?;
    } else {
        let mut text = annotate::components::stats::stats_lines(&stats).join("\n");
        text.push('\n');
        out.data(&text)?;
    }
    Ok(())
}

/// Where `import-store` reads or writes: a PostgreSQL URL, a database file, or the
/// `annotations.db` of a run or set directory.
fn store_at(spec: &str) -> Result<Location> {
    if is_postgres_url(spec) {
        return postgres_at(spec, "The store URL");
    }
    let path = PathBuf::from(spec);
    Ok(Location::File(if path.is_dir() {
        path.join(DB_FILE)
    } else {
        path
    }))
}

/// A PostgreSQL store's place, once its URL is checked (no password in it); `what` names it in
/// the message, which never shows the URL itself.
fn postgres_at(url: &str, what: &str) -> Result<Location> {
    datasets::config::check_store_url(url).map_err(|m| BadInput(format!("{what} {m}")))?;
    Ok(Location::Postgres(url.to_string()))
}

fn import_store(out: &Output, from: &str, to: &str) -> Result<()> {
    let (from_at, to_at) = (store_at(from)?, store_at(to)?);
    if from_at == to_at {
        return Err(BadInput(format!(
            "`import-store` reads and writes the same store `{from_at}`\n\nhint: name two stores: FROM (a database file, a run directory or a postgres:// URL) and TO"
        ))
        .into());
    }
    if let Location::File(p) = &from_at
        && !p.is_file()
    {
        return Err(BadInput(format!(
            "`{}` does not exist: there is no store to read\n\nhint: FROM is a database file (`annotations.db`), a run or set directory holding one, or a postgres:// URL",
            p.display()
        ))
        .into());
    }
    let source = Store::open_at(&from_at, false)?;
    let mut target = Store::open_at(&to_at, true)?;
    let moved = target.import_store(&source)?;
    let had = if moved.events_added < moved.events {
        "; the others it had already"
    } else {
        ""
    };
    out.say(format!(
        "Imported `{from_at}` into `{to_at}`: {} ({} new), {} ({} new{had})",
        count(moved.items, "item"),
        thousands(moved.items_added),
        count(moved.events, "event"),
        thousands(moved.events_added)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use annotate::store::Location;

    #[test]
    fn the_export_hint_names_the_store_of_the_review() {
        let set = Path::new("reviews/set");
        assert!(!export_hint(set, None).contains("--store"));
        let at = Location::Postgres("postgres://ana@db:5432/reviews".into());
        assert!(
            export_hint(set, Some(&at)).contains(
                "workbench datasets export reviews/set --store postgres://ana@db:5432/reviews \
                 --annotations"
            ),
            "{}",
            export_hint(set, Some(&at))
        );
    }
}
