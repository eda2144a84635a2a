//! Duplicate removal: exact (hash of normalised text) and near-duplicate (MinHash LSH on word
//! n-grams), streaming, first occurrence kept.
//!
//! Near-duplicates follow the usual recipe (datasketch, text-dedup, the Self-Instruct and
//! RefinedWeb pipelines): shingle the normalised text into word n-grams, MinHash it with 128
//! permutations, split the signature into `b` bands of `r` rows chosen to minimise the false
//! positive and false negative mass around the threshold, and call two texts duplicates when any
//! band collides. Memory is one hash per band per kept row; no signatures are stored.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// What a filter removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FilterReport {
    /// The filter (`dedup (exact)`, `dedup (near, 0.8)`, `decontamination (13-gram)`).
    pub name: String,
    /// Rows looked at.
    pub seen: u64,
    /// Rows removed.
    pub removed: u64,
    /// A few removed rows, `(id, why)`.
    pub examples: Vec<(String, String)>,
}

impl FilterReport {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        FilterReport {
            name: name.into(),
            ..Default::default()
        }
    }

    pub(crate) fn record(&mut self, removed: bool, id: &str, why: impl FnOnce() -> String) {
        self.seen += 1;
        if removed {
            self.removed += 1;
            if self.examples.len() < 5 {
                self.examples.push((id.to_string(), why()));
            }
        }
    }
}

/// Lowercase, letters and digits only, single spaces: what "the same text" means for dedup.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The words of normalised text.
pub fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn hash64(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// Exact duplicates of normalised text.
#[derive(Debug, Default)]
pub struct ExactDedup {
    seen: HashMap<u128, String>,
    /// What was removed.
    pub report: FilterReport,
}

impl ExactDedup {
    /// An empty filter.
    pub fn new() -> Self {
        ExactDedup {
            seen: HashMap::new(),
            report: FilterReport::new("dedup (exact)"),
        }
    }

    /// Whether to keep a row with this `id` and text (false for a repeat).
    pub fn keep(&mut self, id: &str, text: &str) -> bool {
        let key = xxhash_rust::xxh3::xxh3_128(normalize(text).as_bytes());
        let first = match self.seen.get(&key) {
            Some(first) => Some(first.clone()),
            None => {
                self.seen.insert(key, id.to_string());
                None
            }
        };
        let removed = first.is_some();
        self.report.record(removed, id, || {
            format!(
                "same text as {}: \"{}\"",
                first.unwrap_or_default(),
                shorten(text)
            )
        });
        !removed
    }
}

/// MinHash LSH near-duplicate filter.
#[derive(Debug)]
pub struct NearDedup {
    shingle_words: usize,
    bands: usize,
    rows: usize,
    perms: Vec<(u64, u64)>,
    buckets: Vec<HashMap<u64, u32>>,
    ids: Vec<String>,
    /// What was removed.
    pub report: FilterReport,
}

const MERSENNE_61: u64 = (1 << 61) - 1;

fn mod_mersenne(x: u128) -> u64 {
    let lo = (x as u64) & MERSENNE_61;
    let hi = (x >> 61) as u64;
    let mut r = lo + (hi & MERSENNE_61) + ((x >> 122) as u64);
    while r >= MERSENNE_61 {
        r -= MERSENNE_61;
    }
    r
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `(bands, rows)` split of `num_perm` that minimises false positives plus false negatives
/// around `threshold` (the same criterion as datasketch).
pub fn optimal_bands(threshold: f64, num_perm: usize) -> (usize, usize) {
    let integrate = |f: &dyn Fn(f64) -> f64, a: f64, b: f64| {
        let n = 200;
        let h = (b - a) / n as f64;
        (0..n).map(|i| f(a + (i as f64 + 0.5) * h) * h).sum::<f64>()
    };
    let mut best = (1, num_perm);
    let mut best_err = f64::INFINITY;
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = integrate(&p, 0.0, threshold);
            let fneg = integrate(&|s| 1.0 - p(s), threshold, 1.0);
            let e = fp + fneg;
            if e < best_err {
                best_err = e;
                best = (b, r);
            }
        }
    }
    best
}

impl NearDedup {
    /// A filter at Jaccard `threshold` on shingles of `shingle_words` words.
    pub fn new(threshold: f64, shingle_words: usize, seed: u64) -> Self {
        let num_perm = 128;
        let (bands, rows) = optimal_bands(threshold, num_perm);
        let mut state = seed ^ 0x5EED_D3D0;
        let perms = (0..bands * rows)
            .map(|_| {
                (
                    splitmix(&mut state) % (MERSENNE_61 - 1) + 1,
                    splitmix(&mut state) % MERSENNE_61,
                )
            })
            .collect();
        NearDedup {
            shingle_words: shingle_words.max(1),
            bands,
            rows,
            perms,
            buckets: vec![HashMap::new(); bands],
            ids: Vec::new(),
            report: FilterReport::new(format!("dedup (near, Jaccard ≥ {threshold})")),
        }
    }

