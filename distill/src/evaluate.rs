//! Evaluation: every model a run has, on the run's eval set, in one table.
//!
//! Per model: exact match against the references (after the `[eval]` normaliser), the
//! cross-entropy of the references (and its perplexity), agreement with the teacher's answers,
//! parameters, and greedy decoding speed. The rows are named as the report names them:
//! `teacher`, `gold-only`, `distilled` (and `distilled (NAME)` for each `[[distill.compare]]`
//! student), `distilled+expert`.

use datasets::rundir::layout;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datasets::config::{LoadedConfig, Normalize};
use serde::Serialize;

use crate::model::checkpoint;
use crate::recipe;
use crate::recipe::EvalSet;
use crate::train::data::Example;
use crate::{Error, Result};

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    /// `teacher`, `gold-only`, `distilled` or `distilled+expert`.
    pub model: String,
    /// The checkpoint directory.
    pub path: PathBuf,
    /// Share of eval prompts answered exactly right.
    pub exact_match: f64,
    /// Exact match on each slice of the eval set (`rest`: the prompts in none); empty when the
    /// eval set has no slices.
    pub exact_match_by_slice: BTreeMap<String, f64>,
    /// Mean cross-entropy of the reference answers, per token.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Share of eval prompts where the answer equals the teacher's (normalised); `None` for
    /// the teacher itself, or without a local teacher.
    pub agreement: Option<f64>,
    /// Parameters.
    pub params: u64,
    /// Greedy decoding speed on the eval set, generated tokens per second.
    pub tokens_per_s: f64,
    /// Eval prompts.
    pub rows: usize,
    /// Eval prompts that fill the model's positions: it gives them no answer, so they count as
    /// wrong.
    pub too_long: usize,
}

/// The models a run has, in table order: `(name, checkpoint directory)`.
pub fn run_models(loaded: &LoadedConfig, run_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(t) = crate::stages::teacher::teacher_dir(loaded, run_dir) {
        out.push(("teacher".to_string(), t));
    }
    out.push((
        "gold-only".to_string(),
        run_dir.join(layout::BASELINE).join(layout::FINAL),
    ));
    out.push((
        "distilled".to_string(),
        run_dir.join(layout::STUDENT).join(layout::FINAL),
    ));
    for v in &loaded.config.distill.compare {
        out.push((
            format!("distilled ({})", v.name),
            run_dir
                .join(layout::student_variant(&v.name))
                .join(layout::FINAL),
        ));
    }
    out.push((
        "distilled+expert".to_string(),
        run_dir.join(layout::FINETUNED),
    ));
    // A checkpoint directory, or a GGUF file (a teacher given as one).
    out.into_iter()
        .filter(|(_, p)| p.join("config.json").is_file() || crate::model::from_gguf::is_gguf(p))
        .collect()
}

