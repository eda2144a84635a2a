//! What a run will need in memory, from its config alone, so that a run that cannot fit is refused
//! before it starts (naming the key that makes it too big) instead of aborting half-way with an
//! allocation failure and a backtrace.
//!
//! The estimate is an upper bound of the big terms, not an account of every byte: f32 weights,
//! their gradients and AdamW's two moments; a micro-batch's activations at the longest sequence
//! (the autodiff graph keeps about a dozen `[batch, seq, hidden]` tensors per layer, the attention
//! scores, the MLP and the logits with their gradients); the KV cache of generation; and the rows
//! of a built-in task's sets with their top-k logprobs. Checkpoints the workbench loads from
//! `path` keys are not counted (their size is in their own files), nor are sets read from files.

use super::{Architecture, Config, DistillLoss, TrainConfig};

/// One term of a stage's need: what it is, the keys that set its size, and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// What the memory holds, e.g. "weights, gradients and optimizer state".
    pub what: String,
    /// The config keys that size it, with their values.
    pub keys: Vec<(String, u128)>,
    /// Bytes.
    pub bytes: f64,
}

/// The need of one stage of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StageNeed {
    /// The stage: `data`, `teacher training`, `generation`, `distillation`, `fine-tune`.
    pub stage: &'static str,
    /// Its terms.
    pub terms: Vec<Term>,
}

impl StageNeed {
    /// Bytes in all.
    pub fn bytes(&self) -> f64 {
        self.terms.iter().map(|t| t.bytes).sum()
    }

    /// The biggest term.
    pub fn largest(&self) -> Option<&Term> {
        self.terms.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes))
    }
}

const F32: f64 = 4.0;
/// Bytes a row of a built-in task's set takes in memory (id, prompt, reference, messages and
/// the struct around them).
const ROW_BYTES: f64 = 1024.0;
/// Bytes the process needs besides the terms: the binary, the thread pools, the allocator's slack.
const BASE_BYTES: f64 = 256.0 * 1024.0 * 1024.0;

/// Parameters of a fresh model of `arch` over `vocab` tokens (tied embeddings).
pub fn parameters(arch: &Architecture, vocab: usize) -> f64 {
    let h = arch.hidden_size as f64;
    let head = h / arch.heads.max(1) as f64;
    let kv = head * arch.kv_heads().max(1) as f64;
    let mlp = intermediate(arch);
    let per_layer = h * (h + 2.0 * kv) + h * h + 3.0 * h * mlp + 2.0 * h;
    vocab as f64 * h + arch.layers as f64 * per_layer + h
}

fn intermediate(arch: &Architecture) -> f64 {
    match arch.intermediate_size {
        Some(i) => i as f64,
        None => (arch.hidden_size as f64 * 8.0 / 3.0 / 8.0).ceil() * 8.0,
    }
}

fn keys_of(
    prefix: &str,
    arch: &Architecture,
    vocab_key: &str,
    vocab: usize,
) -> Vec<(String, u128)> {
    vec![
        (format!("{prefix}.hidden_size"), arch.hidden_size as u128),
        (format!("{prefix}.layers"), arch.layers as u128),
        (vocab_key.to_string(), vocab as u128),
        (
            format!("{prefix}.intermediate_size"),
            intermediate(arch) as u128,
        ),
    ]
}

/// The terms of training `arch` with `train`: weights and optimizer state, and activations.
/// `frozen` counts extra f32 copies of the weights held beside it (a DPO reference, a full-
/// vocabulary teacher is added by the caller).
fn training(
    prefix: &str,
    arch: &Architecture,
    vocab_key: &str,
    vocab: usize,
    train: &TrainConfig,
    train_key: &str,
) -> Vec<Term> {
    let params = parameters(arch, vocab);
    let (b, t) = (train.batch_size as f64, arch.max_positions as f64);
    let (h, l) = (arch.hidden_size as f64, arch.layers as f64);
    let heads = arch.heads as f64;
    let per_token_layer = 12.0 * h + 4.0 * intermediate(arch) + 3.0 * heads * t;
    let activations = b * t * (l * per_token_layer + 4.0 * vocab as f64) * F32;
    let mut weight_keys = keys_of(prefix, arch, vocab_key, vocab);
    weight_keys.truncate(3);
    vec![
        Term {
            what: format!(
                "weights, gradients and AdamW state of {} parameters, and the best weights kept \
                 for early stopping",
                count(params)
            ),
            keys: weight_keys,
            bytes: params * F32 * 5.0,
        },
        Term {
            what: "one micro-batch's activations and gradients at the longest sequence".into(),
            keys: vec![
                (format!("{train_key}.batch_size"), train.batch_size as u128),
                (
                    format!("{prefix}.max_positions"),
                    arch.max_positions as u128,
                ),
                (format!("{prefix}.hidden_size"), arch.hidden_size as u128),
                (format!("{prefix}.layers"), arch.layers as u128),
                (vocab_key.to_string(), vocab as u128),
            ],
            bytes: activations,
        },
    ]
}

