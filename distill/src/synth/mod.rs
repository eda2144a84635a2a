//! The generation stage: prompts → teacher → filters → the synthetic set.
//!
//! Two passes. First every prompt is asked (through the response cache: an answer already in it
//! is never asked again, and each new answer is appended the moment it arrives). Then the set is
//! built from the cache alone, filtered and written in one atomic step. A run killed at any
//! moment therefore leaves no partial set, and the rerun asks only what was never answered.
//! With a local teacher and a fixed seed, every answer, and so the set, is deterministic.

pub mod filters;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datasets::card::CardInfo;
use datasets::config::{Config, DedupMode, GenerateConfig, LoadedConfig};
use datasets::decontam::Decontaminator;
use datasets::dedup::{ExactDedup, NearDedup};
use datasets::parquet::WriteOptions;
use datasets::{Kind, Message, Sample, SetOptions, SetWriter, Splits};
use serde::Serialize;

use crate::data::tokenizer::Tokenizer;
use crate::model::Model;
use crate::recipe::seed_of;
use crate::teacher::cache::{self, ResponseCache};
use crate::teacher::{Request, Response, Teacher};
use crate::{Error, Result};
use filters::{TextFilters, rouge_l};

/// Config sections whose change makes the stage stale.
pub const SECTIONS: &[&str] = &["run", "data", "teacher", "generate", "export"];

/// What the stage reads.
pub struct Inputs {
    /// The prompts to answer (a `reference` is kept and used by the verifier).
    pub prompts: Vec<Sample>,
    /// Gold rows: few-shot examples and synthesis seeds.
    pub examples: Vec<Sample>,
    /// Eval prompts to decontaminate against.
    pub eval: Vec<String>,
    /// Held-out rows with references the teacher answers first, to be measured before it is
    /// asked the pool (empty: no check). See [`TeacherCheck`].
    pub check: Vec<Sample>,
    /// The set `check` came from: `validation` or `eval`.
    pub check_set: String,
    /// Where the prompts came from, for the dataset card.
    pub source: String,
}

/// A student, for the disagreement score.
pub struct Student<'a> {
    /// The model.
    pub model: &'a Model,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
}

/// What the progress bar shows.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// `synthesize`, `ask` or `write`.
    pub phase: &'static str,
    /// Items done in this phase.
    pub done: u64,
    /// Items in this phase.
    pub total: u64,
    /// Completion tokens received in this run.
    pub tokens: u64,
    /// Failed attempts retried so far.
    pub retries: u64,
}

/// One filter's count.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Removed {
    /// The filter.
    pub name: String,
    /// Rows it removed.
    pub removed: u64,
}

/// Token counts and cost.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// The price of those tokens, when the config gives prices.
    pub cost: Option<f64>,
}

/// What the stage did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    /// The teacher's id.
    pub teacher: String,
    /// Prompts read.
    pub prompts: u64,
    /// New prompts written by the teacher (self-instruct), kept.
    pub synthesized: u64,
    /// New prompts rejected as near-duplicates (ROUGE-L) or unusable.
    pub synthesized_rejected: u64,
    /// Answers taken from the response cache.
    pub from_cache: u64,
    /// Answers asked of the teacher in this run.
    pub asked: u64,
    /// Rows in the set.
    pub rows: u64,
    /// Rows removed, per filter.
    pub filters: Vec<Removed>,
    /// Tokens of every answer in the set's making (cached or not), and their price.
    pub usage: Usage,
    /// Tokens paid for in this run only.
    pub usage_this_run: Usage,
    /// Hosts that received prompts (an `openai` teacher).
    pub hosts: Vec<String>,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// What each server of the teacher's fleet did in this run (an `openai` teacher).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<crate::teacher::fleet::ServerStats>,
    /// `exact`, or `approximate` when token strings were mapped to ids through a tokenizer.
    pub token_ids: String,
    /// Whether rows carry the teacher–student disagreement score.
    pub disagreement: bool,
    /// Seconds the stage took.
    pub seconds: f64,
    /// The teacher measured before it was asked the pool, when the stage checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_check: Option<TeacherCheck>,
}

