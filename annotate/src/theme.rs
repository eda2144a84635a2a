//! Colours and emphasis for the terminal app, in one place. With `NO_COLOR` set (or
//! [`Theme::plain`]), every style keeps only bold / reverse / underline, so the app reads on any
//! terminal and in snapshots.

use ratatui::style::{Color, Modifier, Style};

/// The app's styles.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    /// Panel titles.
    pub title: Style,
    /// Key names in hints.
    pub key: Style,
    /// Dim text (hints, metadata labels).
    pub dim: Style,
    /// Confirmation ("saved").
    pub ok: Style,
    /// Problems.
    pub warn: Style,
    /// Words the expert removed.
    pub removed: Style,
    /// Words the expert added.
    pub added: Style,
    /// The selected candidate or mode.
    pub selected: Style,
    /// The progress gauge.
    pub gauge: Style,
    /// Mark diff runs with `[-removed-]` and `{+added+}` (as `git diff --word-diff=plain`), for
    /// terminals without colour.
    pub diff_markers: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set.
    pub fn from_env() -> Theme {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            Theme::plain()
        } else {
            Theme::colour()
        }
    }

    /// The coloured theme.
    pub fn colour() -> Theme {
        Theme {
            title: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            key: Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            dim: Style::new().fg(Color::DarkGray),
            ok: Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            warn: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            removed: Style::new()
                .fg(Color::Red)
                .add_modifier(Modifier::CROSSED_OUT),
            added: Style::new()
                .fg(Color::Green)
                .add_modifier(Modifier::UNDERLINED),
            selected: Style::new().fg(Color::Black).bg(Color::Cyan),
            gauge: Style::new().fg(Color::Cyan).bg(Color::Black),
            diff_markers: false,
        }
    }

    /// No colours: emphasis only.
    pub fn plain() -> Theme {
        Theme {
            title: Style::new().add_modifier(Modifier::BOLD),
            key: Style::new().add_modifier(Modifier::BOLD),
            dim: Style::new(),
            ok: Style::new().add_modifier(Modifier::BOLD),
            warn: Style::new().add_modifier(Modifier::BOLD),
            removed: Style::new().add_modifier(Modifier::CROSSED_OUT),
            added: Style::new().add_modifier(Modifier::UNDERLINED),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            gauge: Style::new().add_modifier(Modifier::REVERSED),
            diff_markers: true,
        }
    }
}

/// Untrusted text made safe to draw: control characters and escape sequences shown as visible
/// escapes (see [`datasets::text::inert`]), tabs as spaces (a terminal cell has no tab).
pub fn shown(s: &str) -> String {
    datasets::text::inert(s).replace('\t', "    ")
}

/// [`shown`] on one line: newlines and tabs escaped too.
pub fn shown_line(s: &str) -> String {
    datasets::text::inert_line(s)
}
