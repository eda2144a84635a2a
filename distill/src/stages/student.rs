//! The distilled student (on the synthetic set, and the gold set with `distill.include_gold`) and
//! the gold-only baseline (the same student, same initial weights and steps, on the gold set
//! alone).

use datasets::rundir::layout;
use std::path::Path;

use burn::tensor::Device;
use datasets::Sample;
use datasets::config::{Config, DistillLoss, DivergenceKind, LoadedConfig};

use crate::data::tokenizer::Tokenizer;
use crate::model::{Model, checkpoint};
use crate::recipe::{self, seed_of};
use crate::stages::inputs::{RunData, gold_examples, run_tokenizer, students_gold};
use crate::stages::teacher::teacher_dir;
use crate::teacher::cache::ResponseCache;
use crate::teacher::grade::Grader;
use crate::teacher::openai::OpenAiTeacher;
use crate::train::job::{Checkpoints, FitSummary, Job, fit, model_config, train_options};
use crate::train::loss::Divergence;
use crate::train::{Objective, StepLog};
use crate::{Error, Result};

/// The student's starting point: its model and tokenizer, and the tokenizer of the teacher's
/// ids (when known), to check that their vocabularies agree.
pub struct StudentStart {
    /// Initial weights (fresh or from `student.path`).
    pub model: Model,
    /// The student's tokenizer.
    pub tokenizer: Tokenizer,
    /// Whether the teacher's token ids are the student's.
    pub same_vocabulary: bool,
    /// Why not, when they are not.
    pub vocabulary_note: String,
}

/// Loads or makes the student: `student.path`, the local teacher cut down
/// (`student.from_teacher`), or fresh weights over the local teacher's tokenizer (or, with an
/// `openai` teacher, `teacher.tokenizer` or the run's own tokenizer).
/// Fresh weights come from a seed of their own, so the student and the gold-only baseline start
/// from the same weights.
pub fn student_start(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    device: &Device,
) -> Result<StudentStart> {
    let c = &loaded.config;
    let teacher_tok = match teacher_dir(loaded, run_dir) {
        Some(dir) => Some(Tokenizer::from_dir(&dir)?),
        None => c
            .teacher
            .tokenizer
            .as_ref()
            .map(|p| Tokenizer::from_dir(&loaded.resolve(p)))
            .transpose()?,
    };
    let (model, tokenizer) = match (&c.student.path, &c.student.from_teacher) {
        (Some(p), _) => {
            let dir = loaded.resolve(p);
            checkpoint::load_with_tokenizer(&dir, device)?
        }
        (None, Some(cut)) => {
            let Some(dir) = teacher_dir(loaded, run_dir) else {
                return Err(Error::invalid(
                    "`student.from_teacher` needs a local teacher to cut the student from",
                ));
            };
            let (teacher, tok) = checkpoint::load_with_tokenizer(&dir, device)?;
            let layers = teacher.config().num_hidden_layers;
            let keep = datasets::config::kept_layers(layers, cut.layers);
            let model = teacher.cut(&keep).ok_or_else(|| {
                Error::invalid(format!(
                    "`student.from_teacher.layers` is {}, but the teacher in `{}` has {layers} \
                     layers; keep at most {layers}",
                    cut.layers,
                    dir.display()
                ))
            })?;
            let model = match cut.intermediate_size {
                None => model,
                Some(width) => {
                    let inter = teacher.config().intermediate_size;
                    model.narrow_mlp(width).ok_or_else(|| {
                        Error::invalid(format!(
                            "`student.from_teacher.intermediate_size` is {width}, but the \
                             teacher in `{}` has {inter} MLP channels; keep at most {inter}",
                            dir.display()
                        ))
                    })?
                }
            };
            (model, tok)
        }
        (None, None) => {
            let tok = match &teacher_tok {
                Some(t) => t.clone(),
                None => run_tokenizer(c, data)?,
            };
            device.seed(seed_of(c.run.seed, "student init"));
            let model = model_config(&c.student.architecture, tok.vocab_size()).init(device);
            (model, tok)
        }
    };
    let (same_vocabulary, vocabulary_note) = match &teacher_tok {
        Some(t) if t.same_vocabulary(&tokenizer) => (true, String::new()),
        Some(_) => (
            false,
            "the teacher's tokenizer and the student's have different vocabularies".into(),
        ),
        None => (
            false,
            "the `openai` teacher's vocabulary is unknown (set `teacher.tokenizer` to its \
             tokenizer directory to compare)"
                .into(),
        ),
    };
    Ok(StudentStart {
        model,
        tokenizer,
        same_vocabulary,
        vocabulary_note,
    })
}

