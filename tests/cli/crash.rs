//! Crash safety: `workbench run` SIGKILLed at random moments, again and again, through
//! every stage of the loop (data, teacher training, generation, distillation with logit KD and
//! its baseline, the simulated expert's annotation, the fine-tune, evaluation, export), then let
//! finish. Every rerun must pick up where the killed one stopped, leave no half-written file, and
//! end with the same results as a run that was never killed: the same loss curves bit for bit,
//! the same synthetic set, the same decisions, the same table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Sandbox, temporaries};

fn crash_config(sb: &Sandbox) -> PathBuf {
    sb.write(
        "crash.toml",
        "[run]\nname = \"crash\"\nseed = 9\n\n\
         [data]\ntask = \"dates\"\ngold_size = 60\nprompts_size = 40\neval_size = 10\nreview_size = 12\n\n\
         [teacher.architecture]\nhidden_size = 32\nlayers = 1\nheads = 2\n\n\
         [teacher.train]\nsteps = 40\nbatch_size = 8\ncheckpoint_every = 4\neval_every = 20\n\n\
         [generate]\nmax_new_tokens = 12\ntop_logprobs = 5\n\n\
         [student.architecture]\nhidden_size = 16\nlayers = 1\nheads = 1\n\n\
         [distill]\nloss = \"kd\"\nalpha = 0.5\nbaseline = true\n\n\
         [distill.train]\nsteps = 30\nbatch_size = 8\ncheckpoint_every = 3\neval_every = 15\n\n\
         [annotate]\nsimulated_expert = true\nbudget = 12\n\n\
         [finetune]\ndpo_weight = 0.1\n\n\
         [finetune.train]\nsteps = 20\nbatch_size = 8\ncheckpoint_every = 2\neval_every = 10\n\n\
         [eval]\nmax_new_tokens = 12\n",
    )
}

/// What a finished run left that must not depend on how often it was killed.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Per stage, its per-step losses as bits.
    curves: Vec<(String, Vec<(u64, u64)>)>,
    /// `workbench eval --json`, without speed and paths.
    eval: serde_json::Value,
    /// Rows of the sets, as JSON text, without timestamps.
    sets: Vec<(String, Vec<String>)>,
}

/// Files under `dir` whose name ends with `suffix`.
fn collect(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            collect(&p, suffix, out);
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
}

/// The rows of a set directory (every Parquet file under it, in name order), each as text, minus
/// columns that hold wall-clock times.
fn set_rows(dir: &Path) -> Vec<String> {
    use arrow::util::display::array_value_to_string;
    let mut files = Vec::new();
    collect(dir, "parquet", &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no Parquet files under {}",
        dir.display()
    );
    let mut rows = Vec::new();
    for f in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            for r in 0..batch.num_rows() {
                let mut row = String::new();
                for (i, field) in schema.fields().iter().enumerate() {
                    let name = field.name();
                    if name.ends_with("_at") || name == "timestamp" {
                        continue;
                    }
                    let v = array_value_to_string(batch.column(i), r).unwrap();
                    row.push_str(&format!("{name}={v}\t"));
                }
                rows.push(row);
            }
        }
    }
    rows
}

fn outcome(sb: &Sandbox, cfg: &Path) -> Outcome {
    let run = sb.join("runs/crash");
    let mut files = Vec::new();
    collect(&run, "metrics.parquet", &mut files);
    files.sort();
    let curves = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&run).unwrap().display().to_string();
            let rows = datasets::metrics::read(f)
                .unwrap()
                .into_iter()
                .map(|r| (r.step, r.loss.to_bits()))
                .collect();
            (rel, rows)
        })
        .collect();
    let mut eval = sb
        .run(&["eval", cfg.to_str().unwrap(), "--json"])
        .ok()
        .json();
    // Speed and the sandbox's path are not results.
    for row in eval["rows"].as_array_mut().unwrap() {
        let row = row.as_object_mut().unwrap();
        row.remove("tokens_per_s");
        row.remove("path");
    }
    let sets = ["synthetic", "feedback/sft", "feedback/preference"]
        .iter()
        .map(|s| (s.to_string(), set_rows(&run.join(s))))
        .collect();
    Outcome { curves, eval, sets }
}

