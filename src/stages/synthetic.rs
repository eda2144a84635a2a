//! The synthetic set (`runs/<name>/synthetic/`): the teacher's answers to the prompt pool, with
//! top-k logprobs, through the response cache (a rerun asks only what it has not been answered).

use std::path::Path;

use anyhow::{Context, Result};
use datasets::config::{LoadedConfig, TeacherKind};
use datasets::rundir::{RunDir, layout};
use distill::synth::{self, Student};
use distill::teacher::Teacher;
use distill::teacher::cache::ResponseCache;
use distill::teacher::local::LocalTeacher;
use distill::teacher::openai::OpenAiTeacher;

use crate::BadInput;
use crate::output::{Output, thousands};

fn teacher(loaded: &LoadedConfig, run: &RunDir) -> Result<Box<dyn Teacher>> {
    let t = &loaded.config.teacher;
    Ok(match t.kind {
        TeacherKind::Local => {
            let dir = match &t.path {
                Some(p) => loaded.resolve(p),
                None => synth::default_teacher_dir(run.path()),
            };
            if !dir.is_dir() && !distill::model::from_gguf::is_gguf(&dir) {
                return Err(distill::Error::Invalid {
                    message: format!(
                        "The local teacher `{}` does not exist\n\nhint: train it with `workbench \
                         teacher train CONFIG`, set `teacher.path` to a checkpoint directory \
                         (config.json, model.safetensors, tokenizer.json) or a GGUF file, or use `teacher.kind = \
                         \"openai\"` with a server",
                        dir.display()
                    ),
                }
                .into());
            }
            let weights = match t.weights {
                datasets::config::TeacherWeights::F32 => None,
                datasets::config::TeacherWeights::Q8_0 => {
                    Some(distill::model::kernels::quant::QuantKind::Q8_0)
                }
                datasets::config::TeacherWeights::Q4_0 => {
                    Some(distill::model::kernels::quant::QuantKind::Q4_0)
                }
            };
            Box::new(LocalTeacher::load(&dir, &t.device, t.batch_size, weights)?)
        }
        TeacherKind::Openai => Box::new(OpenAiTeacher::for_run(loaded)?),
    })
}

