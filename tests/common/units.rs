//! A second task, made by the tests alone: unit conversion ("Convert 3.5 km to m." → `3500`).
//!
//! It proves that nothing in the workbench depends on the embedded date task: the data reach a
//! run as plain files with their own column names (gold as CSV `question,answer`, the prompt pool
//! as JSONL `text`, the eval set as a Parquet file in TRL's prompt–completion layout), and the
//! config's column mapping is what makes them readable. No code is shared with
//! `datasets/src/tasks/dates.rs`: the generator has its own random numbers (xorshift64*) and uses
//! std alone; only the file writers use `serde_json` and the `datasets` crate.
//!
//! Answers are exact. Quantities are integers scaled by a power of ten, unit sizes are integers
//! in a small base unit (micrometres, nanograms, millilitres, seconds) so every conversion is a
//! ratio of integers, and the answer is either the exact decimal (when it has at most three
//! decimals and the prompt asks for no rounding) or rounded to the number of decimals the prompt
//! states. Values whose rounding would be a tie are never drawn, so no tie-breaking rule is
//! needed for the task to be well-posed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// xorshift64* (Vigna): the task's own small generator.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from any seed (zero included).
    pub fn new(seed: u64) -> Self {
        // MurmurHash3's finaliser spreads nearby seeds apart; xorshift needs a non-zero state.
        let mut z = seed ^ 0xD1B5_4A32_D192_ED03;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        z ^= z >> 33;
        XorShift(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as i64
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// What a unit measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    /// Base: micrometre.
    Length,
    /// Base: nanogram.
    Mass,
    /// Base: millilitre.
    Volume,
    /// Base: second.
    Time,
    /// Celsius and Fahrenheit: an affine conversion, not a ratio.
    Temperature,
}

/// A unit and the ways a prompt may write it.
struct Unit {
    abbr: &'static str,
    /// Spelling variants of the singular (`metre`, `meter`).
    singular: &'static [&'static str],
    /// The plurals, in the same order.
    plural: &'static [&'static str],
    dim: Dim,
    /// Size in the dimension's base unit (unused for temperatures).
    size: i128,
}

const fn unit(
    abbr: &'static str,
    singular: &'static [&'static str],
    plural: &'static [&'static str],
    dim: Dim,
    size: i128,
) -> Unit {
    Unit {
        abbr,
        singular,
        plural,
        dim,
        size,
    }
}

const UNITS: &[Unit] = &[
    unit(
        "mm",
        &["millimetre", "millimeter"],
        &["millimetres", "millimeters"],
        Dim::Length,
        1_000,
    ),
    unit(
        "cm",
        &["centimetre", "centimeter"],
        &["centimetres", "centimeters"],
        Dim::Length,
        10_000,
    ),
    unit(
        "m",
        &["metre", "meter"],
        &["metres", "meters"],
        Dim::Length,
        1_000_000,
    ),
    unit(
        "km",
        &["kilometre", "kilometer"],
        &["kilometres", "kilometers"],
        Dim::Length,
        1_000_000_000,
    ),
    unit("in", &["inch"], &["inches"], Dim::Length, 25_400),
    unit("ft", &["foot"], &["feet"], Dim::Length, 304_800),
    unit("yd", &["yard"], &["yards"], Dim::Length, 914_400),
    unit("mi", &["mile"], &["miles"], Dim::Length, 1_609_344_000),
    unit("mg", &["milligram"], &["milligrams"], Dim::Mass, 1_000_000),
    unit("g", &["gram"], &["grams"], Dim::Mass, 1_000_000_000),
    unit(
        "kg",
        &["kilogram"],
        &["kilograms"],
        Dim::Mass,
        1_000_000_000_000,
    ),
    unit("oz", &["ounce"], &["ounces"], Dim::Mass, 28_349_523_125),
    unit("lb", &["pound"], &["pounds"], Dim::Mass, 453_592_370_000),
    unit(
        "mL",
        &["millilitre", "milliliter"],
        &["millilitres", "milliliters"],
        Dim::Volume,
        1,
    ),
    unit(
        "L",
        &["litre", "liter"],
        &["litres", "liters"],
        Dim::Volume,
        1_000,
    ),
    unit("s", &["second"], &["seconds"], Dim::Time, 1),
    unit("min", &["minute"], &["minutes"], Dim::Time, 60),
    unit("h", &["hour"], &["hours"], Dim::Time, 3_600),
    unit("d", &["day"], &["days"], Dim::Time, 86_400),
    unit(
        "°C",
        &["degree Celsius"],
        &["degrees Celsius"],
        Dim::Temperature,
        0,
    ),
    unit(
        "°F",
        &["degree Fahrenheit"],
        &["degrees Fahrenheit"],
        Dim::Temperature,
        0,
    ),
];