/// Reads the stage's inputs: the config's `[generate]` sources, else the run's data stage.
pub fn read_inputs(loaded: &LoadedConfig, data_dir: &Path) -> Result<Inputs> {
    let g = &loaded.config.generate;
    let read = |src: &Option<datasets::config::SourceConfig>,
                set: &str|
     -> Result<(Vec<Sample>, String)> {
        match src {
            Some(s) => {
                let path = loaded.resolve(&s.path);
                let source = datasets::import::Source::open(&path, s.map.clone())?;
                source.check_mapping()?;
                let mut rows = Vec::new();
                source.for_each::<Sample>(8192, |chunk| {
                    rows.extend(chunk);
                    Ok(())
                })?;
                Ok((rows, format!("`{}`", path.display())))
            }
            None => {
                let dir = data_dir.join(set);
                if !datasets::set::Set::is_set(&dir) {
                    return Ok((Vec::new(), String::new()));
                }
                let rows = datasets::Set::open(&dir)?.read_all::<Sample>(None)?;
                Ok((rows, format!("the data stage's `{set}` set")))
            }
        }
    };
    let (prompts, source) = read(&g.prompts, "prompts")?;
    if prompts.is_empty() {
        return Err(Error::invalid(match &g.prompts {
            Some(s) => format!("`{}` has no prompts", loaded.resolve(&s.path).display()),
            None => "The data stage made no `prompts` set, so there is nothing to answer\n\nhint: \
                     give `data.prompts` (or `data.task`), or `generate.prompts`"
                .into(),
        }));
    }
    let (examples, _) = read(&g.examples, "gold")?;
    let eval_dir = data_dir.join("eval");
    let mut eval = Vec::new();
    if datasets::set::Set::is_set(&eval_dir) {
        for s in datasets::Set::open(&eval_dir)?.read_all::<Sample>(None)? {
            // Prompts only: a short reference (a date, a number) is shared by many honest rows.
            eval.push(s.prompt);
        }
    }
    Ok(Inputs {
        prompts,
        examples,
        eval,
        source,
        check: Vec::new(),
        check_set: String::new(),
    })
}

/// The teacher measured on held-out rows (the validation set, else the eval set) before it is
/// asked the prompt pool, through the same template and the same response cache: what a
/// teacher the run did not train itself (a checkpoint, a server) gets right, known before it is
/// paid to teach.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TeacherCheck {
    /// The held-out set: `validation` or `eval`.
    pub set: String,
    /// Rows answered.
    pub rows: u64,
    /// Share of answers equal to the reference, normalised as `[eval] normalize` says.
    pub exact_match: f64,
    /// Answers asked of the teacher for the check in this run (the rest came from the cache).
    pub asked: u64,
}

/// The request for one rendered prompt: `[generate]`'s sampling, or greedy (as evaluation
/// decodes).
fn request(
    g: &GenerateConfig,
    text: &str,
    messages: Vec<Message>,
    seed: u64,
    greedy: bool,
) -> Request {
    Request {
        messages,
        prompt: match &g.system {
            Some(sys) => format!("{sys}\n\n{text}"),
            None => text.to_string(),
        },
        max_tokens: g.max_new_tokens,
        temperature: if greedy { 0.0 } else { g.temperature },
        top_p: if greedy { 1.0 } else { g.top_p },
        seed,
        stop: g.stop.clone(),
        top_logprobs: g.top_logprobs,
    }
}

/// Asks the teacher the check rows of `set` that have a reference, greedily, and measures its
/// exact match.
#[allow(clippy::too_many_arguments)]
fn check_teacher(
    c: &Config,
    rows: &[Sample],
    set: &str,
    renderer: &Renderer,
    teacher: &mut dyn Teacher,
    cache: &mut ResponseCache,
    tokens: &mut u64,
    progress: &mut dyn FnMut(&Progress),
    paid: &mut Usage,
) -> Result<TeacherCheck> {
    let rows: Vec<&Sample> = rows.iter().filter(|s| s.reference.is_some()).collect();
    let mut requests = Vec::with_capacity(rows.len());
    for s in &rows {
        let (text, messages) = renderer.render(s)?;
        let seed = seed_of(c.run.seed, &format!("check\0{}", s.id));
        requests.push(request(&c.generate, &text, messages, seed, true));
    }
    let keys: Vec<String> = requests
        .iter()
        .map(|r| cache::key(teacher.cache_id(), r))
        .collect();
    let asked = ask_all(
        teacher, cache, &requests, &keys, "check", tokens, progress, paid,
    )?;
    let norm = &c.eval.normalize;
    let mut right = 0u64;
    for (s, key) in rows.iter().zip(&keys) {
        let r = cache.get(key)?.ok_or_else(|| {
            Error::teacher("An answer vanished from the response cache while it was open")
        })?;
        let reference = s.reference.as_deref().unwrap_or_default();
        right += u64::from(
            datasets::config::Normalize::apply(norm, &r.text)
                == datasets::config::Normalize::apply(norm, reference),
        );
    }
    Ok(TeacherCheck {
        set: set.to_string(),
        rows: rows.len() as u64,
        exact_match: right as f64 / rows.len().max(1) as f64,
        asked,
    })
}