/// Evaluates every model of the run that exists on `eval`; `progress` hears each model's name.
pub fn evaluate(
    loaded: &LoadedConfig,
    run_dir: &Path,
    eval: &EvalSet,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<EvalRow>> {
    let c = &loaded.config;
    if eval.prompts.is_empty() {
        return Err(Error::invalid(
            "The run has no eval set with references, so there is nothing to measure\n\nhint: \
             give `data.eval` (with a `reference` column) or use `data.task`",
        ));
    }
    let models = run_models(loaded, run_dir);
    if models.is_empty() {
        return Err(Error::invalid(format!(
            "The run `{}` has no trained model yet\n\nhint: run `workbench teacher train`, \
             `workbench distill` (or `workbench run`) first",
            run_dir.display()
        )));
    }
    let device = crate::backend::device(&c.teacher.device)?;
    let norm = &c.eval.normalize;
    let mut rows = Vec::new();
    let mut teacher_answers: Option<Vec<String>> = None;
    for (name, dir) in models {
        progress(&name);
        let (model, tok) = checkpoint::load_with_tokenizer(&dir, &device)?;
        let t0 = Instant::now();
        let recipe::Answered {
            answers,
            tokens,
            too_long,
        } = recipe::answers_counted(
            &model,
            &tok,
            &eval.prompts,
            c.eval.max_new_tokens,
            c.eval.batch_size,
        )?;
        let seconds = t0.elapsed().as_secs_f64();
        let fits = model.config().max_position_embeddings;
        let examples: Vec<Example> = eval
            .prompts
            .iter()
            .zip(&eval.references)
            .map(|(p, r)| recipe::example(&tok, p, r, None))
            .filter(|e| e.as_ref().is_ok_and(|e| e.ids.len() <= fits))
            .collect::<Result<_>>()?;
        let pad = tok.pad_id().or(tok.eos_id()).unwrap_or(0);
        let loss = crate::train::eval_loss(&model, &examples, c.eval.batch_size, pad);
        let agreement = teacher_answers
            .as_ref()
            .map(|t| recipe::exact_match(&answers, t, norm));
        rows.push(EvalRow {
            exact_match: recipe::exact_match(&answers, &eval.references, norm),
            exact_match_by_slice: exact_match_by_slice(
                &answers,
                &eval.references,
                &eval.slices,
                norm,
            ),
            loss,
            perplexity: loss.exp(),
            agreement,
            params: model.num_params(),
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            rows: eval.prompts.len(),
            too_long,
            path: dir,
            model: name.clone(),
        });
        if name == "teacher" {
            teacher_answers = Some(answers);
        }
    }
    Ok(rows)
}

/// Exact match of the model saved in `dir` on `eval`, overall and per slice, decoded and
/// normalised as `workbench eval` does.
pub fn exact_match_of(
    c: &datasets::config::Config,
    dir: &Path,
    eval: &EvalSet,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let device = crate::backend::device(&c.teacher.device)?;
    let (model, tok) = checkpoint::load_with_tokenizer(dir, &device)?;
    let answers = recipe::answers(
        &model,
        &tok,
        &eval.prompts,
        c.eval.max_new_tokens,
        c.eval.batch_size,
    )?;
    let norm = &c.eval.normalize;
    Ok((
        recipe::exact_match(&answers, &eval.references, norm),
        exact_match_by_slice(&answers, &eval.references, &eval.slices, norm),
    ))
}

/// Exact match on each slice of `references` (`slices[i]` names the slice of prompt `i`;
/// `None`: `rest`). Empty when no prompt is in a slice.
pub fn exact_match_by_slice(
    answers: &[String],
    references: &[String],
    slices: &[Option<String>],
    normalize: &[Normalize],
) -> BTreeMap<String, f64> {
    if slices.iter().all(Option::is_none) {
        return BTreeMap::new();
    }
    let mut groups: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for ((a, r), s) in answers.iter().zip(references).zip(slices) {
        let g = groups
            .entry(s.clone().unwrap_or_else(|| REST.to_string()))
            .or_default();
        g.0.push(a.clone());
        g.1.push(r.clone());
    }
    groups
        .into_iter()
        .map(|(name, (a, r))| (name, recipe::exact_match(&a, &r, normalize)))
        .collect()
}

/// The name [`exact_match_by_slice`] gives the prompts in no slice.
pub const REST: &str = "rest";

/// The slices any row has exact match for, in order.
pub fn slice_names(rows: &[EvalRow]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| r.exact_match_by_slice.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The table in Markdown; with slices, a column of exact match per slice.
pub fn markdown(rows: &[EvalRow]) -> String {
    let slices = slice_names(rows);
    let mut s = String::from("| model | exact match |");
    for name in &slices {
        s.push_str(&format!(" exact match ({name}) |"));
    }
    s.push_str(" loss | perplexity | agrees with teacher | params | tokens/s |\n|---|---:|");
    s.push_str(&"---:|".repeat(slices.len()));
    s.push_str("---:|---:|---:|---:|---:|\n");
    for r in rows {
        s.push_str(&format!("| {} | {:.1}% |", r.model, 100.0 * r.exact_match));
        for name in &slices {
            match r.exact_match_by_slice.get(name) {
                Some(em) => s.push_str(&format!(" {:.1}% |", 100.0 * em)),
                None => s.push_str(" — |"),
            }
        }
        // No loss where no eval row fits the model's positions.
        let shown = |x: f64, digits: usize| {
            if x.is_finite() {
                format!("{x:.digits$}")
            } else {
                "—".to_string()
            }
        };
        s.push_str(&format!(
            " {} | {} | {} | {} | {:.0} |\n",
            shown(r.loss, 3),
            shown(r.perplexity, 2),
            r.agreement
                .map_or("—".to_string(), |a| format!("{:.1}%", 100.0 * a)),
            params(r.params),
            r.tokens_per_s
        ));
    }
    s
}

/// `1234567` → `1.23M`.
pub fn params(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.0}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_by_slice_counts_each_slice_and_the_rest() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let answers = v(&["a", "b", "x", "d"]);
        let references = v(&["a", "b", "c", "d"]);
        let gb = Some("en-GB".to_string());
        let slices = vec![gb.clone(), gb, None, None];
        let by = exact_match_by_slice(&answers, &references, &slices, &[]);
        assert_eq!(by.len(), 2);
        assert_eq!(by["en-GB"], 1.0);
        assert_eq!(by[REST], 0.5);
        // No slices: nothing by slice.
        assert!(exact_match_by_slice(&answers, &references, &vec![None; 4], &[]).is_empty());
    }
}