pub(crate) fn divergence(c: &Config) -> Divergence {
    match c.distill.divergence {
        DivergenceKind::ForwardKl => Divergence::ForwardKl,
        DivergenceKind::ReverseKl => Divergence::ReverseKl,
        DivergenceKind::Jsd => Divergence::Jsd(c.distill.beta),
    }
}

/// Distils the student from the synthetic set (and the gold set with `include_gold`); the model
/// lands in `stage_dir/final/`. `stage` is `student`, or a `[[distill.compare]]` student's
/// stage (whose keys `loaded` then holds in `[distill]`).
#[allow(clippy::too_many_arguments)]
pub fn distill_student(
    stage: &str,
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    synthetic: &[Sample],
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let d = &c.distill;
    let device = crate::backend::device(&c.teacher.device)?.autodiff();
    let start = student_start(loaded, run_dir, data, &device)?;
    let kd = d.loss == DistillLoss::Kd;
    if kd && !start.same_vocabulary {
        return Err(Error::invalid(format!(
            "Logit distillation (`distill.loss = \"kd\"`) needs the teacher and the student to \
             share a vocabulary, but {}\n\nhint: use sequence-level KD, `distill.loss = \"ce\"`: \
             the student then learns from the teacher's text, whatever its tokenizer",
            start.vocabulary_note
        )));
    }
    let tok = &start.tokenizer;
    let max_positions = start.model.config().max_position_embeddings;
    let vocab = start.model.config().vocab_size as u32;
    let gold = students_gold(c, data);
    let mut train = Vec::with_capacity(synthetic.len() + gold.len());
    let (mut skipped, mut too_long) = (0, 0);
    for s in synthetic {
        let Some(completion) = &s.completion else {
            skipped += 1;
            continue;
        };
        let teacher = (kd && !s.completion_ids.is_empty())
            .then_some((s.completion_ids.as_slice(), s.teacher_topk.as_slice()));
        if teacher.is_some_and(|(ids, _)| ids.iter().any(|&i| i >= vocab)) {
            return Err(Error::invalid(format!(
                "A synthetic row ({}) has token ids outside the student's vocabulary of {vocab}\
                 \n\nhint: use `distill.loss = \"ce\"` (sequence-level KD)",
                s.id
            )));
        }
        let e = recipe::example(tok, &s.prompt, completion, teacher)?;
        if e.ids.len() <= max_positions {
            train.push(e);
        } else {
            too_long += 1;
        }
    }
    let synthetic_rows = train.len();
    skipped += too_long;
    if d.include_gold {
        let gold = gold_examples(tok, gold, max_positions)?;
        skipped += gold.skipped();
        train.extend(gold.examples);
    }
    if synthetic_rows == 0 {
        return Err(Error::invalid(if too_long > 0 {
            format!(
                "None of the {} synthetic rows fits the student: {too_long} are longer than its \
                 {max_positions} positions\n\nhint: use a student with more positions \
                 (`student.architecture.max_positions`), or shorter prompts",
                synthetic.len()
            )
        } else {
            "The synthetic set has no usable rows, so there is nothing to distil\n\nhint: look \
             at the generation summary (filters may have removed every row)"
                .to_string()
        }));
    }
    let full_teacher = if d.full_vocab {
        let Some(dir) = teacher_dir(loaded, run_dir) else {
            return Err(Error::invalid(
                "`distill.full_vocab = true` needs a local teacher (its full distribution is \
                 computed during training); an `openai` teacher gives only its top-k",
            ));
        };
        Some(burn::module::Module::no_grad(checkpoint::load(
            &dir, &device,
        )?))
    } else {
        None
    };
    // On-policy without the full distribution: the teacher's top-k at the student's tokens,
    // from the local checkpoint or over HTTP.
    let k = c.generate.top_logprobs;
    let mut grader = match (
        d.on_policy > 0.0 && !d.full_vocab,
        teacher_dir(loaded, run_dir),
    ) {
        (false, _) => None,
        (true, Some(dir)) => Some(Grader::Local {
            model: checkpoint::load(&dir, &crate::backend::device(&c.teacher.device)?)?,
            k,
        }),
        (true, None) => Some(Grader::Remote {
            teacher: Box::new(OpenAiTeacher::for_run(loaded)?),
            cache: ResponseCache::open(&run_dir.join(layout::TEACHER_CACHE))?,
            k,
        }),
    };
    let objective = match d.loss {
        DistillLoss::Ce => Objective::CrossEntropy,
        DistillLoss::Kd => Objective::Distill {
            alpha: d.alpha,
            divergence: divergence(c),
            temperature: d.temperature,
        },
    };
    let label = match d.loss {
        DistillLoss::Ce => "ce (sequence-level KD)".to_string(),
        DistillLoss::Kd => {
            format!(
                "kd ({}, {}, T={}, alpha={})",
                match d.divergence {
                    DivergenceKind::ForwardKl => "forward KL".to_string(),
                    DivergenceKind::ReverseKl => "reverse KL".to_string(),
                    DivergenceKind::Jsd => format!("JSD beta={}", d.beta),
                },
                if d.full_vocab {
                    "full vocabulary".to_string()
                } else {
                    format!("top-{k}")
                },
                d.temperature,
                d.alpha
            ) + &if d.on_policy > 0.0 {
                format!(
                    ", on-policy {} at T={}, graded by {}{}",
                    d.on_policy,
                    d.sample_temperature,
                    match &grader {
                        None => "the local teacher's full distribution",
                        Some(Grader::Local { .. }) => "the local teacher's top-k",
                        Some(Grader::Remote { .. }) => "the server's top-k",
                    },
                    if d.on_policy_after > 0 {
                        format!(" after step {}", d.on_policy_after)
                    } else {
                        String::new()
                    }
                ) + &if d.replace_below > 0.0 {
                    format!(
                        ", the tokens it gives under {} replaced by its own",
                        d.replace_below
                    )
                } else {
                    String::new()
                }
            } else {
                String::new()
            }
        }
    };
    let mut options = train_options(&d.train, seed_of(c.run.seed, "student data"), objective);
    if d.on_policy > 0.0 {
        options.on_policy = Some(crate::train::OnPolicy {
            lambda: d.on_policy,
            temperature: d.sample_temperature as f32,
            max_new_tokens: d.max_new_tokens.unwrap_or(c.generate.max_new_tokens),
            eos_ids: tok.eos_id().into_iter().collect(),
            // A sample must fit the local teacher that grades it too.
            max_positions: match (&full_teacher, &grader) {
                (Some(t), _) | (None, Some(Grader::Local { model: t, .. })) => {
                    max_positions.min(t.config().max_position_embeddings)
                }
                _ => max_positions,
            },
            after: d.on_policy_after,
            replace_below: d.replace_below,
        });
    }
    let model_dir = stage_dir.join(layout::FINAL);
    fit(
        Job {
            stage,
            model: start.model,
            tokenizer: tok,
            train,
            skipped,
            eval: data.selection(),
            options,
            frozen: full_teacher.as_ref(),
            grader: grader.as_mut(),
            settings: &c.eval,
            objective: label,
        },
        &device,
        checkpoints,
        &model_dir,
        stage_dir,
        config_hash,
        on_step,
    )
}