/// Every stage's need under `c`.
pub fn estimate(c: &Config) -> Vec<StageNeed> {
    let mut stages = Vec::new();
    let d = &c.data;
    let vocab = c.teacher.vocab_size;
    let local_teacher = c.teacher.trained_by_run();
    let fresh_student = c.student.path.is_none() && c.student.from_teacher.is_none();
    if d.task.is_some() {
        let [gold, prompts, eval, review] = d.task_sizes();
        let rows = [
            ("data.gold_size", gold),
            ("data.prompts_size", prompts),
            ("data.eval_size", eval),
            ("data.review_size", review),
        ];
        stages.push(StageNeed {
            stage: "data",
            terms: rows
                .iter()
                .map(|(k, n)| Term {
                    what: format!("{} rows of the built-in task", count(*n as f64)),
                    keys: vec![(k.to_string(), *n as u128)],
                    bytes: *n as f64 * ROW_BYTES,
                })
                .collect(),
        });
        let g = &c.generate;
        let per_row = g.max_new_tokens as f64 * (g.top_logprobs as f64 * 8.0 + 16.0) + ROW_BYTES;
        stages.push(StageNeed {
            stage: "the synthetic set",
            terms: vec![Term {
                what: "the teacher's answers with their top-k logprobs".into(),
                keys: vec![
                    ("data.prompts_size".into(), prompts as u128),
                    ("generate.max_new_tokens".into(), g.max_new_tokens as u128),
                    ("generate.top_logprobs".into(), g.top_logprobs as u128),
                ],
                bytes: prompts as f64 * per_row,
            }],
        });
    }
    let ta = &c.teacher.architecture;
    if local_teacher {
        stages.push(StageNeed {
            stage: "teacher training",
            terms: training(
                "teacher.architecture",
                ta,
                "teacher.vocab_size",
                vocab,
                &c.teacher.train,
                "teacher.train",
            ),
        });
        let (l, t) = (ta.layers as f64, ta.max_positions as f64);
        let kv = ta.hidden_size as f64 / ta.heads.max(1) as f64 * ta.kv_heads() as f64;
        let b = c.teacher.batch_size as f64;
        let mut keys = keys_of("teacher.architecture", ta, "teacher.vocab_size", vocab);
        keys.truncate(3);
        stages.push(StageNeed {
            stage: "generation",
            terms: vec![
                Term {
                    what: "the teacher's weights".into(),
                    keys,
                    bytes: parameters(ta, vocab) * F32,
                },
                Term {
                    what: "the key/value cache of a batch of answers".into(),
                    keys: vec![
                        ("teacher.batch_size".into(), c.teacher.batch_size as u128),
                        (
                            "teacher.architecture.max_positions".into(),
                            ta.max_positions as u128,
                        ),
                        ("teacher.architecture.layers".into(), ta.layers as u128),
                    ],
                    bytes: b * l * t * kv * 2.0 * F32 + b * vocab as f64 * F32 * 4.0,
                },
            ],
        });
    }
    if fresh_student {
        let sa = &c.student.architecture;
        let mut terms = training(
            "student.architecture",
            sa,
            "teacher.vocab_size",
            vocab,
            &c.distill.train,
            "distill.train",
        );
        if local_teacher && c.distill.loss == DistillLoss::Kd && c.distill.full_vocab {
            let mut keys = keys_of("teacher.architecture", ta, "teacher.vocab_size", vocab);
            keys.truncate(3);
            terms.push(Term {
                what: "the teacher's weights, for KD on its full distribution".into(),
                keys,
                bytes: parameters(ta, vocab) * F32,
            });
        }
        stages.push(StageNeed {
            stage: "distillation",
            terms,
        });
        let mut terms = training(
            "student.architecture",
            sa,
            "teacher.vocab_size",
            vocab,
            &c.finetune.train,
            "finetune.train",
        );
        let mut keys = keys_of("student.architecture", sa, "teacher.vocab_size", vocab);
        keys.truncate(3);
        terms.push(Term {
            what: "the distilled student, frozen as DPO's reference".into(),
            keys,
            bytes: parameters(sa, vocab) * F32,
        });
        stages.push(StageNeed {
            stage: "the expert fine-tune",
            terms,
        });
    }
    stages
}

