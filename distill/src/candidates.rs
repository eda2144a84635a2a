//! The loop's review candidates: the distilled student's answers to the review prompts (held out
//! from training and eval), beside the local teacher's answers to the same prompts, ranked by how
//! far the student is from the teacher. They are what the expert (or the simulated expert) sees
//! first, in `runs/<name>/candidates/`, as a sample set any tool reads.
//!
//! Per prompt there are two rows: the student's answer (`teacher` column `distilled`) first, so it
//! is candidate A, the one an accept or an edit applies to; the teacher's answer second
//! (candidate B). `disagreement` is the student's mean negative log-likelihood per token of the
//! teacher's answer (teacher-forced): high where the student would not have written what the
//! teacher wrote. Without a local teacher there is one row per prompt and `disagreement` is the
//! student's mean negative log-likelihood of its own answer (its uncertainty).

use std::path::Path;

use burn::tensor::Device;
use datasets::config::{Config, LoadedConfig};
use datasets::set::{SetOptions, SetSummary, SetWriter, Splits};
use datasets::{Kind, Sample};

use crate::data::tokenizer::Tokenizer;
use crate::model::{Model, checkpoint};
use crate::recipe;
use crate::{Error, Result};
use datasets::rundir::layout;

/// Hash of what the candidates depend on: the student, the teacher, how answers are decoded.
pub fn candidates_hash(c: &Config) -> String {
    let keys = serde_json::json!({
        "student": crate::stages::hashes::student_hash(c),
        "teacher": crate::stages::hashes::teacher_hash(c),
        "max_new_tokens": c.eval.max_new_tokens,
    });
    crate::stages::hashes::hash_with(c, &["run", "data"], &keys)
}

/// Mean negative log-likelihood per token of `answer` after `prompt` under `model`; `None` when
/// it does not fit or has no tokens.
fn answer_nll(model: &Model, tok: &Tokenizer, prompt: &str, answer: &str) -> Result<Option<f64>> {
    let e = recipe::example(tok, prompt, answer, None)?;
    if e.completion_len() == 0
        || e.prompt_len == 0
        || e.ids.len() > model.config().max_position_embeddings
    {
        return Ok(None);
    }
    let logits = crate::generate::logits(model, &e.ids)?;
    let mut total = 0.0f64;
    for t in e.prompt_len..e.ids.len() {
        let row = &logits[t - 1];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        total += lse - row[e.ids[t] as usize] as f64;
    }
    Ok(Some(total / e.completion_len() as f64))
}

fn row(prompt: &Sample, answer: String, model: &str, disagreement: Option<f64>) -> Sample {
    let mut s = Sample::from_prompt(prompt.prompt.clone());
    s.messages = prompt.messages.clone();
    s.completion = Some(answer);
    s.teacher = Some(model.to_string());
    s.reference = prompt.reference.clone();
    s.disagreement = disagreement.map(|d| d as f32);
    s.template = prompt.template.clone();
    s.id = s.content_id();
    s
}

/// Writes the candidates for `review` into `out` (the stage directory).
pub fn write_candidates(
    loaded: &LoadedConfig,
    run_dir: &Path,
    review: &[Sample],
    out: &Path,
    config_hash: &str,
    device: &Device,
) -> Result<SetSummary> {
    let c = &loaded.config;
    let student_dir = run_dir.join(layout::STUDENT).join(layout::FINAL);
    if !student_dir.join("config.json").is_file() {
        return Err(Error::invalid(format!(
            "There is no distilled student in `{}` to answer the review prompts\n\nhint: run \
             `workbench distill` first",
            student_dir.display()
        )));
    }
    let (student, student_tok) = checkpoint::load_with_tokenizer(&student_dir, device)?;
    let teacher = match crate::stages::teacher::teacher_dir(loaded, run_dir) {
        Some(dir) => Some(checkpoint::load_with_tokenizer(&dir, device)?),
        None => None,
    };
    let prompts: Vec<String> = review.iter().map(|s| s.prompt.clone()).collect();
    let (tokens, batch) = (c.eval.max_new_tokens, c.eval.batch_size);
    let student_answers = recipe::answers(&student, &student_tok, &prompts, tokens, batch)?;
    let teacher_answers = match &teacher {
        Some((m, t)) => Some(recipe::answers(m, t, &prompts, tokens, batch)?),
        None => None,
    };
    let mut rows = Vec::with_capacity(review.len() * 2);
    for (i, p) in review.iter().enumerate() {
        let mine = &student_answers[i];
        match &teacher_answers {
            Some(theirs) => {
                let d = answer_nll(&student, &student_tok, &p.prompt, &theirs[i])?;
                rows.push(row(p, mine.clone(), "distilled", d));
                rows.push(row(p, theirs[i].clone(), "teacher", d));
            }
            None => {
                let d = answer_nll(&student, &student_tok, &p.prompt, mine)?;
                rows.push(row(p, mine.clone(), "distilled", d));
            }
        }
    }
    let mut writer = SetWriter::create(
        out,
        Kind::Sample,
        SetOptions {
            splits: Splits::single("train"),
            replace: true,
            parquet: datasets::parquet::WriteOptions {
                config_hash: Some(config_hash.to_string()),
                ..Default::default()
            },
            card: datasets::card::CardInfo {
                title: format!("{} · review candidates", c.run.name),
                description: "The distilled student's answers to held-out review prompts (and \
                              the local teacher's), ranked by disagreement, for expert review."
                    .into(),
                license: c.export.license.clone(),
                ..Default::default()
            },
            ..Default::default()
        },
    )?;
    writer.write(&rows)?;
    Ok(writer.finish()?)
}
