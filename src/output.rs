//! What the user sees: logs and progress on stderr, data on stdout.
//!
//! Respects `--quiet` (errors only), `NO_COLOR`, and `RUST_LOG`. Progress bars show throughput
//! and, when the total is known, an ETA; they are hidden when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The output settings of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    quiet: bool,
    color: bool,
}

impl Output {
    pub fn new(quiet: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            quiet,
            color: !no_color && std::io::stderr().is_terminal(),
        }
    }

    /// Logs via `tracing` to stderr: `RUST_LOG` wins, else `info` (or `error` with `--quiet`).
    pub fn init_logging(&self) {
        let default = if self.quiet { "error" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(self.color)
            .with_target(false)
            .without_time()
            .try_init();
    }

    /// A line for the user on stderr (not shown with `--quiet`).
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", line.as_ref());
        }
    }

    /// A `hint:` after a blank line.
    pub fn hint(&self, line: impl AsRef<str>) {
        self.say(format!("\n{}: {}", self.paint("hint", "36"), line.as_ref()));
    }

    fn paint(&self, s: &str, code: &str) -> String {
        if self.color {
            format!("\u{1b}[1;{code}m{s}\u{1b}[0m")
        } else {
            s.to_string()
        }
    }

    /// Prints an error and its causes.
    pub fn error(&self, e: &anyhow::Error) {
        let mut err = std::io::stderr().lock();
        let mut text = format!("{e:#}");
        // thiserror chains repeat the hint; keep one.
        if let Some(i) = text.find("\n\nhint: ") {
            let (head, hint) = text.split_at(i);
            let head = head.to_string();
            let hint = hint.trim_start().trim_start_matches("hint: ").to_string();
            text = format!("{head}\n\n{}: {hint}", self.paint("hint", "36"));
        }
        let _ = writeln!(err, "{}: {text}", self.paint("error", "31"));
    }

    /// Data on stdout (errors propagate, so a closed pipe ends the command quietly).
    pub fn data(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// JSON on stdout.
    pub fn json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        Ok(self.data(&text)?)
    }

    /// A progress bar counting `unit`s; `total` gives it an ETA.
    pub fn progress(&self, what: &str, unit: &str, total: Option<u64>) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, ETA {{eta}}) {{msg}}"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(&format!("{{spinner}} {{prefix}} {{human_pos}} {unit} ({{per_sec}}, {{elapsed}}) {{msg}}"))
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

pub use datasets::text::thousands;
