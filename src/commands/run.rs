//! `workbench run CONFIG`: the whole loop, stage by stage, re-entrant (each stage is in
//! `src/stages/`).
//!
//! `data`, `teacher` (trained on the gold set when the teacher is local and `teacher.path` is not
//! set), `synthetic`, `student` and `gold-only`, the review `candidates`, the simulated expert
//! (when the config asks for it), and, once the run has expert decisions, the expert fine-tune;
//! then evaluation and the report. Without decisions, `run` stops after the first evaluation and
//! prints the `workbench annotate` command; run it again afterwards and it continues.

use anyhow::Result;
use datasets::rundir::{RunDir, layout};

use crate::cli::RunArgs;
use crate::output::Output;
use crate::stages;

pub fn run(out: &Output, args: RunArgs) -> Result<()> {
    let loaded = super::load_config(&args.config)?;
    loaded
        .config
        .check_run(&loaded.path.display().to_string())?;
    stages::export::check_gguf(&loaded)?;
    let run = RunDir::open(&loaded, args.force)?;
    tracing::info!(
        "run `{}` in `{}` (config hash {})",
        loaded.config.run.name,
        run.path().display(),
        run.config_hash()
    );
    stages::data::data_stage(out, &loaded, &run)?;
    // A slice the report is asked for and the eval set lacks stops the run before training.
    if !loaded.config.eval.slices.is_empty() {
        let eval = distill::stages::inputs::read_eval_set(&run.stage_dir(layout::DATA), "eval")?;
        stages::eval::check_slices(&loaded.config.eval.slices, &eval)?;
    }
    let teacher = &loaded.config.teacher;
    if teacher.trained_by_run() {
        stages::teacher::teacher_stage(out, &loaded, &run, false)?;
    }
    // The gold-only student first: the bar the teacher must clear, known before it teaches (the
    // run's own teacher is judged here; any other, by the generation stage before it asks).
    stages::student::baseline_stage(out, &loaded, &run, false)?;
    if teacher.trained_by_run()
        && let Some(warning) = stages::student::weak_teacher(&run)
    {
        out.say(format!("WARNING: {warning}"));
    }
    stages::synthetic::synthetic_stage(out, &loaded, &run)?;
    stages::student::distilled_stage(out, &loaded, &run, false)?;
    stages::candidates::candidates_stage(out, &loaded, &run)?;
    if loaded.config.annotate.simulated_expert {
        stages::review::simulated_review(out, &loaded, &run)?;
    }
    let decisions = stages::review::expert_decisions(&loaded, &run)?;
    if decisions == 0 {
        let rows = stages::eval::eval_stage(out, &loaded, &run, &args.config)?;
        out.data(&distill::evaluate::markdown(&rows))?;
        stages::export::gguf_stage(
            out,
            &loaded,
            &run,
            &run.stage_dir(layout::STUDENT).join(layout::FINAL),
        )?;
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
        stages::review::run_store(&loaded.config.annotate, run.path())
    ));
    stages::finetune::finetune_stage(out, &loaded, &run, false)?;
    stages::curve::curve_stage(out, &loaded, &run)?;
    let rows = stages::eval::eval_stage(out, &loaded, &run, &args.config)?;
    out.data(&distill::evaluate::markdown(&rows))?;
    stages::export::gguf_stage(out, &loaded, &run, &stages::training::final_student(&run))?;
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
        stages::training::final_student(&run).display()
    ));
    Ok(())
}