/// Trains the gold-only baseline: the student's starting weights, the same steps, the gold set
/// alone (CE).
pub fn train_baseline(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let device = crate::backend::device(&c.teacher.device)?.autodiff();
    let start = student_start(loaded, run_dir, data, &device)?;
    let max_positions = start.model.config().max_position_embeddings;
    let gold = students_gold(c, data);
    let examples = gold_examples(&start.tokenizer, gold, max_positions)?;
    if examples.examples.is_empty() {
        let positions_key = c
            .student
            .path
            .is_none()
            .then_some("student.architecture.max_positions");
        return Err(examples.nothing_to_learn(
            gold.len(),
            "the gold-only baseline",
            positions_key,
            max_positions,
        ));
    }
    let skipped = examples.skipped();
    let train = examples.examples;
    let options = train_options(
        &c.distill.train,
        seed_of(c.run.seed, "student data"),
        Objective::CrossEntropy,
    );
    let model_dir = stage_dir.join(layout::FINAL);
    fit(
        Job {
            stage: layout::BASELINE,
            model: start.model,
            tokenizer: &start.tokenizer,
            train,
            skipped,
            eval: data.selection(),
            options,
            frozen: None,
            grader: None,
            settings: &c.eval,
            objective: "ce (gold only)".into(),
        },
        &device,
        checkpoints,
        &model_dir,
        stage_dir,
        config_hash,
        on_step,
    )
}