/// The conversions asked, by abbreviation; each is asked both ways.
const PAIRS: &[(&str, &str)] = &[
    ("km", "m"),
    ("m", "cm"),
    ("cm", "mm"),
    ("m", "mm"),
    ("in", "cm"),
    ("ft", "m"),
    ("ft", "in"),
    ("yd", "m"),
    ("mi", "km"),
    ("yd", "ft"),
    ("kg", "g"),
    ("g", "mg"),
    ("lb", "kg"),
    ("oz", "g"),
    ("lb", "oz"),
    ("L", "mL"),
    ("h", "min"),
    ("min", "s"),
    ("d", "h"),
    ("h", "s"),
    ("°C", "°F"),
];

fn find(abbr: &str) -> &'static Unit {
    UNITS.iter().find(|u| u.abbr == abbr).expect("a known unit")
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `num / den` in lowest terms, `den > 0`.
fn reduce(num: i128, den: i128) -> (i128, i128) {
    let g = gcd(num, den).max(1);
    let s = if den < 0 { -1 } else { 1 };
    (s * num / g, s * den / g)
}

/// `value / 10^scale` of `from`, in `to`, exactly.
fn convert(value: i128, scale: u32, from: &Unit, to: &Unit) -> (i128, i128) {
    let den = 10i128.pow(scale);
    match (from.abbr, to.abbr) {
        // F = C · 9/5 + 32
        ("°C", "°F") => reduce(value * 9 + 32 * 5 * den, 5 * den),
        // C = (F − 32) · 5/9
        ("°F", "°C") => reduce((value - 32 * den) * 5, 9 * den),
        _ => reduce(value * from.size, den * to.size),
    }
}

/// The fewest decimals (at most `max`) that write `num / den` exactly.
fn exact_decimals(den: i128, max: u32) -> Option<u32> {
    (0..=max).find(|k| 10i128.pow(*k) % den == 0)
}

/// `num / den` rounded to `decimals`, half away from zero; `None` on an exact tie.
fn rounded(num: i128, den: i128, decimals: u32) -> Option<String> {
    let scaled = num.abs() * 10i128.pow(decimals);
    let (q, r) = (scaled / den, scaled % den);
    if 2 * r == den {
        return None;
    }
    let m = if 2 * r > den { q + 1 } else { q };
    let p = 10i128.pow(decimals);
    let sign = if num < 0 && m != 0 { "-" } else { "" };
    Some(if decimals == 0 {
        format!("{sign}{m}")
    } else {
        format!(
            "{sign}{}.{:0width$}",
            m / p,
            m % p,
            width = decimals as usize
        )
    })
}

/// `value / 10^scale` as the shortest decimal.
fn decimal(value: i128, scale: u32) -> String {
    let (mut v, mut s) = (value, scale);
    while s > 0 && v % 10 == 0 {
        v /= 10;
        s -= 1;
    }
    rounded(v, 10i128.pow(s), s).expect("an exact decimal is no tie")
}

/// One conversion question and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The prompt, e.g. `How many grams are in 2 kg?`.
    pub question: String,
    /// The answer, e.g. `2000`.
    pub answer: String,
    /// `length`, `mass`, `volume`, `time` or `temperature`.
    pub dimension: &'static str,
}

/// How a unit is written after a quantity: its abbreviation or its name (singular for exactly 1).
fn quantity(rng: &mut XorShift, value: &str, u: &Unit) -> String {
    if rng.chance(50) {
        return format!("{value} {}", u.abbr);
    }
    let i = (rng.next_u64() % u.singular.len() as u64) as usize;
    let name = if value == "1" {
        u.singular[i]
    } else {
        u.plural[i]
    };
    format!("{value} {name}")
}