/// Renders prompts through the `[generate]` template.
struct Renderer {
    env: minijinja::Environment<'static>,
    examples: Vec<(String, String)>,
    shots: usize,
    system: Option<String>,
    run_seed: u64,
}

impl Renderer {
    fn new(g: &GenerateConfig, examples: &[Sample], run_seed: u64) -> Result<Renderer> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template_owned("prompt", g.template.clone())
            .map_err(|e| Error::invalid(format!("`generate.template` does not parse: {e}")))?;
        let examples = examples
            .iter()
            .filter_map(|s| {
                let answer = s.completion.clone().or_else(|| s.reference.clone())?;
                Some((s.prompt.clone(), answer))
            })
            .collect::<Vec<_>>();
        if g.shots > 0 && examples.len() < g.shots {
            return Err(Error::invalid(format!(
                "`generate.shots` is {} but only {} gold examples have an answer\n\nhint: lower \
                 `generate.shots`, or give `generate.examples` with answers",
                g.shots,
                examples.len()
            )));
        }
        Ok(Renderer {
            env,
            examples,
            shots: g.shots,
            system: g.system.clone(),
            run_seed,
        })
    }

    /// The user turn and the messages for one prompt row.
    fn render(&self, s: &Sample) -> Result<(String, Vec<Message>)> {
        let mut shots = Vec::new();
        if self.shots > 0 {
            // A seeded draw per prompt, never the prompt itself.
            let mut order: Vec<usize> = (0..self.examples.len())
                .filter(|&i| self.examples[i].0 != s.prompt)
                .collect();
            let mut state = seed_of(self.run_seed, &format!("shots\0{}", s.id));
            for i in (1..order.len()).rev() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = (state >> 33) as usize % (i + 1);
                order.swap(i, j);
            }
            for &i in order.iter().take(self.shots) {
                let (p, c) = &self.examples[i];
                shots.push(minijinja::context! { prompt => p, completion => c });
            }
        }
        let text = self
            .env
            .get_template("prompt")
            .and_then(|t| {
                t.render(minijinja::context! {
                    prompt => &s.prompt,
                    reference => &s.reference,
                    examples => shots,
                })
            })
            .map_err(|e| {
                Error::invalid(format!(
                    "`generate.template` failed on prompt `{}`: {e}",
                    datasets::text::inert_line(&s.prompt)
                ))
            })?;
        let mut messages = Vec::new();
        if let Some(sys) = &self.system {
            messages.push(Message::new("system", sys.clone()));
        }
        messages.push(Message::new("user", text.clone()));
        Ok((text, messages))
    }
}

/// Asks every request not in the cache; returns how many were asked.
#[allow(clippy::too_many_arguments)]
fn ask_all(
    teacher: &mut dyn Teacher,
    cache: &mut ResponseCache,
    requests: &[Request],
    keys: &[String],
    phase: &'static str,
    tokens: &mut u64,
    progress: &mut dyn FnMut(&Progress),
    paid: &mut Usage,
) -> Result<u64> {
    let missing: Vec<usize> = (0..requests.len())
        .filter(|&i| !cache.contains(&keys[i]))
        .collect();
    let total = requests.len() as u64;
    let mut done = total - missing.len() as u64;
    let mut asked = 0u64;
    progress(&Progress {
        phase,
        done,
        total,
        tokens: *tokens,
        retries: teacher.stats().retries,
    });
    for chunk in missing.chunks(teacher.batch_size().max(1)) {
        let batch: Vec<Request> = chunk.iter().map(|&i| requests[i].clone()).collect();
        let mut record = |j: usize, r: Response| -> Result<()> {
            cache.put(&keys[chunk[j]], &r)?;
            *tokens += r.completion_tokens;
            paid.prompt_tokens += r.prompt_tokens;
            paid.completion_tokens += r.completion_tokens;
            done += 1;
            asked += 1;
            Ok(())
        };
        let result = teacher.answer(&batch, &mut record);
        cache.sync()?;
        result?;
        progress(&Progress {
            phase,
            done,
            total,
            tokens: *tokens,
            retries: teacher.stats().retries,
        });
    }
    Ok(asked)
}