/// Runs the generation stage unless it is up to date.
pub fn synthetic_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    let c = &loaded.config;
    let hash = c.stage_hash(synth::SECTIONS);
    if !super::must_run(
        out,
        run,
        layout::SYNTHETIC,
        "generate",
        &hash,
        "redoing it (answers already in the cache are reused)",
    ) {
        return Ok(());
    }
    let mut inputs = synth::read_inputs(loaded, &run.stage_dir(layout::DATA))?;
    let t = &c.teacher;
    if c.generate.check_teacher && !t.trained_by_run() {
        // The run's own teacher was measured as it trained; any other is measured here.
        for set in ["validation", "eval"] {
            let dir = run.stage_dir(layout::DATA).join(set);
            if datasets::set::Set::is_set(&dir) {
                inputs.check = datasets::Set::open(&dir)?.read_all::<datasets::Sample>(None)?;
                inputs.check_set = set.to_string();
                break;
            }
        }
    }
    let mut teacher = teacher(loaded, run)?;
    let cache_path = run.path().join(layout::TEACHER_CACHE);
    let mut cache = ResponseCache::open(&cache_path)?;
    if !cache.is_empty() {
        out.say(format!(
            "generate: {} answers already in the response cache `{}`",
            thousands(cache.len() as u64),
            cache_path.display()
        ));
    }
    // The student, for the disagreement score.
    let student_dir = match &c.generate.student {
        Some(p) => Some(loaded.resolve(p)),
        None => Some(run.path().join(layout::STUDENT).join(layout::FINAL)).filter(|p| p.is_dir()),
    };
    let student = match &student_dir {
        Some(dir) => {
            let device = distill::backend::device(&c.teacher.device)?;
            let model = distill::model::checkpoint::load(dir, &device)
                .with_context(|| format!("loading the student `{}`", dir.display()))?;
            let tok = distill::data::tokenizer::Tokenizer::from_dir(dir)?;
            Some((model, tok))
        }
        None => None,
    };
    let stage = run.begin(layout::SYNTHETIC, &hash)?;
    let bar = out.progress("generate", "prompts", Some(0));
    let t0 = std::time::Instant::now();
    let mut last_phase = "";
    let summary = synth::run(
        loaded,
        inputs,
        teacher.as_mut(),
        &mut cache,
        student
            .as_ref()
            .map(|(model, tokenizer)| Student { model, tokenizer }),
        stage.path(),
        run.config_hash(),
        &mut |p| {
            if p.phase != last_phase {
                last_phase = p.phase;
                bar.set_prefix(format!("generate: {}", p.phase));
                bar.set_length(p.total);
                bar.reset_eta();
            }
            bar.set_position(p.done);
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "· {:.0} tokens/s · {} errors retried",
                p.tokens as f64 / secs,
                p.retries
            ));
        },
        &mut |check| {
            bar.suspend(|| {
                out.say(format!(
                    "generate: the teacher answered the {} {} prompts first ({} asked): {:.1}% \
                     exact match",
                    thousands(check.rows),
                    check.set,
                    thousands(check.asked),
                    100.0 * check.exact_match
                ));
                if let Some(w) = super::student::weak_against_baseline(
                    run,
                    check.exact_match,
                    &format!("on the {} prompts, asked before the pool", check.set),
                ) {
                    out.say(format!("WARNING: {w}"));
                }
            });
            Ok(())
        },
    );
    bar.finish_and_clear();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let kept = cache.len();
            return Err(anyhow::Error::from(e).context(format!(
                "generation stopped; the {} answers received so far are kept in `{}` and a \
                 rerun asks only for the rest",
                thousands(kept as u64),
                cache_path.display()
            )));
        }
    };
    let mut line = format!(
        "generate: {} from {} by `{}` ({} answered from the cache, {} asked)",
        datasets::text::count(summary.rows, "row"),
        datasets::text::count(summary.prompts + summary.synthesized, "prompt"),
        summary.teacher,
        thousands(summary.from_cache),
        thousands(summary.asked)
    );
    if summary.synthesized + summary.synthesized_rejected > 0 {
        line.push_str(&format!(
            "; {} new prompts synthesized, {} rejected as near-duplicates",
            thousands(summary.synthesized),
            thousands(summary.synthesized_rejected)
        ));
    }
    out.say(line);
    for f in &summary.filters {
        if f.removed > 0 {
            out.say(format!("  {}: removed {}", f.name, thousands(f.removed)));
        }
    }
    let mut tokens = format!(
        "  tokens: {} prompt, {} completion",
        thousands(summary.usage.prompt_tokens),
        thousands(summary.usage.completion_tokens)
    );
    if let Some(cost) = summary.usage.cost {
        tokens.push_str(&format!(
            "; cost {cost:.4} (this run {:.4})",
            summary.usage_this_run.cost.unwrap_or(0.0)
        ));
    }
    out.say(tokens);
    if !summary.hosts.is_empty() {
        out.say(format!("  prompts sent to: {}", summary.hosts.join(", ")));
    }
    // Per server of a fleet: what it answered, how fast, and whether it was taken out.
    if summary.servers.len() > 1 {
        for s in &summary.servers {
            out.say(fleet_line(s, summary.seconds));
        }
    }
    if summary.retries > 0 {
        out.say(format!(
            "  {} failed attempts were retried",
            summary.retries
        ));
    }
    if summary.token_ids == "approximate" {
        out.say("  token ids are approximate: the server returned token strings, mapped through `teacher.tokenizer`");
    }
    if summary.rows == 0 {
        // Nothing is written: the stage's temp folder goes when `stage` drops.
        return Err(empty_set(&summary, &cache_path).into());
    }
    stage.finish(serde_json::to_value(&summary)?)?;
    Ok(())
}

/// Why a synthetic set came out empty, and what to do: no stage can learn from it.
fn empty_set(summary: &distill::synth::Summary, cache: &Path) -> BadInput {
    let removed: Vec<String> = summary
        .filters
        .iter()
        .filter(|f| f.removed > 0)
        .map(|f| format!("{} {}", f.name, thousands(f.removed)))
        .collect();
    let why = if removed.is_empty() {
        "no prompt was left to ask".to_string()
    } else {
        format!("the filters removed every answer ({})", removed.join(", "))
    };
    let check = summary
        .teacher_check
        .as_ref()
        .map(|c| {
            format!(
                " (it got {:.1}% of the {} prompts right)",
                100.0 * c.exact_match,
                c.set
            )
        })
        .unwrap_or_default();
    BadInput(format!(
        "The synthetic set would be empty: {why}, so there is nothing to distil\n\n\
         hint: the answers are kept in `{}`. If they are right but filtered, loosen the filters \
         (`generate.validator`, `verify`, `min_chars`, ...) and rerun with `--force`: nothing \
         is asked again. \
         If the teacher answers wrongly{check}, ask as it was trained: its prompt template \
         (`generate.template`, `generate.shots`) and `teacher.api`",
        cache.display()
    ))
}

/// One server's line in the stage's summary.
pub fn fleet_line(s: &distill::teacher::fleet::ServerStats, seconds: f64) -> String {
    let mut line = format!(
        "  {}: {} answered, {} failed of {} requests; {} tokens, {:.1} tokens/s over the stage",
        s.host,
        thousands(s.answered),
        thousands(s.failed),
        thousands(s.requests),
        thousands(s.tokens),
        if seconds > 0.0 {
            s.tokens as f64 / seconds
        } else {
            0.0
        }
    );
    if s.taken_out > 0 {
        line.push_str(&format!(
            "; taken out {}× after {} failures in a row, brought back {}× by a health check",
            s.taken_out,
            distill::teacher::fleet::TAKE_OUT_AFTER,
            s.brought_back
        ));
    }
    if s.out_at_end {
        line.push_str("; out of the fleet at the end");
    }
    line
}
