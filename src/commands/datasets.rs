//! `workbench datasets import | export | inspect`.

use std::path::Path;

use anyhow::Result;
use datasets::card::CardInfo;
use datasets::decontam::Decontaminator;
use datasets::dedup::{ExactDedup, FilterReport, NearDedup};
use datasets::import::{Filters, Source, parse_mapping};
use datasets::parquet::WriteOptions;
use datasets::set::SetSummary;
use datasets::text::{count, inert_line};
use datasets::{Kind, Sample, SetOptions, Splits};

use crate::BadInput;
use crate::cli::{DatasetsCommand, DedupArg, KindArg, SetArgs};
use crate::output::{Output, thousands};

fn kind_of(k: KindArg) -> Kind {
    match k {
        KindArg::Samples => Kind::Sample,
        KindArg::Sft => Kind::Sft,
        KindArg::Preference => Kind::Preference,
    }
}

fn set_options(args: &SetArgs, title: String, description: String) -> Result<SetOptions> {
    if args.shard_mib == 0 {
        return Err(BadInput("`--shard-mib` is 0; a shard needs at least 1 MiB".into()).into());
    }
    Ok(SetOptions {
        splits: Splits::parse(&args.split, args.split_seed)?,
        shard_bytes: args.shard_mib << 20,
        parquet: WriteOptions::default(),
        card: CardInfo {
            title,
            description,
            license: args.license.clone(),
            ..CardInfo::default()
        },
        replace: args.force,
    })
}

fn describe(summary: &SetSummary) -> String {
    let splits: Vec<String> = summary
        .splits
        .iter()
        .map(|s| format!("{} {}", s.name, thousands(s.rows)))
        .collect();
    format!(
        "{} of {} ({})",
        count(summary.rows, "row"),
        summary.kind,
        splits.join(", ")
    )
}

fn report_filters(out: &Output, filters: &[FilterReport]) {
    for f in filters {
        out.say(format!(
            "{}: removed {} of {}",
            f.name,
            thousands(f.removed),
            count(f.seen, "row")
        ));
        for (id, why) in &f.examples {
            out.say(format!("  {id}: {}", inert_line(why)));
        }
    }
}

/// Reads the prompts of an eval set (a file or a set) for decontamination.
fn eval_texts(path: &Path) -> Result<Vec<String>> {
    let source = Source::open(path, Default::default())?;
    let mut texts = Vec::new();
    source.for_each::<Sample>(8192, |rows| {
        texts.extend(rows.into_iter().map(|s| s.prompt));
        Ok(())
    })?;
    Ok(texts)
}

pub fn run(out: &Output, cmd: DatasetsCommand) -> Result<()> {
    match cmd {
        DatasetsCommand::Import {
            input,
            map,
            kind,
            dedup,
            near_threshold,
            shingle_words,
            decontaminate,
            ngram,
            set,
        } => {
            if !(near_threshold > 0.0 && near_threshold <= 1.0) {
                return Err(BadInput(format!(
                    "`--near-threshold {near_threshold}`: expected a number in (0, 1]"
                ))
                .into());
            }
            if shingle_words == 0 || ngram == 0 {
                return Err(
                    BadInput("`--shingle-words` and `--ngram` must be at least 1".into()).into(),
                );
            }
            let map = map
                .as_deref()
                .map(parse_mapping)
                .transpose()?
                .unwrap_or_default();
            let source = Source::open(&input, map)?;
            let filters = Filters {
                exact: (dedup != DedupArg::None).then(ExactDedup::new),
                near: (dedup == DedupArg::Near)
                    .then(|| NearDedup::new(near_threshold, shingle_words, set.split_seed)),
                decontam: match &decontaminate {
                    Some(eval) => {
                        let texts = eval_texts(eval)?;
                        Some(Decontaminator::new(texts.iter().map(String::as_str), ngram))
                    }
                    None => None,
                },
            };
            let name = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let options = set_options(
                &set,
                name,
                format!(
                    "Imported from `{}` by `workbench datasets import`.",
                    input.display()
                ),
            )?;
            let bar = out.progress("import", "rows", source.row_count());
            let report = datasets::import::import(
                &source,
                &set.out,
                kind.map(kind_of),
                filters,
                options,
                &mut |n| bar.set_position(n),
            )?;
            bar.finish_and_clear();
            report_filters(out, &report.filters);
            if !report.ignored_columns.is_empty() {
                out.say(format!(
                    "Columns not read: {} (map them with `--map`, e.g. `--map prompt={}`)",
                    report
                        .ignored_columns
                        .iter()
                        .map(|c| inert_line(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    inert_line(&report.ignored_columns[0])
                ));
            }
            out.say(format!(
                "Imported `{}` ({}) into `{}`: {}",
                input.display(),
                report.format,
                set.out.display(),
                describe(&report.set)
            ));
            if set.json {
                out.json(&report)?;
            } else {
                out.hint(format!(
                    "look inside with `workbench datasets inspect {}`",
                    set.out.display()
                ));
            }
            Ok(())
        }
        DatasetsCommand::Export {
            input,
            annotations,
            kind,
            set,
            store,
        } => {
            let kind = kind_of(kind);
            let options = set_options(
                &set,
                format!(
                    "{} ({kind})",
                    input
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                format!(
                    "Exported from `{}` by `workbench datasets export` in TRL's column conventions.",
                    input.display()
                ),
            )?;
            let is_run = datasets::export::is_run_dir(&input);
            let db = if annotations || is_run || store.is_some() {
                super::annotate::resolve(&input, false, &[], store.as_deref())?.store
            } else {
                annotate::store::Location::File(input.join(annotate::store::DB_FILE))
            };
            let from_run = is_run && db.exists();
            if annotations || (from_run && matches!(kind, Kind::Sft | Kind::Preference)) {
                let store = annotate::Store::open_at(&db, false)?;
                let report = annotate::feedback::export(&store, kind, &set.out, options)?;
                out.say(format!(
                    "Exported the experts' feedback in `{}` ({} in force) into `{}`: {}",
                    db,
                    count(report.decisions, "decision"),
                    set.out.display(),
                    describe(&report.set)
                ));
                if set.json {
                    out.json(&report.set)?;
                }
                return Ok(());
            }
            let bar = out.progress("export", "rows", None);
            let report = datasets::export::export(&input, kind, &set.out, options, &mut |n| {
                bar.set_position(n)
            })?;
            bar.finish_and_clear();
            if report.skipped > 0 {
                out.say(format!(
                    "Left out {}: {}",
                    count(report.skipped, "row"),
                    report.skipped_reason.as_deref().unwrap_or("")
                ));
            }
            out.say(format!(
                "Exported `{}` into `{}`: {}",
                report.source.display(),
                set.out.display(),
                describe(&report.set)
            ));
            if set.json {
                out.json(&report)?;
            } else {
                out.hint(format!(
                    "load it in Python with `datasets.load_dataset(\"parquet\", data_dir=\"{}\")`",
                    set.out.display()
                ));
            }
            Ok(())
        }
        DatasetsCommand::Inspect { path, json, head } => {
            let inspection = datasets::inspect::inspect(&path, head)?;
            if json {
                out.json(&inspection)?;
            } else {
                out.data(&inspection.render())?;
            }
            Ok(())
        }
    }
}
