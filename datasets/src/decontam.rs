//! Decontamination: drop training rows that share a word n-gram with the eval set, so the eval
//! numbers measure generalisation, not memory.
//!
//! GPT-3 (Brown et al. 2020, appendix C) flagged any 13-gram overlap. Eval items shorter than `n`
//! words would never match that way, so such an item is its own n-gram: a training row that
//! contains the whole (normalised) item is contaminated. This is what makes decontamination work
//! for short-answer tasks like the embedded date task.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::dedup::{FilterReport, words};

/// An index of the eval set's n-grams.
#[derive(Debug)]
pub struct Decontaminator {
    n: usize,
    /// Gram length → hashes of the eval grams of that length (≤ n).
    grams: HashMap<usize, HashSet<u64>>,
    /// Gram hash → the eval text it came from (first one), for reports.
    origin: HashMap<u64, String>,
    /// What was removed.
    pub report: FilterReport,
}

fn gram_hash(words: &[String]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(words.join(" ").as_bytes())
}

impl Decontaminator {
    /// Indexes eval texts at `n` words.
    pub fn new<'a>(eval_texts: impl IntoIterator<Item = &'a str>, n: usize) -> Self {
        let n = n.max(1);
        let mut grams: HashMap<usize, HashSet<u64>> = HashMap::new();
        let mut origin = HashMap::new();
        for text in eval_texts {
            let w = words(text);
            if w.is_empty() {
                continue;
            }
            let len = w.len().min(n);
            for g in w.windows(len) {
                let h = gram_hash(g);
                grams.entry(len).or_default().insert(h);
                origin.entry(h).or_insert_with(|| text.chars().take(60).collect());
            }
        }
        Decontaminator {
            n,
            grams,
            origin,
            report: FilterReport::new(format!("decontamination ({n}-gram overlap with eval)")),
        }
    }

    /// The n-gram size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// How many eval grams are indexed.
    pub fn len(&self) -> usize {
        self.grams.values().map(HashSet::len).sum()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The eval text a training text overlaps, if any.
    pub fn overlap(&self, text: &str) -> Option<&str> {
        let w = words(text);
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
        self.report
            .record(removed, id, || format!("overlaps eval item \"{}\"", hit.unwrap_or_default()));
        !removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_items_match_on_a_shared_13_gram() {
        let eval = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
        let mut d = Decontaminator::new([eval], 13);
        assert!(!d.keep("x", "prefix words one two three four five six seven eight nine ten eleven twelve thirteen suffix"));
        assert!(d.keep("y", "one two three four five six seven eight nine ten eleven twelve"));
        assert_eq!(d.report.removed, 1);
    }

    #[test]
    fn short_items_match_whole_and_normalised() {
        let mut d = Decontaminator::new(["Normalise: March 3, '21"], 13);
        assert!(!d.keep("a", "normalise march 3 21"));
        assert!(d.keep("b", "Normalise: March 4, '21"));
    }

    #[test]
    fn an_empty_eval_set_removes_nothing() {
        let mut d = Decontaminator::new(Vec::<&str>::new(), 13);
        assert!(d.is_empty());
        assert!(d.keep("a", "anything"));
    }
}
