//! `workbench run CONFIG`: the whole loop, stage by stage, re-entrant.
//!
//! Stages built so far: `data`, `teacher` (trained on the gold set when the teacher is local and
//! `teacher.path` is not set), `synthetic` (generation), `student` and `gold-only` (distillation
//! and its baseline), evaluation, and, once the run has expert decisions (`workbench annotate`
//! writes them to `runs/<name>/annotations.db`), the expert fine-tune and evaluation again. Without
//! decisions, `run` stops after the first evaluation and prints the `workbench annotate` command;
//! run it again afterwards and it continues. The loop's own candidates (on prompts the student has
//! not seen), the simulated expert and the report land next (see the README's status table).

use anyhow::Result;
use datasets::config::{LoadedConfig, TeacherKind};
use datasets::prepare;
use datasets::rundir::layout;
use datasets::rundir::{RunDir, StageState};

use crate::cli::RunArgs;
use crate::output::{Output, thousands};

/// Runs the data stage unless it is up to date.
pub fn data_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    let hash = loaded.config.stage_hash(prepare::SECTIONS);
    match run.stage_state(layout::DATA, &hash) {
        StageState::Done(_) => out.say(format!(
            "data: up to date in `{}` (skipped)",
            run.stage_dir(layout::DATA).display()
        )),
        state => {
            if let StageState::Stale(_) = state {
                out.say("data: settings changed since the last run; redoing it");
            }
            let stage = run.begin(layout::DATA, &hash)?;
            let bar = out.progress("data", "rows", None);
            let summary =
                prepare::prepare(loaded, stage.path(), run.config_hash(), &mut |name, n| {
                    bar.set_prefix(format!("data: {name}"));
                    bar.set_position(n);
                })?;
            bar.finish_and_clear();
            for set in &summary.sets {
                out.say(format!(
                    "data: {} {} (of {} from {})",
                    set.name,
                    datasets::text::count(set.rows, "row"),
                    thousands(set.rows_in),
                    summary.source
                ));
                for f in &set.filters {
                    if f.removed > 0 {
                        out.say(format!("  {}: removed {}", f.name, thousands(f.removed)));
                    }
                }
            }
            stage.finish(serde_json::to_value(&summary)?)?;
        }
    }
    Ok(())
}

/// The review candidates (when the data stage made a review set): the distilled student's and
/// the teacher's answers to prompts neither trained on, unless up to date.
fn candidates_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    use distill::candidates;
    let review_dir = run.stage_dir(layout::DATA).join("review");
    if !datasets::Set::is_set(&review_dir) {
        return Ok(());
    }
    let hash = candidates::candidates_hash(&loaded.config);
    match run.stage_state(layout::CANDIDATES, &hash) {
        StageState::Done(_) => {
            out.say(format!(
                "candidates: up to date in `{}` (skipped)",
                run.stage_dir(layout::CANDIDATES).display()
            ));
            return Ok(());
        }
        StageState::Stale(_) => out.say("candidates: the student changed; answering again"),
        StageState::Missing => {}
    }
    let review = datasets::Set::open(&review_dir)?.read_all::<datasets::Sample>(None)?;
    if review.is_empty() {
        return Ok(());
    }
    let stage = run.begin(layout::CANDIDATES, &hash)?;
    let device = distill::backend::device(&loaded.config.teacher.device)?;
    let summary = candidates::write_candidates(
        loaded,
        run.path(),
        &review,
        stage.path(),
        run.config_hash(),
        &device,
    )?;
    out.say(format!(
        "candidates: {} answered ({}) in `{}`",
        datasets::text::count(review.len() as u64, "review prompt"),
        datasets::text::count(summary.rows, "row"),
        run.stage_dir(layout::CANDIDATES).display()
    ));
    stage.finish(serde_json::to_value(&summary)?)?;
    Ok(())
}

