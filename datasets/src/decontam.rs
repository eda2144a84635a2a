//! Decontamination: drop training rows that share a word n-gram with the eval set, so the eval
//! numbers measure generalisation, not memory.
//!
//! GPT-3 (Brown et al. 2020, appendix C) flagged any 13-gram overlap. Eval items shorter than `n`
//! words would never match that way, so they match by length:
//!
//! - an item of at least [`SPAN_WORDS`] words (and fewer than `n`) is its own n-gram: a training
//!   row that contains the whole (normalised) item is contaminated;
//! - a shorter item ("Lima", "What is 2+2?") contaminates only a training row that *is* it (the
//!   same words once normalised and the shared template cut): a row that merely contains a word
//!   or two of the eval set is another question, and flagging it would flag most of a set.
//!
//! This is what makes decontamination work for short-answer tasks like the embedded date task
//! without wiping out a set whose eval items are one or two words.
//!
//! Templated prompts share their instruction: every eval item of the date task starts with the
//! same 25 words, and flagging those would flag every training row. Two rules keep template text
//! out of the index: the word prefix and suffix that *every* eval item shares are cut from eval
//! and training texts alike (a single template), and a gram that occurs in at least 3 eval items
//! and 2% of them is not indexed (several templates). What remains is what makes an eval item
//! itself.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::dedup::{FilterReport, words};

/// Eval items with fewer words than this (after the template is cut) contaminate only a training
/// row that is the same text; longer ones also any row that contains them.
pub const SPAN_WORDS: usize = 8;

/// An index of the eval set's n-grams.
#[derive(Debug)]
pub struct Decontaminator {
    n: usize,
    /// Words every eval item starts with / ends with (template text).
    prefix: Vec<String>,
    suffix: Vec<String>,
    /// Gram length → hashes of the eval grams of that length (≤ n).
    grams: HashMap<usize, HashSet<u64>>,
    /// Hashes of the short eval items (fewer than [`SPAN_WORDS`] words), matched whole.
    whole: HashSet<u64>,
    /// Gram hash → the eval text it came from (first one), for reports.
    origin: HashMap<u64, String>,
    /// What was removed.
    pub report: FilterReport,
}

fn gram_hash(words: &[String]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(words.join(" ").as_bytes())
}

fn common_prefix(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn strip<'a>(w: &'a [String], prefix: &[String], suffix: &[String]) -> &'a [String] {
    let mut w = w;
    if w.len() > prefix.len() && w.starts_with(prefix) {
        w = &w[prefix.len()..];
    }
    if w.len() > suffix.len() && w.ends_with(suffix) {
        w = &w[..w.len() - suffix.len()];
    }
    w
}

