//! Helpers for the CLI tests: a sandbox directory, the `workbench` binary, and the Python venv
//! the interop checks use.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts exit code 2 (bad input) and no panic.
    #[track_caller]
    pub fn bad_input(self) -> Self {
        assert_eq!(
            self.code, 2,
            "expected exit 2\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.no_panic()
    }

    #[track_caller]
    pub fn no_panic(self) -> Self {
        assert!(
            !self.stderr.contains("panicked"),
            "panicked:\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "panicked:\n{}",
            self.stderr
        );
        self
    }

    /// The stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary working directory for one test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Runs `workbench ARGS` in the sandbox, without colour or user log settings.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// `workbench model logits --model MODEL --ids IDS --json`: one row of logits per position.
    pub fn logits(&self, model: &Path, ids: &[u32]) -> Vec<Vec<f64>> {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        let v = self
            .run(&[
                "model",
                "logits",
                "--model",
                model.to_str().unwrap(),
                "--ids",
                &list.join(","),
                "--json",
            ])
            .ok()
            .json();
        serde_json::from_value(v["logits"].clone()).expect("rows of logits")
    }

    /// Like [`Sandbox::run`], with environment variables set.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .output()
            .expect("workbench runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `workbench ARGS` in the sandbox in the background, its output discarded (for tests
    /// that kill it or wait for its effects).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_workbench"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("workbench starts")
    }

    /// Entries directly in the sandbox directory (to check nothing half-written is left).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The project root (for `configs/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The interop venv's Python, from `WORKBENCH_PYTHON` (set by `.ci/run` after
/// `scripts/python-env.sh`). Absent: the check is skipped with a message, except under CI, where
/// it must run.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("WORKBENCH_PYTHON") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("CI must run the interop checks: set WORKBENCH_PYTHON=$(scripts/python-env.sh)")
        }
        _ => {
            eprintln!(
                "skipped: interop check needs Python with pyarrow, pandas, polars, duckdb, datasets, openai and gguf; \
                 run `export WORKBENCH_PYTHON=$(scripts/python-env.sh)` first"
            );
            None
        }
    }
}

/// The torch + transformers venv's Python, from `WORKBENCH_TORCH_PYTHON` (set by `.ci/run` after
/// `scripts/python-env.sh scripts/requirements-torch.txt`). Skipped like [`python`] when absent.
pub fn torch_python() -> Option<PathBuf> {
    match std::env::var_os("WORKBENCH_TORCH_PYTHON") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "CI must run the transformers checks: set WORKBENCH_TORCH_PYTHON=$(scripts/python-env.sh scripts/requirements-torch.txt)"
        ),
        _ => {
            eprintln!(
                "skipped: this check needs Python with torch and transformers; run \
                 `export WORKBENCH_TORCH_PYTHON=$(scripts/python-env.sh scripts/requirements-torch.txt)` first"
            );
            None
        }
    }
}

/// The llama.cpp venv's Python (llama-cpp-python), from `WORKBENCH_LLAMA_PYTHON` (set by
/// `.ci/run` after `scripts/python-env.sh scripts/requirements-llama.txt`). Skipped like
/// [`python`] when absent.
pub fn llama_python() -> Option<PathBuf> {
    match std::env::var_os("WORKBENCH_LLAMA_PYTHON") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "CI must run the llama.cpp checks: set WORKBENCH_LLAMA_PYTHON=$(scripts/python-env.sh scripts/requirements-llama.txt)"
        ),
        _ => {
            eprintln!(
                "skipped: this check needs Python with llama-cpp-python; run \
                 `export WORKBENCH_LLAMA_PYTHON=$(scripts/python-env.sh scripts/requirements-llama.txt)` first"
            );
            None
        }
    }
}

/// Runs a Python script from `tests/interop/` with arguments; panics with its output on failure.
pub fn run_python(python: &Path, script: &str, args: &[&Path]) -> String {
    run_python_args(
        python,
        script,
        &args.iter().map(|p| p.as_os_str()).collect::<Vec<_>>(),
    )
}