/// The **simulated expert** (not a person) reviews the run's candidates, up to the budget; its
/// decisions are stored under its own name and said to be simulated.
fn simulated_review(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    use annotate::simulated::{self, SIMULATED_EXPERT};
    let c = &loaded.config;
    let mut store = annotate::Store::open(run.path().join(annotate::store::DB_FILE))?;
    let items = annotate::import::run_items(run.path())?;
    annotate::import::import(&mut store, &items, &mut |_| {})?;
    let spent = store
        .decisions()?
        .iter()
        .filter(|d| d.annotation.annotator == SIMULATED_EXPERT)
        .count() as u64;
    let left = c.annotate.budget.saturating_sub(spent);
    let steps = &c.eval.normalize;
    let same = |a: &str, b: &str| {
        datasets::config::Normalize::apply(steps, a) == datasets::config::Normalize::apply(steps, b)
    };
    let order = super::annotate::order_of(None, c.annotate.order);
    let r = simulated::review(&mut store, order, left, &same)?;
    out.say(format!(
        "simulated expert (answers from the references; not a person, stored as \
         `{SIMULATED_EXPERT}`): {} accepted, {} corrected, {} skipped this time; {} of the \
         budget of {} spent",
        r.accepted,
        r.corrected,
        r.skipped,
        spent + r.decisions(),
        c.annotate.budget
    ));
    Ok(())
}

/// Expert decisions in force (skips aside) in the run's annotation database; 0 without one.
fn expert_decisions(run: &RunDir) -> Result<u64> {
    let db = run.path().join(annotate::store::DB_FILE);
    if !db.is_file() {
        return Ok(0);
    }
    let store = annotate::Store::open_existing(&db)?;
    Ok(store
        .decisions()?
        .iter()
        .filter(|d| d.annotation.decision != datasets::Decision::Skip)
        .count() as u64)
}

pub fn run(out: &Output, args: RunArgs) -> Result<()> {
    let loaded = super::load_config(&args.config)?;
    let run = RunDir::open(&loaded, args.force)?;
    tracing::info!(
        "run `{}` in `{}` (config hash {})",
        loaded.config.run.name,
        run.path().display(),
        run.config_hash()
    );
    data_stage(out, &loaded, &run)?;
    let teacher = &loaded.config.teacher;
    if teacher.kind == TeacherKind::Local && teacher.path.is_none() {
        super::train::teacher_stage(out, &loaded, &run, false)?;
    }
    super::generate::synthetic_stage(out, &loaded, &run)?;
    super::train::student_stages(out, &loaded, &run, false)?;
    candidates_stage(out, &loaded, &run)?;
    if loaded.config.annotate.simulated_expert {
        simulated_review(out, &loaded, &run)?;
    }
    let decisions = expert_decisions(&run)?;
    if decisions == 0 {
        let rows = super::eval::eval_stage(out, &loaded, &run)?;
        out.data(&distill::evaluate::markdown(&rows))?;
        out.say(format!(
            "Expert review next: there are no expert decisions for this run yet, so `run` stops \
             here. Review in the terminal with `workbench annotate {}`, then run `{}` again: it \
             fine-tunes the student on the decisions and evaluates again.",
            super::shell_word(&run.path().to_string_lossy()),
            super::command_line("run", &args.config)
        ));
        out.hint(format!(
            "the synthetic set is in `{}`; export it with `workbench datasets export {} --kind \
             samples --out DIR`",
            run.stage_dir(layout::SYNTHETIC).display(),
            run.stage_dir(layout::SYNTHETIC).display()
        ));
        return Ok(());
    }
    out.say(format!(
        "expert review: {} in force in `{}`",
        datasets::text::count(decisions, "decision"),
        run.path().join(annotate::store::DB_FILE).display()
    ));
    super::train::finetune_stage(out, &loaded, &run, false)?;
    let rows = super::eval::eval_stage(out, &loaded, &run)?;
    out.data(&distill::evaluate::markdown(&rows))?;
    let report = run.path().join(layout::REPORT);
    out.say(format!(
        "Done. The report: `{}` (and `report.html`). The sets, each in the Hugging Face layout \
         (`datasets.load_dataset(\"parquet\", data_dir=DIR)`): synthetic `{}`, expert feedback \
         `{}` and `{}`, review candidates `{}`. The final student: `{}`.",
        report.join("report.md").display(),
        run.stage_dir(layout::SYNTHETIC).display(),
        run.path().join(layout::FEEDBACK).join("sft").display(),
        run.path()
            .join(layout::FEEDBACK)
            .join("preference")
            .display(),
        run.stage_dir(layout::CANDIDATES).display(),
        super::train::final_student(&run).display()
    ));
    Ok(())
}
