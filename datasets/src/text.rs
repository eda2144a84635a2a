//! Text from data files made safe to print on a terminal.
//!
//! A prompt or a Parquet metadata value is untrusted: an escape sequence inside it (CSI colour
//! and cursor codes, OSC 52 clipboard writes, OSC 8 links) would be obeyed by the terminal if
//! printed raw. Everything the workbench shows from data goes through [`inert`].

/// `s` with every control character (C0 but newline and tab, DEL, C1) shown as an escape, so it
/// reaches the terminal as harmless visible text.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            // Bidirectional overrides can make shown text differ from stored text.
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Like [`inert`], on one line: newlines and tabs are escaped too.
pub fn inert_line(s: &str) -> String {
    inert(s).replace('\n', "\\n").replace('\t', "\\t")
}

/// `n` with thousands separators: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` and a noun that agrees with it: `1 row`, `2 rows`, `12,000 rows`. The plural adds `s`;
/// for a noun that does not, see [`count_as`].
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", thousands(n))
    }
}

/// [`count`] with the plural given: `count_as(2, "entry", "entries")`.
pub fn count_as(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {many}", thousands(n))
    }
}

/// The shape of a prompt: each run of digits becomes `9`, each run of letters and spaces `a`,
/// and every other character stays. `"Date: 3/4/2021"` and `"Date: 11/12/99"` share the shape
/// `a:a9/9/9`; `"Date: March 3, 2021"` has `a:a9,a9`. Prompts of one shape are one kind of
/// question with different values: the ranked review queue groups its items by shape, and the
/// expert fine-tune leaves out of its replay the synthetic rows of shapes the experts mostly
/// corrected. Free text has few prompts per shape, and the groups are then single prompts.
pub fn shape(s: &str) -> String {
    let mut out = String::new();
    let mut last = None;
    for c in s.chars() {
        let class = if c.is_numeric() {
            '9'
        } else if c.is_alphabetic() || c.is_whitespace() || c == '\'' {
            'a'
        } else {
            c
        };
        if matches!(class, '9' | 'a') && last == Some(class) {
            continue;
        }
        out.push(class);
        last = Some(class);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible_text() {
        let osc52 = "\u{1b}]52;c;ZXZpbA==\u{7}";
        let shown = inert(osc52);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(shown.contains("\\u{1b}]52"), "{shown}");
        assert_eq!(inert("plain é 👩‍🔬\nnext"), "plain é 👩‍🔬\nnext");
        assert_eq!(inert("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(inert_line("a\nb"), "a\\nb");
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(0, "row"), "0 rows");
        assert_eq!(count(1, "row"), "1 row");
        assert_eq!(count(2, "row"), "2 rows");
        assert_eq!(count(1234567, "row"), "1,234,567 rows");
        assert_eq!(count_as(1, "entry", "entries"), "1 entry");
        assert_eq!(count_as(1000, "entry", "entries"), "1,000 entries");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn prompts_of_one_kind_share_a_shape() {
        assert_eq!(shape("Date: 3/4/2021"), "a:a9/9/9");
        assert_eq!(shape("Date: 11/12/99"), shape("Date: 3/4/2021"));
        assert_eq!(shape("Date: March 3, 2021"), "a:a9,a9");
        assert_ne!(shape("Date: 3.4.2021"), shape("Date: 3/4/2021"));
        assert_eq!(shape("l'été 2021"), "a9");
        assert_eq!(shape(""), "");
    }
}