/// The stage that needs the most, and its bytes with the process's own base.
pub fn peak(c: &Config) -> Option<(StageNeed, f64)> {
    estimate(c)
        .into_iter()
        .max_by(|a, b| a.bytes().total_cmp(&b.bytes()))
        .map(|s| {
            let bytes = s.bytes() + BASE_BYTES;
            (s, bytes)
        })
}

/// The memory this process may use: the machine's RAM, or less when a cgroup limits it.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
    })? * 1024;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

/// Refuses a config whose peak need is more than `limit` bytes: `(key, message)`, naming the key
/// of the biggest term with the largest value (what the user most likely mistyped).
pub fn check(c: &Config, limit: u64) -> Result<(), (String, String)> {
    let Some((stage, bytes)) = peak(c) else {
        return Ok(());
    };
    if bytes <= limit as f64 {
        return Ok(());
    }
    let Some(term) = stage.largest() else {
        return Ok(());
    };
    let (key, value) = term
        .keys
        .iter()
        .max_by_key(|(_, v)| *v)
        .cloned()
        .unwrap_or_default();
    let sizes = term
        .keys
        .iter()
        .map(|(k, v)| format!("`{k}` = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err((
        key,
        format!(
            "is {value}, which makes {} need about {} of memory ({}: {}; sized by {sizes}), but \
             this machine has {}; nothing was started\n\nhint: make it smaller, or run on a \
             machine with more memory",
            stage.stage,
            human_bytes(bytes),
            term.what,
            human_bytes(term.bytes),
            human_bytes(limit as f64)
        ),
    ))
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} bytes")
    } else if v >= 1e6 {
        format!("{v:.1e} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1234567.0` → `1.2M`.
fn count(n: f64) -> String {
    match n {
        n if n >= 1e12 => format!("{:.1}T", n / 1e12),
        n if n >= 1e9 => format!("{:.1}B", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Override;

    fn config(overrides: &[&str]) -> Config {
        let o: Vec<Override> = overrides
            .iter()
            .map(|o| Override::parse(o).unwrap())
            .collect();
        Config::from_str_with(
            "[run]\nname = \"m\"\n[data]\ntask = \"dates\"\n",
            "m.toml",
            &o,
        )
        .unwrap()
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_defaults_fit_in_a_small_machine() {
        let (stage, bytes) = peak(&config(&[])).unwrap();
        assert!(bytes < 2.0 * GIB as f64, "{} {bytes}", stage.stage);
        check(&config(&[]), 4 * GIB).unwrap();
    }

    #[test]
    fn parameters_match_the_model_the_workbench_builds() {
        // The demo teacher: 128 wide, 4 layers, 4 heads of which 2 kv, 512 tokens, MLP 344.
        let c = config(&[]);
        let p = parameters(&c.teacher.architecture, 512);
        let (h, kv, i) = (128.0, 64.0, 344.0);
        let per_layer = h * (h + 2.0 * kv) + h * h + 3.0 * h * i + 2.0 * h;
        assert_eq!(p, 512.0 * h + 4.0 * per_layer + h);
    }

    #[test]
    fn a_huge_size_is_refused_naming_its_key() {
        let text = "[run]\nname = \"m\"\n[data]\ntask = \"dates\"\n\
            [teacher.architecture]\nhidden_size = 128\nlayers = 4\nheads = 4\nkv_heads = 2\n\
            [student.architecture]\nhidden_size = 64\nlayers = 2\nheads = 2\nkv_heads = 1\n";
        for (set, key) in [
            (
                "teacher.architecture.hidden_size=1000000000",
                "teacher.architecture.hidden_size",
            ),
            ("teacher.vocab_size=2000000000", "teacher.vocab_size"),
            (
                "teacher.architecture.layers=1000000000",
                "teacher.architecture.layers",
            ),
            (
                "distill.train.batch_size=1000000000",
                "distill.train.batch_size",
            ),
            ("data.gold_size=3000000000", "data.gold_size"),
            (
                "student.architecture.hidden_size=4000000",
                "student.architecture.hidden_size",
            ),
        ] {
            let o = [Override::parse(set).unwrap()];
            let c = Config::from_str_with(text, "m.toml", &o).unwrap();
            let (k, message) = check(&c, 24 * GIB).unwrap_err();
            assert_eq!(k, key, "{set}: {message}");
            assert!(message.contains("this machine has 24.0 GiB"), "{message}");
            assert!(message.contains("nothing was started"), "{message}");
        }
    }

    #[test]
    fn bytes_read_as_a_person_writes_them() {
        assert_eq!(human_bytes(512.0), "512 bytes");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(24.0 * GIB as f64), "24.0 GiB");
    }
}