    fn shingles(&self, text: &str) -> HashSet<u64> {
        let words = words(text);
        if words.len() <= self.shingle_words {
            return HashSet::from([hash64(words.join(" ").as_bytes())]);
        }
        words
            .windows(self.shingle_words)
            .map(|w| hash64(w.join(" ").as_bytes()))
            .collect()
    }

    /// The `(bands, rows per band)` of the LSH index.
    pub fn bands(&self) -> (usize, usize) {
        (self.bands, self.rows)
    }

    /// The MinHash signature of a text.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingles(text);
        self.perms
            .iter()
            .map(|&(a, b)| {
                shingles
                    .iter()
                    .map(|&x| mod_mersenne(a as u128 * (x & MERSENNE_61) as u128 + b as u128))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    /// Whether to keep a row (false when a band collides with an earlier kept row).
    pub fn keep(&mut self, id: &str, text: &str) -> bool {
        let sig = self.signature(text);
        let band_keys: Vec<u64> = sig
            .chunks(self.rows)
            .enumerate()
            .map(|(band, rows)| {
                let mut bytes = Vec::with_capacity(8 * (rows.len() + 1));
                bytes.extend_from_slice(&(band as u64).to_le_bytes());
                for r in rows {
                    bytes.extend_from_slice(&r.to_le_bytes());
                }
                hash64(&bytes)
            })
            .collect();
        let hit = band_keys
            .iter()
            .zip(&self.buckets)
            .find_map(|(k, bucket)| bucket.get(k).copied());
        if hit.is_none() {
            let index = self.ids.len() as u32;
            self.ids.push(id.to_string());
            for (k, bucket) in band_keys.iter().zip(&mut self.buckets) {
                bucket.insert(*k, index);
            }
        }
        let ids = &self.ids;
        self.report.record(hit.is_some(), id, || {
            format!(
                "near-duplicate of {}: \"{}\"",
                hit.map(|i| ids[i as usize].as_str()).unwrap_or(""),
                shorten(text)
            )
        });
        hit.is_none()
    }
}

/// Jaccard similarity of two texts' shingle sets (for tests and reports).
pub fn jaccard(a: &str, b: &str, shingle_words: usize) -> f64 {
    let d = NearDedup::new(0.5, shingle_words, 0);
    let (x, y) = (d.shingles(a), d.shingles(b));
    let inter = x.intersection(&y).count() as f64;
    let union = x.union(&y).count() as f64;
    if union == 0.0 { 1.0 } else { inter / union }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_punctuation_and_spacing() {
        assert_eq!(normalize("  Hello,   WORLD!! "), "hello world");
        assert_eq!(normalize("Ça va?"), "ça va");
    }

    #[test]
    fn exact_dedup_keeps_the_first_and_reports_the_rest() {
        let mut d = ExactDedup::new();
        assert!(d.keep("a", "Hello world"));
        assert!(!d.keep("b", "hello,  world!"));
        assert!(d.keep("c", "hello there"));
        assert_eq!(d.report.removed, 1);
        assert_eq!(d.report.seen, 3);
        assert!(d.report.examples[0].1.contains("same text as a"));
    }

    #[test]
    fn bands_are_tighter_for_higher_thresholds() {
        let (b_lo, r_lo) = optimal_bands(0.5, 128);
        let (b_hi, r_hi) = optimal_bands(0.9, 128);
        assert!(b_lo * r_lo <= 128 && b_hi * r_hi <= 128);
        assert!(r_hi > r_lo, "({b_lo},{r_lo}) vs ({b_hi},{r_hi})");
    }

    #[test]
    fn near_dedup_catches_small_edits_and_spares_different_texts() {
        let base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat by the door \
                    and the children play in the garden until the sun goes down behind the old stone church tower";
        let edited = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat by the door \
                      and the children play in the garden until the sun goes down behind the old stone church spire";
        let other = "write a haiku about autumn leaves falling in a quiet japanese garden at dusk";
        assert!(jaccard(base, edited, 3) > 0.9);
        let mut d = NearDedup::new(0.8, 3, 0);
        assert!(d.keep("a", base));
        assert!(!d.keep("b", edited));
        assert!(d.keep("c", other));
        assert_eq!(d.report.removed, 1);
    }

    #[test]
    fn minhash_estimates_jaccard() {
        let d = NearDedup::new(0.5, 1, 3);
        let a: String = (0..200).map(|i| format!("w{i} ")).collect();
        let b: String = (100..300).map(|i| format!("w{i} ")).collect();
        // True Jaccard on 1-word shingles: 100 / 300.
        let (sa, sb) = (d.signature(&a), d.signature(&b));
        let est = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / sa.len() as f64;
        assert!((est - 1.0 / 3.0).abs() < 0.12, "{est}");
    }
}