/// Self-instruct: the teacher writes new prompts from seed tasks; near-duplicates (ROUGE-L above
/// the threshold against every prompt so far) are rejected.
#[allow(clippy::too_many_arguments)]
fn synthesize(
    c: &Config,
    seeds: &[Sample],
    pool: &[Sample],
    teacher: &mut dyn Teacher,
    cache: &mut ResponseCache,
    tokens: &mut u64,
    progress: &mut dyn FnMut(&Progress),
    paid: &mut Usage,
) -> Result<(Vec<Sample>, u64, u64)> {
    let g = &c.generate;
    if seeds.is_empty() {
        return Err(Error::invalid(
            "`generate.synthesize` needs seed tasks, and there are no gold examples\n\nhint: \
             give `data.gold` (or `generate.examples`)",
        ));
    }
    let mut known: Vec<String> = pool.iter().map(|s| s.prompt.clone()).collect();
    known.extend(seeds.iter().map(|s| s.prompt.clone()));
    let mut kept: Vec<Sample> = Vec::new();
    let mut rejected = 0u64;
    let mut asked = 0u64;
    let mut round = 0usize;
    // At most five requests per wanted prompt, in rounds: each round asks for what is missing.
    while kept.len() < g.synthesize && round * g.synthesize < g.synthesize * 5 {
        let want = g.synthesize - kept.len();
        let mut requests = Vec::with_capacity(want);
        for k in 0..want {
            let idx = round * g.synthesize + k;
            let seed = seed_of(c.run.seed, &format!("synthesize\0{idx}"));
            let mut lines = String::from(
                "Here are examples of tasks. Write one new task of the same kind, different \
                 from all of them. Reply with the task only, on one line.\n\n",
            );
            let n = g.synthesize_examples.min(seeds.len());
            for j in 0..n {
                let pick = (seed as usize).wrapping_add(j.wrapping_mul(7919)) % seeds.len();
                lines.push_str(&format!("Task {}: {}\n", j + 1, seeds[pick].prompt));
            }
            lines.push_str(&format!("Task {}:", n + 1));
            requests.push(Request {
                messages: vec![Message::new("user", lines.clone())],
                prompt: lines,
                max_tokens: g.max_new_tokens,
                temperature: if g.temperature > 0.0 {
                    g.temperature
                } else {
                    1.0
                },
                top_p: g.top_p,
                seed,
                stop: vec!["\n".into()],
                top_logprobs: 0,
            });
        }
        let keys: Vec<String> = requests
            .iter()
            .map(|r| cache::key(teacher.cache_id(), r))
            .collect();
        asked += ask_all(
            teacher,
            cache,
            &requests,
            &keys,
            "synthesize",
            tokens,
            progress,
            paid,
        )?;
        for key in &keys {
            let r = cache.get(key)?.ok_or_else(|| {
                Error::teacher("An answer vanished from the response cache while it was open")
            })?;
            let line = r.text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let mut task = line.trim();
            if let Some(rest) = task.strip_prefix("Task")
                && let Some((_, after)) = rest.split_once(':')
            {
                task = after.trim();
            }
            if task.is_empty()
                || kept.len() >= g.synthesize
                || known
                    .iter()
                    .any(|k| rouge_l(task, k) > g.synthesize_max_similarity)
            {
                rejected += 1;
                continue;
            }
            known.push(task.to_string());
            let mut s = Sample::from_prompt(task);
            s.template = Some("self-instruct".into());
            kept.push(s);
        }
        round += 1;
    }
    Ok((kept, rejected, asked))
}