impl Decontaminator {
    /// Indexes eval texts at `n` words.
    pub fn new<'a>(eval_texts: impl IntoIterator<Item = &'a str>, n: usize) -> Self {
        let n = n.max(1);
        let eval: Vec<(Vec<String>, &str)> = eval_texts
            .into_iter()
            .map(|t| (words(t), t))
            .filter(|(w, _)| !w.is_empty())
            .collect();
        // The template: what every item shares at its start and end (only with 2+ items).
        let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
        if eval.len() >= 2 {
            let first = &eval[0].0;
            let p = eval
                .iter()
                .map(|(w, _)| common_prefix(first, w))
                .min()
                .unwrap_or(0);
            prefix = first[..p].to_vec();
            let rev_first: Vec<String> = first.iter().rev().cloned().collect();
            let s = eval
                .iter()
                .map(|(w, _)| {
                    let rev: Vec<String> = w.iter().rev().cloned().collect();
                    common_prefix(&rev_first, &rev)
                })
                .min()
                .unwrap_or(0);
            suffix = first[first.len() - s..].to_vec();
        }
        // Gram → (length, number of eval items that contain it).
        let mut counts: HashMap<u64, (usize, usize)> = HashMap::new();
        let mut origin = HashMap::new();
        let mut whole = HashSet::new();
        for (w, text) in &eval {
            let w = strip(w, &prefix, &suffix);
            if w.len() < SPAN_WORDS.min(n) {
                let h = gram_hash(w);
                if whole.insert(h) {
                    origin
                        .entry(h)
                        .or_insert_with(|| text.chars().take(60).collect::<String>());
                }
                continue;
            }
            let len = w.len().min(n);
            let mut mine = HashSet::new();
            for g in w.windows(len) {
                let h = gram_hash(g);
                if mine.insert(h) {
                    counts.entry(h).or_insert((len, 0)).1 += 1;
                    origin
                        .entry(h)
                        .or_insert_with(|| text.chars().take(60).collect::<String>());
                }
            }
        }
        let boilerplate = 3.max((eval.len() as f64 * 0.02).ceil() as usize);
        let mut grams: HashMap<usize, HashSet<u64>> = HashMap::new();
        for (h, (len, count)) in counts {
            if count < boilerplate {
                grams.entry(len).or_default().insert(h);
            } else if !whole.contains(&h) {
                origin.remove(&h);
            }
        }
        Decontaminator {
            n,
            prefix,
            suffix,
            grams,
            whole,
            origin,
            report: FilterReport::new(format!("decontamination ({n}-gram overlap with eval)")),
        }
    }

    /// The n-gram size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// How many eval grams (and short items matched whole) are indexed.
    pub fn len(&self) -> usize {
        self.grams.values().map(HashSet::len).sum::<usize>() + self.whole.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The eval text a training text overlaps, if any.
    pub fn overlap(&self, text: &str) -> Option<&str> {
        let w = words(text);
        let w = strip(&w, &self.prefix, &self.suffix);
        let h = gram_hash(w);
        if self.whole.contains(&h) {
            return Some(self.origin.get(&h).map(String::as_str).unwrap_or(""));
        }
        let lengths: BTreeSet<usize> = self.grams.keys().copied().collect();
        for len in lengths {
            if w.len() < len {
                continue;
            }
            let set = &self.grams[&len];
            for g in w.windows(len) {
                let h = gram_hash(g);
                if set.contains(&h) {
                    return Some(self.origin.get(&h).map(String::as_str).unwrap_or(""));
                }
            }
        }
        None
    }

    /// Whether to keep a training row (false when it overlaps the eval set).
    pub fn keep(&mut self, id: &str, text: &str) -> bool {
        let hit = self.overlap(text).map(str::to_string);
        let removed = hit.is_some();
        self.report.record(removed, id, || {
            format!("overlaps eval item \"{}\"", hit.unwrap_or_default())
        });
        !removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_items_match_on_a_shared_13_gram() {
        let eval =
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
        let mut d = Decontaminator::new([eval], 13);
        assert!(!d.keep("x", "prefix words one two three four five six seven eight nine ten eleven twelve thirteen suffix"));
        assert!(d.keep(
            "y",
            "one two three four five six seven eight nine ten eleven twelve"
        ));
        assert_eq!(d.report.removed, 1);
    }

    #[test]
    fn short_items_match_whole_and_normalised() {
        let mut d = Decontaminator::new(["Normalise: March 3, '21"], 13);
        assert!(!d.keep("a", "normalise march 3 21"));
        assert!(d.keep("b", "Normalise: March 4, '21"));
    }

    #[test]
    fn shared_template_text_is_not_contamination() {
        let template = "please rewrite the following date in the iso format year month day with four digit years";
        let months = ["January", "March", "May", "July", "October"];
        let eval: Vec<String> = (1..=20)
            .map(|d| format!("{template} date: {} {d}, {}", months[d % 5], 2000 + d))
            .collect();
        let mut d = Decontaminator::new(eval.iter().map(String::as_str), 13);
        assert!(d.keep("a", &format!("{template} date: April 9, 1999")));
        assert!(d.keep("b", &format!("{template} date: on March 9, 1999")));
        assert!(!d.keep("c", &format!("{template} date: May 7, 2007")));
        // A row that only contains a short eval item is another question.
        assert!(d.keep("d", &format!("{template} date: on May 7, 2007 (approx.)")));
    }

    #[test]
    fn a_word_or_two_of_the_eval_set_does_not_flag_a_row() {
        let mut d = Decontaminator::new(["Lima", "What is 2+2?", "Capital of Peru?"], 13);
        assert!(d.keep("a", "Which river runs through Lima?"));
        assert!(d.keep("b", "What is 2+2? And what is 3+3?"));
        assert!(!d.keep("c", "lima"));
        assert!(!d.keep("d", "what is 2 2"));
        assert_eq!(d.report.removed, 2);
    }

    #[test]
    fn items_of_eight_words_or_more_match_inside_a_row() {
        let item = "the quick brown fox jumps over the lazy dog";
        let mut d = Decontaminator::new([item, "something else entirely here now"], 13);
        assert!(!d.keep("a", &format!("story: {item}, and then it slept")));
        assert!(d.keep("b", "the quick brown fox jumps over the fence"));
    }

    #[test]
    fn an_empty_eval_set_removes_nothing() {
        let mut d = Decontaminator::new(Vec::<&str>::new(), 13);
        assert!(d.is_empty());
        assert!(d.keep("a", "anything"));
    }
}