/// A small deterministic generator for the kill moments; its seed is printed so a failure can be
/// replayed with `WORKBENCH_CRASH_SEED`.
struct Moments(u64);

impl Moments {
    /// Seeded from `WORKBENCH_CRASH_SEED`, else the clock; the seed is printed and returned.
    fn from_env_or_clock() -> (u64, Moments) {
        let seed = std::env::var("WORKBENCH_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("kill moments from WORKBENCH_CRASH_SEED={seed}");
        (seed, Moments(seed))
    }

    fn next_below(&mut self, max: Duration) -> Duration {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        max.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }
}

#[test]
fn a_run_killed_at_random_moments_ends_as_if_never_killed() {
    // Never killed.
    let a = Sandbox::new();
    let cfg_a = crash_config(&a);
    let t0 = Instant::now();
    a.run(&["run", cfg_a.to_str().unwrap()]).ok();
    let whole = t0.elapsed();
    let want = outcome(&a, &cfg_a);
    assert!(
        want.curves.len() >= 4,
        "teacher, distilled, gold-only and fine-tune curves: {:?}",
        want.curves.iter().map(|c| &c.0).collect::<Vec<_>>()
    );

    // Killed at random moments until it finishes (at most 8 kills, then left to finish).
    let (seed, mut moments) = Moments::from_env_or_clock();
    let b = Sandbox::new();
    let cfg_b = crash_config(&b);
    let mut kills = Vec::new();
    let mut finished = false;
    for _ in 0..8 {
        let mut child = b.spawn(&["run", cfg_b.to_str().unwrap()]);
        // Each attempt redoes less, so the moments are drawn over the whole run's length.
        let at = moments.next_below(whole);
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() >= at {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match status {
            Some(s) => {
                assert!(
                    s.success(),
                    "seed {seed}: a rerun failed after kills at {kills:?}"
                );
                finished = true;
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills.push(at);
            }
        }
    }
    if !finished {
        b.run(&["run", cfg_b.to_str().unwrap()]).ok();
    }
    let left = temporaries(b.path());
    assert!(
        left.is_empty(),
        "seed {seed}, kills at {kills:?}: temporaries left: {left:?}"
    );
    assert!(
        !b.join("runs/crash/checkpoints").exists()
            || std::fs::read_dir(b.join("runs/crash/checkpoints"))
                .unwrap()
                .next()
                .is_none(),
        "seed {seed}: checkpoints of finished stages are removed"
    );
    let got = outcome(&b, &cfg_b);
    for ((name, w), (_, g)) in want.curves.iter().zip(&got.curves) {
        assert_eq!(
            w, g,
            "seed {seed}, kills at {kills:?}: the {name} curve differs"
        );
    }
    assert_eq!(
        want, got,
        "seed {seed}, kills at {kills:?}: the killed run ended differently"
    );
}

#[test]
fn an_import_killed_at_random_moments_leaves_the_old_set_or_the_new_one() {
    let sb = Sandbox::new();
    let rows: String = (0..30_000)
        .map(|i| {
            format!(
                "{{\"prompt\": \"question {i} {}\", \"reference\": \"{i}\"}}\n",
                "w ".repeat(20)
            )
        })
        .collect();
    sb.write("rows.jsonl", rows);
    let args = [
        "datasets",
        "import",
        "rows.jsonl",
        "--out",
        "set",
        "--force",
        "--split",
        "train=0.9,test=0.1",
        "--shard-mib",
        "1",
    ];
    let t0 = Instant::now();
    sb.run(&args).ok();
    let whole = t0.elapsed();
    let want = set_rows(&sb.join("set"));
    assert_eq!(want.len(), 30_000);
    let (seed, mut moments) = Moments::from_env_or_clock();
    for _ in 0..6 {
        let mut child = sb.spawn(&args);
        std::thread::sleep(moments.next_below(whole));
        let _ = child.kill();
        child.wait().unwrap();
        // Whatever the moment, `set` is a whole set: the old one or the new one, never a mix
        // and never missing.
        assert_eq!(set_rows(&sb.join("set")), want, "seed {seed}");
    }
    sb.run(&args).ok();
    assert_eq!(set_rows(&sb.join("set")), want);
    let left = temporaries(sb.path());
    assert!(left.is_empty(), "seed {seed}: temporaries left: {left:?}");
}