/// Mean forward KL from teacher to student per completion token, on the teacher's top-k with both
/// distributions renormalised over those tokens: 0 when the student agrees with the teacher on
/// what the teacher found likely, however much mass either puts elsewhere.
fn disagreement(
    student: &Student<'_>,
    messages: &[Message],
    prompt: &str,
    r: &Response,
) -> Result<Option<f32>> {
    if r.top.is_empty() || r.ids.is_empty() {
        return Ok(None);
    }
    let tok = student.tokenizer;
    let mut ids = if tok.chat_template().is_some() {
        let text = tok.apply_chat_template(messages, true)?;
        tok.encode(&text, false)?
    } else {
        tok.encode(prompt, true)?
    };
    let vocab = student.model.config().vocab_size as u32;
    if r.ids
        .iter()
        .chain(r.top.iter().flatten().map(|t| &t.id))
        .any(|&id| id >= vocab)
    {
        return Ok(None);
    }
    let start = ids.len();
    if start == 0 {
        return Ok(None);
    }
    ids.extend(&r.ids);
    let limit = student.model.config().max_position_embeddings;
    if ids.len() > limit {
        return Ok(None);
    }
    let logits = crate::generate::logits(student.model, &ids)?;
    let mut total = 0.0f64;
    let mut n = 0usize;
    for (t, top) in r.top.iter().enumerate() {
        if top.is_empty() {
            continue;
        }
        let row = &logits[start + t - 1];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64
            + row
                .iter()
                .map(|&x| ((x - max) as f64).exp())
                .sum::<f64>()
                .ln();
        let mass: f64 = top.iter().map(|e| (e.logprob as f64).exp()).sum();
        let student_mass: f64 = top
            .iter()
            .map(|e| (row[e.id as usize] as f64 - lse).exp())
            .sum();
        if mass <= 0.0 || student_mass <= 0.0 {
            continue;
        }
        let mut kl = 0.0;
        for e in top {
            let log_p = e.logprob as f64 - mass.ln();
            let log_q = row[e.id as usize] as f64 - lse - student_mass.ln();
            kl += log_p.exp() * (log_p - log_q);
        }
        total += kl.max(0.0);
        n += 1;
    }
    Ok((n > 0).then(|| (total / n as f64) as f32))
}

fn price(c: &Config, u: &mut Usage) {
    let t = &c.teacher;
    if t.price_input_per_mtok.is_some() || t.price_output_per_mtok.is_some() {
        u.cost = Some(
            u.prompt_tokens as f64 / 1e6 * t.price_input_per_mtok.unwrap_or(0.0)
                + u.completion_tokens as f64 / 1e6 * t.price_output_per_mtok.unwrap_or(0.0),
        );
    }
}