/// How a target unit is written: its abbreviation or its plural name.
fn target(rng: &mut XorShift, u: &Unit) -> &'static str {
    if rng.chance(50) {
        u.abbr
    } else {
        let names: &[&'static str] = u.plural;
        names[(rng.next_u64() % names.len() as u64) as usize]
    }
}

/// The rounding instruction as a sentence and in parentheses.
fn rounding(rng: &mut XorShift, decimals: u32) -> (&'static str, &'static str) {
    match decimals {
        0 => (
            *rng.pick(&[
                "Round to the nearest whole number.",
                "Answer with a whole number, rounded.",
            ]),
            "(round to a whole number)",
        ),
        1 => (
            *rng.pick(&["Round to 1 decimal place.", "Round to one decimal."]),
            "(round to 1 decimal)",
        ),
        _ => (
            *rng.pick(&["Round to 2 decimal places.", "Round to two decimals."]),
            "(round to 2 decimals)",
        ),
    }
}

/// What makes two items the same question whatever their wording.
type Key = (&'static str, &'static str, i128, u32);

/// One random item, and its key.
fn draw(rng: &mut XorShift) -> (Key, Item) {
    loop {
        let (a, b) = *rng.pick(PAIRS);
        let (from, to) = if rng.chance(50) {
            (find(a), find(b))
        } else {
            (find(b), find(a))
        };
        let temperature = from.dim == Dim::Temperature;
        let scale = match rng.next_u64() % 10 {
            0..=5 => 0,
            6..=8 => 1,
            _ if temperature => 1,
            _ => 2,
        };
        let value: i128 = if temperature {
            let whole = if from.abbr == "°C" {
                rng.between(-40, 120)
            } else {
                rng.between(-40, 250)
            };
            let tenths = if scale == 1 { rng.between(0, 9) } else { 0 };
            i128::from(whole * 10i64.pow(scale) + if whole < 0 { -tenths } else { tenths })
        } else {
            match scale {
                0 => i128::from(rng.between(1, 500)),
                _ => i128::from(rng.between(1, 999)),
            }
        };
        // `2.50` is written `2.5`: the key is the shortest form.
        let (mut value, mut scale) = (value, scale);
        while scale > 0 && value % 10 == 0 {
            value /= 10;
            scale -= 1;
        }
        let (num, den) = convert(value, scale, from, to);
        let exact = exact_decimals(den, 3);
        let (decimals, stated) = match exact {
            Some(k) if rng.chance(65) => (k, false),
            _ => ((rng.next_u64() % 3) as u32, true),
        };
        let Some(answer) = rounded(num, den, decimals) else {
            continue; // a tie: never asked
        };
        if to.dim != Dim::Temperature && answer.trim_start_matches(['0', '.']).is_empty() {
            continue; // rounds to nothing: not a useful question
        }
        let v = decimal(value, scale);
        let (sentence, paren) = rounding(rng, decimals);
        let template = rng.next_u64() % if temperature { 4 } else { 5 };
        let question = match template {
            0 => format!(
                "Convert {} to {}.",
                quantity(rng, &v, from),
                target(rng, to)
            ),
            1 => format!(
                "What is {} in {}?",
                quantity(rng, &v, from),
                target(rng, to)
            ),
            2 => format!(
                "Express {} in {}.",
                quantity(rng, &v, from),
                target(rng, to)
            ),
            3 => format!("{v} {} = ? {}", from.abbr, to.abbr),
            _ => format!(
                "How many {} are in {}?",
                *rng.pick(to.plural),
                quantity(rng, &v, from)
            ),
        };
        let question = match (stated, template) {
            (false, _) => question,
            (true, 3) => format!("{question} {paren}"),
            (true, _) => format!("{question} {sentence}"),
        };
        let dimension = match from.dim {
            Dim::Length => "length",
            Dim::Mass => "mass",
            Dim::Volume => "volume",
            Dim::Time => "time",
            Dim::Temperature => "temperature",
        };
        let item = Item {
            question,
            answer,
            dimension,
        };
        return ((from.abbr, to.abbr, value, scale), item);
    }
}

/// Lowercase letters and digits, one space between words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `haystack` holds `needle` whole or, for a needle longer than `n` words, any `n`-word
/// run of it (the workbench's decontamination rule, at its default `n` of 13).
fn overlaps(haystack: &[String], needle: &[String], n: usize) -> bool {
    let len = needle.len().min(n);
    len > 0
        && needle
            .windows(len)
            .any(|g| haystack.windows(len).any(|w| w == g))
}

