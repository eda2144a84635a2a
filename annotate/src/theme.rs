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
        }
    }
}

/// Untrusted text made safe to draw: control characters and escape sequences shown as visible
/// escapes (as [`datasets::text::inert`] does), code points whose width terminals disagree on
/// shown escaped too (see [`drawn_as_escape`]), tabs as spaces (a terminal cell has no tab).
///
/// For drawing only: what is stored is always the text itself.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_base = false;
    for c in s.chars() {
        after_base = push_shown(c, after_base, &mut out);
    }
    out
}

/// [`shown`] on one line: newlines and tabs escaped too.
pub fn shown_line(s: &str) -> String {
    shown(&s.replace('\n', "\\n").replace('\t', "\\t"))
}

/// Appends how `c` is drawn to `out`: itself, four spaces for a tab, or its escape (`\u{200d}`).
/// `after_base` says whether the character before it was drawn as itself and is not
/// whitespace, so that a combining mark has a letter to sit on. Returns the same for the next
/// character.
pub fn push_shown(c: char, after_base: bool, out: &mut String) -> bool {
    if c == '\t' {
        out.push_str("    ");
        false
    } else if c == '\n' {
        out.push('\n');
        false
    } else if drawn_as_escape(c, after_base) {
        out.extend(c.escape_default());
        false
    } else {
        out.push(c);
        !c.is_whitespace()
    }
}

/// Whether `c` is drawn as a visible escape rather than as itself (newline and tab aside, which
/// [`push_shown`] lays out).
///
/// - Control characters (C0, DEL, C1) and bidirectional overrides, as
///   [`datasets::text::inert`]: a terminal would obey them, or show text other than the stored.
/// - Code points terminals draw at widths that differ from the one ratatui lays out, which
///   leaves stale cells on screen until the next full redraw: zero-width format characters
///   (zero-width space and joiners, word joiner, byte-order mark, soft hyphen, tags), variation
///   selectors, emoji skin-tone modifiers and regional indicators (the halves of a flag). A
///   flag or an emoji sequence then shows as its parts (`👩\u{200d}🔬`), each of a width every
///   terminal agrees on.
/// - A combining mark with nothing to sit on (at the start, after a space or an escape); on a
///   letter (`e\u{301}`) it is drawn in the letter's cell, as terminals do.
pub fn drawn_as_escape(c: char, after_base: bool) -> bool {
    if c.is_control() {
        return true;
    }
    let unstable = matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{20E3}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1F1E6}'..='\u{1F1FF}'
            | '\u{1F3FB}'..='\u{1F3FF}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    );
    unstable || (!after_base && unicode_width::UnicodeWidthChar::width(c) == Some(0))
}

/// Cells `s` takes once drawn (`s` as [`shown`] returns it).
pub fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_as_inert_does() {
        let text = "a\u{1b}[H b\u{7}\rc\u{9b}d\u{202e}e\nf";
        assert_eq!(shown(text), datasets::text::inert(text));
        assert_eq!(shown("x\ty"), "x    y");
        assert_eq!(shown_line("x\ty\nz"), datasets::text::inert_line("x\ty\nz"));
    }

    #[test]
    fn code_points_of_disputed_width_are_escaped() {
        // A flag, a joined emoji, an emoji with a presentation selector and a skin tone, a
        // zero-width space and a byte-order mark.
        assert_eq!(shown("🇺🇸"), "\\u{1f1fa}\\u{1f1f8}");
        assert_eq!(shown("👩\u{200d}🔬"), "👩\\u{200d}🔬");
        assert_eq!(shown("❤\u{fe0f}"), "❤\\u{fe0f}");
        assert_eq!(shown("👍\u{1f3fd}"), "👍\\u{1f3fd}");
        assert_eq!(shown("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        // Combining marks stay on their letter; a lone one is escaped.
        assert_eq!(shown("cafe\u{301}"), "cafe\u{301}");
        assert_eq!(shown("\u{301}x \u{301}"), "\\u{301}x \\u{301}");
        // Wide and narrow text every terminal agrees on is left alone.
        assert_eq!(shown("日本語 — é ✓ 🎉"), "日本語 — é ✓ 🎉");
        // What is left has one width, whoever draws it.
        for text in ["🇺🇸 flag", "👩\u{200d}🔬", "❤\u{fe0f}", "\u{200b}"] {
            let out = shown(text);
            assert!(
                out.chars()
                    .all(|c| unicode_width::UnicodeWidthChar::width(c).is_some_and(|w| w > 0)),
                "{out:?}"
            );
        }
    }
}