/// Runs the stage: asks the teacher (through `cache`), filters, and writes the set into `out`
/// (a stage directory, empty).
#[allow(clippy::too_many_arguments)]
pub fn run(
    loaded: &LoadedConfig,
    inputs: Inputs,
    teacher: &mut dyn Teacher,
    cache: &mut ResponseCache,
    student: Option<Student<'_>>,
    out: &Path,
    config_hash: &str,
    progress: &mut dyn FnMut(&Progress),
    on_check: &mut dyn FnMut(&TeacherCheck) -> Result<()>,
) -> Result<Summary> {
    let t0 = Instant::now();
    let c = &loaded.config;
    let g = &c.generate;
    let mut tokens = 0u64;
    let mut paid = Usage::default();
    let renderer = Renderer::new(g, &inputs.examples, c.run.seed)?;
    let mut teacher_check = None;
    let mut asked = 0;
    if !inputs.check.is_empty() {
        let check = check_teacher(
            c,
            &inputs.check,
            &inputs.check_set,
            &renderer,
            teacher,
            cache,
            &mut tokens,
            progress,
            &mut paid,
        )?;
        asked += check.asked;
        on_check(&check)?;
        teacher_check = Some(check);
    }
    let mut prompts = inputs.prompts;
    if g.limit > 0 {
        prompts.truncate(g.limit);
    }
    let read = prompts.len() as u64;
    let (mut synthesized, mut synth_rejected) = (0, 0);
    if g.synthesize > 0 {
        let (new, rejected, n) = synthesize(
            c,
            &inputs.examples,
            &prompts,
            teacher,
            cache,
            &mut tokens,
            progress,
            &mut paid,
        )?;
        synthesized = new.len() as u64;
        synth_rejected = rejected;
        asked += n;
        prompts.extend(new);
    }

    // Prompts that overlap the eval set go before the teacher is asked: a paid call on a row
    // that is then dropped buys nothing.
    let mut decontam = (g.decontaminate && !inputs.eval.is_empty()).then(|| {
        Decontaminator::new(
            inputs.eval.iter().map(String::as_str),
            c.data.decontam_ngram,
        )
    });
    if let Some(f) = decontam.as_mut() {
        prompts.retain(|s| f.keep(&s.id, &s.prompt));
    }

    // Pass 1: every prompt answered, through the cache.
    let mut rendered = Vec::with_capacity(prompts.len());
    let mut requests = Vec::with_capacity(prompts.len());
    for s in &prompts {
        let (text, messages) = renderer.render(s)?;
        let seed = seed_of(c.run.seed, &format!("answer\0{}", s.id));
        requests.push(request(g, &text, messages.clone(), seed, false));
        rendered.push((text, messages));
    }
    let keys: Vec<String> = requests
        .iter()
        .map(|r| cache::key(teacher.cache_id(), r))
        .collect();
    let from_cache = keys.iter().filter(|k| cache.contains(k)).count() as u64;
    asked += ask_all(
        teacher,
        cache,
        &requests,
        &keys,
        "ask",
        &mut tokens,
        progress,
        &mut paid,
    )?;

    // Pass 2: the set, from the cache alone.
    let text_filters = TextFilters::new(g)?;
    let mut removed: BTreeMap<&'static str, u64> =
        text_filters.names().into_iter().map(|n| (n, 0)).collect();
    if g.min_logprob_mean.is_some() {
        removed.insert(LOW_CONFIDENCE, 0);
    }
    let mut exact = (g.dedup != DedupMode::None).then(ExactDedup::new);
    let mut near = (g.dedup == DedupMode::Near)
        .then(|| NearDedup::new(c.data.near_threshold, c.data.shingle_words, c.run.seed));
    let template_name = if g.template == "{{ prompt }}" && g.system.is_none() {
        None
    } else {
        Some(format!(
            "generate.template#{}",
            &blake3::hash(g.template.as_bytes()).to_hex()[..8]
        ))
    };
    let mut set_usage = Usage::default();
    let mut approximate = keys.iter().any(|k| cache.exact(k) == Some(false));
    let mut with_disagreement = false;
    let mut hosts = std::collections::BTreeSet::new();
    let mut writer = SetWriter::create(
        out,
        Kind::Sample,
        SetOptions {
            splits: Splits::single("train"),
            shard_bytes: c.export.shard_mib << 20,
            parquet: WriteOptions {
                max_row_group_rows: c.export.row_group_rows,
                zstd_level: c.export.zstd_level,
                config_hash: Some(config_hash.to_string()),
                metadata: vec![
                    ("workbench.teacher".into(), teacher.id().to_string()),
                    (
                        "workbench.token_ids".into(),
                        if approximate { "approximate" } else { "exact" }.into(),
                    ),
                ],
                ..Default::default()
            },
            card: CardInfo {
                title: format!("{} · synthetic", c.run.name),
                description: format!(
                    "Teacher completions with per-token top-{} logprobs, written by `{}` for the \
                     workbench run `{}`.",
                    g.top_logprobs,
                    teacher.id(),
                    c.run.name
                ),
                license: c.export.license.clone(),
                tags: vec![
                    "workbench".into(),
                    "synthetic".into(),
                    "distillation".into(),
                ],
                provenance: vec![
                    ("prompts".into(), inputs.source.clone()),
                    ("teacher".into(), teacher.id().to_string()),
                    ("config hash".into(), config_hash.to_string()),
                ],
            },
            replace: false,
        },
    )?;
    let total = prompts.len() as u64;
    let mut batch: Vec<Sample> = Vec::with_capacity(256);
    for (i, (s, key)) in prompts.iter().zip(&keys).enumerate() {
        let r = cache.get(key)?.ok_or_else(|| {
            Error::teacher("An answer vanished from the response cache while it was open")
        })?;
        set_usage.prompt_tokens += r.prompt_tokens;
        set_usage.completion_tokens += r.completion_tokens;
        approximate |= !r.ids_exact;
        if let Some(h) = &r.host {
            hosts.insert(h.clone());
        }
        if g.min_logprob_mean.is_some() && !r.text.is_empty() && r.logprobs.is_empty() {
            return Err(no_logprobs(teacher.id()));
        }
        let (_, messages) = &rendered[i];
        let verdict = text_filters
            .check(&r.text, s.reference.as_deref())
            .and_then(|()| confident(g.min_logprob_mean, &r));
        if let Err(name) = verdict {
            *removed.entry(name).or_default() += 1;
            continue;
        }
        let both = format!("{}\n{}", s.prompt, r.text);
        let id_for_filters = s.id.clone();
        if let Some(f) = exact.as_mut()
            && !f.keep(&id_for_filters, &both)
        {
            continue;
        }
        if let Some(f) = near.as_mut()
            && !f.keep(&id_for_filters, &both)
        {
            continue;
        }
        let score = match &student {
            Some(st) => disagreement(st, messages, &requests[i].prompt, &r)?,
            None => None,
        };
        with_disagreement |= score.is_some();
        let mut row = Sample {
            id: String::new(),
            prompt: s.prompt.clone(),
            messages: messages.clone(),
            completion: Some(r.text.clone()),
            completion_ids: r.ids.clone(),
            teacher_topk: r.top.clone(),
            teacher: Some(teacher.id().to_string()),
            logprob_mean: r.logprob_mean(),
            entropy_mean: r.entropy_mean,
            disagreement: score,
            reference: s.reference.clone(),
            template: template_name.clone().or_else(|| s.template.clone()),
            slice: s.slice.clone(),
            seed: Some(requests[i].seed),
            created_at: r.received_at,
        };
        row.id = row.content_id();
        batch.push(row);
        if batch.len() == 256 {
            writer.write(&batch)?;
            batch.clear();
            progress(&Progress {
                phase: "write",
                done: i as u64 + 1,
                total,
                tokens,
                retries: teacher.stats().retries,
            });
        }
    }
    writer.write(&batch)?;
    let stats = teacher.stats();
    hosts.extend(stats.hosts.iter().cloned());
    let hosts: Vec<String> = hosts.into_iter().collect();
    price(c, &mut set_usage);
    price(c, &mut paid);
    let token_ids = if approximate { "approximate" } else { "exact" };
    {
        let card = writer.card_mut();
        card.provenance.push((
            "token ids".into(),
            if approximate {
                "approximate: the server returned token strings, mapped to ids through the \
                 tokenizer in `teacher.tokenizer`"
                    .into()
            } else {
                "exact (the teacher's own ids)".into()
            },
        ));
        if !hosts.is_empty() {
            card.provenance
                .push(("hosts that received prompts".into(), hosts.join(", ")));
        }
        if let Some(cost) = set_usage.cost {
            card.provenance
                .push(("teacher cost".into(), format!("{cost:.4}")));
        }
    }
    let written = writer.finish()?;
    let mut filters: Vec<Removed> = removed
        .into_iter()
        .map(|(name, n)| Removed {
            name: name.to_string(),
            removed: n,
        })
        .collect();
    for r in [
        exact.map(|f| f.report),
        near.map(|f| f.report),
        decontam.map(|f| f.report),
    ]
    .into_iter()
    .flatten()
    {
        filters.push(Removed {
            name: r.name,
            removed: r.removed,
        });
    }
    Ok(Summary {
        teacher: teacher.id().to_string(),
        prompts: read,
        synthesized,
        synthesized_rejected: synth_rejected,
        from_cache,
        asked,
        rows: written.rows,
        filters,
        usage: set_usage,
        usage_this_run: paid,
        hosts,
        retries: stats.retries,
        servers: stats.servers.clone(),
        token_ids: token_ids.into(),
        disagreement: with_disagreement,
        seconds: t0.elapsed().as_secs_f64(),
        teacher_check,
    })
}

/// The confidence filter's name in the summary.
const LOW_CONFIDENCE: &str = "low confidence";

/// The confidence filter (`generate.min_logprob_mean`): an answer whose tokens' mean logprob is
/// below `min` is dropped. An answer without logprobs cannot be judged and is dropped too (a
/// teacher that returns none at all is refused before, by [`no_logprobs`]).
fn confident(min: Option<f64>, r: &Response) -> filters::Verdict {
    match (min, r.logprob_mean()) {
        (None, _) => Ok(()),
        (Some(min), Some(m)) if f64::from(m) >= min => Ok(()),
        (Some(_), _) => Err(LOW_CONFIDENCE),
    }
}

/// The error for a confidence filter on a teacher that returns no logprobs.
fn no_logprobs(teacher: &str) -> Error {
    Error::invalid(format!(
        "`generate.min_logprob_mean` filters answers by the teacher's token logprobs, but \
         `{teacher}` returned an answer without any, so its confidence cannot be judged\n\nhint: \
         serve the teacher with logprobs (vLLM, llama.cpp's server and `workbench serve` return \
         them), or remove `generate.min_logprob_mean`"
    ))
}

/// The default local teacher directory of a run.
pub fn default_teacher_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(datasets::rundir::layout::TEACHER)
}