/// The task's three sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSets {
    /// Questions with answers: the teacher learns from these.
    pub gold: Vec<Item>,
    /// Questions the teacher labels (their answers are known here, and written nowhere).
    pub prompts: Vec<Item>,
    /// Held-out questions with answers.
    pub eval: Vec<Item>,
}

/// Makes the three sets from `seed`. No question is asked twice across them, and no gold or pool
/// question contains an eval question's words, so cleaning (dedup, decontamination) keeps every
/// row and the sizes are exactly the ones asked for.
pub fn generate(seed: u64, gold: usize, prompts: usize, eval: usize) -> UnitSets {
    let mut rng = XorShift::new(seed);
    let mut keys: HashSet<Key> = HashSet::new();
    let mut texts: HashSet<Vec<String>> = HashSet::new();
    let mut eval_items: Vec<Item> = Vec::new();
    while eval_items.len() < eval {
        let (key, item) = draw(&mut rng);
        if keys.insert(key) && texts.insert(words(&item.question)) {
            eval_items.push(item);
        }
    }
    // What the eval items share at their start and end is template text, not the item.
    let eval_words: Vec<Vec<String>> = eval_items.iter().map(|i| words(&i.question)).collect();
    let shared = |rev: bool| -> usize {
        let seq = |w: &Vec<String>| -> Vec<String> {
            if rev {
                w.iter().rev().cloned().collect()
            } else {
                w.clone()
            }
        };
        let first = eval_words.first().map(seq).unwrap_or_default();
        eval_words
            .iter()
            .map(|w| {
                seq(w)
                    .iter()
                    .zip(&first)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .min()
            .unwrap_or(0)
    };
    let (pre, suf) = if eval_words.len() >= 2 {
        (shared(false), shared(true))
    } else {
        (0, 0)
    };
    let cores: Vec<Vec<String>> = eval_words
        .iter()
        .map(|w| {
            let end = w.len().saturating_sub(suf).max(pre.min(w.len()));
            w[pre.min(w.len())..end].to_vec()
        })
        .collect();
    let mut train = |n: usize, rng: &mut XorShift| -> Vec<Item> {
        let mut out = Vec::new();
        while out.len() < n {
            let (key, item) = draw(rng);
            let w = words(&item.question);
            if cores.iter().any(|c| overlaps(&w, c, 13))
                || keys.contains(&key)
                || texts.contains(&w)
            {
                continue;
            }
            keys.insert(key);
            texts.insert(w);
            out.push(item);
        }
        out
    };
    let gold_items = train(gold, &mut rng);
    let pool = train(prompts, &mut rng);
    UnitSets {
        gold: gold_items,
        prompts: pool,
        eval: eval_items,
    }
}

/// The files [`write_files`] made.
#[derive(Debug, Clone)]
pub struct UnitFiles {
    /// CSV, columns `question,answer`.
    pub gold: PathBuf,
    /// JSONL, keys `text` and `dimension` (the latter read by nothing).
    pub prompts: PathBuf,
    /// Parquet in TRL's prompt–completion layout (`messages`, `prompt`, `completion`, ...): the
    /// answer is in `completion`, which an eval set must map to `reference`.
    pub eval: PathBuf,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `gold.csv`, `prompts.jsonl` and `eval.parquet` into `dir`, none with our column names.
pub fn write_files(dir: &Path, sets: &UnitSets) -> UnitFiles {
    std::fs::create_dir_all(dir).unwrap();
    let files = UnitFiles {
        gold: dir.join("gold.csv"),
        prompts: dir.join("prompts.jsonl"),
        eval: dir.join("eval.parquet"),
    };
    let mut csv = String::from("question,answer\n");
    for i in &sets.gold {
        csv.push_str(&format!(
            "{},{}\n",
            csv_field(&i.question),
            csv_field(&i.answer)
        ));
    }
    std::fs::write(&files.gold, csv).unwrap();
    let mut jsonl = String::new();
    for i in &sets.prompts {
        jsonl.push_str(
            &serde_json::json!({"text": i.question, "dimension": i.dimension}).to_string(),
        );
        jsonl.push('\n');
    }
    std::fs::write(&files.prompts, jsonl).unwrap();
    let rows: Vec<datasets::SftRow> = sets
        .eval
        .iter()
        .map(|i| {
            datasets::SftRow::new(
                vec![datasets::Message::new("user", i.question.clone())],
                i.question.clone(),
                i.answer.clone(),
                Some("units".into()),
            )
        })
        .collect();
    datasets::parquet::write_records(&files.eval, &rows, &Default::default()).unwrap();
    files
}

#[cfg(test)]
mod tests {
    //! The generator against an independent reading of its own prompts: the question is parsed
    //! back from its text, converted with floating-point factors written out separately, and the
    //! answer checked against the stated rounding.

    use super::*;

    /// Unit names → (dimension, size in SI units); temperatures are handled apart.
    fn si(name: &str) -> Option<(&'static str, f64)> {
        Some(match name {
            "mm" | "millimetre" | "millimeter" | "millimetres" | "millimeters" => ("length", 0.001),
            "cm" | "centimetre" | "centimeter" | "centimetres" | "centimeters" => ("length", 0.01),
            "m" | "metre" | "meter" | "metres" | "meters" => ("length", 1.0),
            "km" | "kilometre" | "kilometer" | "kilometres" | "kilometers" => ("length", 1000.0),
            "in" | "inch" | "inches" => ("length", 0.0254),
            "ft" | "foot" | "feet" => ("length", 0.3048),
            "yd" | "yard" | "yards" => ("length", 0.9144),
            "mi" | "mile" | "miles" => ("length", 1609.344),
            "mg" | "milligram" | "milligrams" => ("mass", 1e-6),
            "g" | "gram" | "grams" => ("mass", 1e-3),
            "kg" | "kilogram" | "kilograms" => ("mass", 1.0),
            "oz" | "ounce" | "ounces" => ("mass", 0.45359237 / 16.0),
            "lb" | "pound" | "pounds" => ("mass", 0.45359237),
            "mL" | "millilitre" | "milliliter" | "millilitres" | "milliliters" => ("volume", 1e-3),
            "L" | "litre" | "liter" | "litres" | "liters" => ("volume", 1.0),
            "s" | "second" | "seconds" => ("time", 1.0),
            "min" | "minute" | "minutes" => ("time", 60.0),
            "h" | "hour" | "hours" => ("time", 3600.0),
            "d" | "day" | "days" => ("time", 86400.0),
            "°C" | "degree Celsius" | "degrees Celsius" => ("celsius", 0.0),
            "°F" | "degree Fahrenheit" | "degrees Fahrenheit" => ("fahrenheit", 0.0),
            _ => return None,
        })
    }

    /// `(value, from, to, decimals stated)` read back from a question.
    fn parse(q: &str) -> (f64, String, String, Option<u32>) {
        let decimals = if q.contains("whole number") {
            Some(0)
        } else if q.contains("1 decimal") || q.contains("one decimal") {
            Some(1)
        } else if q.contains("2 decimal") || q.contains("two decimals") {
            Some(2)
        } else {
            None
        };
        // Cut the rounding instruction off, then read the template.
        let core = ["(round", "Round", "Answer with"]
            .iter()
            .filter_map(|m| q.find(m))
            .min()
            .map_or(q, |i| &q[..i])
            .trim()
            .trim_end_matches(['.', '?']);
        let qty = |s: &str| -> (f64, String) {
            let (v, u) = s
                .split_once(' ')
                .unwrap_or_else(|| panic!("`{s}` in `{q}`"));
            (
                v.parse().unwrap_or_else(|_| panic!("`{v}` in `{q}`")),
                u.to_string(),
            )
        };
        let (v, from, to) = if let Some(rest) = core.strip_prefix("Convert ") {
            let (a, b) = rest.split_once(" to ").unwrap();
            let (v, f) = qty(a);
            (v, f, b.to_string())
        } else if let Some(rest) = core.strip_prefix("What is ") {
            let (a, b) = rest.rsplit_once(" in ").unwrap();
            let (v, f) = qty(a);
            (v, f, b.to_string())
        } else if let Some(rest) = core.strip_prefix("Express ") {
            let (a, b) = rest.rsplit_once(" in ").unwrap();
            let (v, f) = qty(a);
            (v, f, b.to_string())
        } else if let Some(rest) = core.strip_prefix("How many ") {
            let (b, a) = rest.split_once(" are in ").unwrap();
            let (v, f) = qty(a);
            (v, f, b.to_string())
        } else {
            let (a, b) = core.split_once(" = ? ").unwrap_or_else(|| panic!("`{q}`"));
            let (v, f) = qty(a);
            (v, f, b.to_string())
        };
        (v, from, to, decimals)
    }

    fn recompute(v: f64, from: &str, to: &str) -> f64 {
        let (fd, fs) = si(from).unwrap_or_else(|| panic!("unit `{from}`"));
        let (td, ts) = si(to).unwrap_or_else(|| panic!("unit `{to}`"));
        match (fd, td) {
            ("celsius", "fahrenheit") => v * 1.8 + 32.0,
            ("fahrenheit", "celsius") => (v - 32.0) / 1.8,
            _ => {
                assert_eq!(fd, td, "{from} → {to} crosses dimensions");
                v * fs / ts
            }
        }
    }

    #[test]
    fn every_answer_matches_an_independent_recomputation() {
        let sets = generate(7, 400, 400, 200);
        for item in sets.gold.iter().chain(&sets.prompts).chain(&sets.eval) {
            let (v, from, to, decimals) = parse(&item.question);
            let want = recompute(v, &from, &to);
            let got: f64 = item.answer.parse().unwrap();
            let shown = item.answer.split_once('.').map_or(0, |(_, f)| f.len()) as u32;
            let ctx = format!("`{}` → `{}` (exact {want})", item.question, item.answer);
            match decimals {
                Some(n) => {
                    assert_eq!(shown, n, "{ctx}: {n} decimals asked");
                    let half = 0.5 * 10f64.powi(-(n as i32));
                    assert!((got - want).abs() <= half * (1.0 + 1e-9), "{ctx}");
                }
                None => {
                    assert!(shown <= 3, "{ctx}");
                    assert!(
                        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "{ctx}: not exact"
                    );
                    assert!(
                        !item.answer.contains('.') || !item.answer.ends_with('0'),
                        "{ctx}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_sets_and_another_seed_others() {
        let a = generate(11, 40, 60, 12);
        assert_eq!(a, generate(11, 40, 60, 12));
        assert_ne!(a, generate(12, 40, 60, 12));
        assert_eq!((a.gold.len(), a.prompts.len(), a.eval.len()), (40, 60, 12));
    }

    #[test]
    fn the_forms_vary_and_no_question_repeats() {
        let s = generate(3, 300, 300, 100);
        let all: Vec<&str> = s
            .gold
            .iter()
            .chain(&s.prompts)
            .chain(&s.eval)
            .map(|i| i.question.as_str())
            .collect();
        let unique: HashSet<Vec<String>> = all.iter().map(|q| words(q)).collect();
        assert_eq!(unique.len(), all.len());
        for needle in [
            "Convert ",
            "How many ",
            " = ? ",
            "What is ",
            "Express ",
            "Round to",
            "(round to",
            " km",
            "kilomet",
            " feet",
            " °F",
            "degrees Celsius",
            " inch",
        ] {
            assert!(all.iter().any(|q| q.contains(needle)), "no `{needle}`");
        }
        // Rounded and exact answers, integers and decimals, both appear.
        assert!(s.gold.iter().any(|i| i.answer.contains('.')));
        assert!(s.gold.iter().any(|i| !i.answer.contains('.')));
        assert!(s.gold.iter().any(|i| !i.question.contains("ound")));
    }

    #[test]
    fn a_known_case_by_hand() {
        assert_eq!(rounded(305, 10, 1).as_deref(), Some("30.5"));
        assert_eq!(rounded(-1, 3, 1).as_deref(), Some("-0.3"));
        assert_eq!(rounded(-1, 30, 1).as_deref(), Some("0.0"));
        assert_eq!(rounded(5, 2, 0), None);
        assert_eq!(decimal(350, 2), "3.5");
        // 12 in = 30.48 cm; 3.5 km = 3500 m; 100 °C = 212 °F; 2 lb = 32 oz.
        assert_eq!(convert(12, 0, find("in"), find("cm")), (762, 25));
        assert_eq!(convert(35, 1, find("km"), find("m")), (3500, 1));
        assert_eq!(convert(100, 0, find("°C"), find("°F")), (212, 1));
        assert_eq!(convert(2, 0, find("lb"), find("oz")), (32, 1));
    }
}