/// Like [`run_python`], with any arguments.
pub fn run_python_args(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .arg(root().join("tests/interop").join(script))
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// Tiny teacher and student shapes and a few training steps, so every stage of a run takes
/// seconds. (Sub-tables only: a test's `extra` may still open `[teacher]` or `[student]`.)
pub const TINY_MODELS: &str = "\n[teacher.architecture]\nhidden_size = 32\nlayers = 1\nheads = 2\n\n[teacher.train]\nsteps = 12\nbatch_size = 8\n\n[student.architecture]\nhidden_size = 16\nlayers = 1\nheads = 1\n\n[distill.train]\nsteps = 8\nbatch_size = 8\n\n";

/// A tiny run config in the sandbox, with `extra` appended (TOML).
pub fn tiny_config(sb: &Sandbox, name: &str, extra: &str) -> PathBuf {
    sb.write(
        &format!("{name}.toml"),
        format!(
            "[run]\nname = \"{name}\"\nseed = 3\n\n[data]\ntask = \"dates\"\ngold_size = 30\nprompts_size = 60\neval_size = 12\n{TINY_MODELS}{extra}"
        ),
    )
}

pub mod fake_openai;
pub mod units;

/// JSONL of short date prompts (`{"q": "5 May 2001", "answer": "2001-05-05"}`), rows `range`,
/// for students whose few positions the demo's long instruction would not fit.
pub fn short_dates_jsonl(range: std::ops::Range<usize>, with_answers: bool) -> String {
    range
        .map(|i| {
            let answer = if with_answers {
                format!(", \"answer\": \"2001-05-{:02}\"", i % 28 + 1)
            } else {
                String::new()
            };
            format!("{{\"q\": \"{} May 2001\"{answer}}}\n", i % 28 + 1)
        })
        .collect()
}

/// A run whose student is the `llama-gqa` fixture checkpoint (its own 512-token vocabulary) while
/// the teacher is trained on the run's tokenizer: short date prompts from files, so they fit the
/// fixture's 128 positions. Writes the data files and `vocab.toml` (run `vocab`).
pub fn fixture_student_config(sb: &Sandbox) -> PathBuf {
    let fixture = root().join("distill/tests/fixtures/models/llama-gqa");
    sb.write("gold.jsonl", short_dates_jsonl(0..20, true));
    sb.write("pool.jsonl", short_dates_jsonl(7..27, false));
    sb.write("eval.jsonl", short_dates_jsonl(3..8, true));
    sb.write(
        "vocab.toml",
        format!(
            "[run]\nname = \"vocab\"\nseed = 2\n\n[data]\ndecontaminate = false\n\
             # The pool repeats most gold prompts on purpose: dedup takes them out.\n\
             max_removed_share = 1.0\n\
             gold = {{ path = \"gold.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
             prompts = {{ path = \"pool.jsonl\", map = {{ prompt = \"q\" }} }}\n\
             eval = {{ path = \"eval.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
             {TINY_MODELS}[student]\npath = \"{}\"\n\n[generate]\nmax_new_tokens = 12\ndedup = \"none\"\n\n\
             [eval]\nmax_new_tokens = 12\n",
            fixture.display()
        ),
    )
}

/// Every temporary the workbench writes (`.NAME.tmp-PID-N`, `.NAME.partial-…`, `.NAME.old-…`,
/// and step checkpoints being written, `step-N.tmp`) anywhere under `dir`: after a command has
/// ended, or a killed one has been rerun, none may be left.
pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let temp = (name.starts_with('.')
            && [".tmp-", ".partial-", ".old-"]
                .iter()
                .any(|t| name.contains(t)))
            || name.ends_with(".tmp");
        if temp {
            found.push(e.path());
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(temporaries(&e.path()));
        }
    }
    found
}
