//! Filters on teacher answers: length, regex, a validator, a verifier against the reference.
//! Dedup and decontamination come from `datasets`.

use datasets::config::{GenerateConfig, Validator, Verifier};
use regex::Regex;

use crate::{Error, Result};

/// The text checks of `[generate]`, compiled.
pub struct TextFilters {
    min_chars: usize,
    max_chars: usize,
    require: Option<Regex>,
    reject: Option<Regex>,
    validator: Option<Validator>,
    verify: Option<Verifier>,
}

/// Why a row was dropped: the filter's name as the summary prints it.
pub type Verdict = std::result::Result<(), &'static str>;

impl TextFilters {
    /// Compiles the filters of a `[generate]` section.
    pub fn new(c: &GenerateConfig) -> Result<TextFilters> {
        let compile = |key: &str, re: &Option<String>| {
            re.as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| Error::invalid(format!("`{key}` is not a valid regex: {e}")))
        };
        Ok(TextFilters {
            min_chars: c.min_chars,
            max_chars: c.max_chars,
            require: compile("generate.require", &c.require)?,
            reject: compile("generate.reject", &c.reject)?,
            validator: c.validator,
            verify: c.verify,
        })
    }

    /// Checks a completion (and its reference, when there is one).
    pub fn check(&self, completion: &str, reference: Option<&str>) -> Verdict {
        let chars = completion.trim().chars().count();
        if chars < self.min_chars {
            return Err("too short");
        }
        if self.max_chars > 0 && chars > self.max_chars {
            return Err("too long");
        }
        if let Some(re) = &self.require
            && !re.is_match(completion)
        {
            return Err("require regex");
        }
        if let Some(re) = &self.reject
            && re.is_match(completion)
        {
            return Err("reject regex");
        }
        if let Some(v) = self.validator
            && !validate(v, completion.trim())
        {
            return Err("validator");
        }
        if let (Some(v), Some(reference)) = (self.verify, reference)
            && !verify(v, completion, reference)
        {
            return Err("verifier");
        }
        Ok(())
    }

    /// The names of the filters that can drop rows, in the order they run.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = vec!["too short"];
        if self.max_chars > 0 {
            v.push("too long");
        }
        if self.require.is_some() {
            v.push("require regex");
        }
        if self.reject.is_some() {
            v.push("reject regex");
        }
        if self.validator.is_some() {
            v.push("validator");
        }
        if self.verify.is_some() {
            v.push("verifier");
        }
        v
    }
}

/// Whether `text` passes a validator.
pub fn validate(v: Validator, text: &str) -> bool {
    match v {
        Validator::Json => serde_json::from_str::<serde_json::Value>(text).is_ok(),
        Validator::IsoDate => {
            text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
        }
        Validator::Number => parse_number(text).is_some(),
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim()
        .replace(',', "")
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

/// The last number in a text (`The answer is 1,234.` → 1234), as GSM8K graders read answers.
pub fn last_number(text: &str) -> Option<f64> {
    let re = Regex::new(r"-?\d[\d,]*(?:\.\d+)?").expect("a valid regex");
    re.find_iter(text)
        .last()
        .and_then(|m| parse_number(m.as_str()))
}

/// Whether a completion agrees with a reference.
pub fn verify(v: Verifier, completion: &str, reference: &str) -> bool {
    match v {
        Verifier::Exact => completion.trim() == reference.trim(),
        Verifier::Contains => completion.contains(reference.trim()),
        Verifier::Numeric => match (last_number(completion), last_number(reference)) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            _ => false,
        },
    }
}

/// ROUGE-L F1 between two texts on lower-cased words (the similarity Self-Instruct used to
/// reject near-duplicate instructions).
pub fn rouge_l(a: &str, b: &str) -> f64 {
    let wa: Vec<String> = datasets::dedup::words(a);
    let wb: Vec<String> = datasets::dedup::words(b);
    if wa.is_empty() || wb.is_empty() {
        return 0.0;
    }
    // Longest common subsequence, one row at a time.
    let mut prev = vec![0u32; wb.len() + 1];
    let mut cur = vec![0u32; wb.len() + 1];
    for x in &wa {
        for (j, y) in wb.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = prev[wb.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let p = lcs / wa.len() as f64;
    let r = lcs / wb.len() as f64;
    2.0 * p * r / (p + r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_and_verifiers() {
        assert!(validate(Validator::IsoDate, "2021-03-03"));
        assert!(!validate(Validator::IsoDate, "2021-02-30"));
        assert!(!validate(Validator::IsoDate, "March 3"));
        assert!(validate(Validator::Json, "{\"a\": 1}"));
        assert!(!validate(Validator::Json, "{a"));
        assert!(validate(Validator::Number, "1,234.5"));
        assert!(verify(
            Verifier::Numeric,
            "so the answer is 1,234.",
            "#### 1234"
        ));
        assert!(!verify(Verifier::Numeric, "about 12", "13"));
        assert!(verify(Verifier::Exact, " 2021-03-03\n", "2021-03-03"));
        assert!(verify(
            Verifier::Contains,
            "It is 2021-03-03.",
            "2021-03-03"
        ));
    }

    #[test]
    fn rouge_l_is_one_for_equal_texts_and_low_for_unrelated_ones() {
        assert!((rouge_l("Convert the date to ISO", "convert the date to iso") - 1.0).abs() < 1e-9);
        assert!(rouge_l("Convert the date to ISO", "Write a poem about the sea") < 0.3);
        let r = rouge_l(
            "Convert this date to ISO format",
            "Convert the date to ISO format please",
        );
        assert!(r > 0.6 && r < 1.0, "{r}");
        assert_eq!(rouge_l("", "x"), 0.0);
    }

    #[test]
    fn filters_report_the_first_that_fails() {
        let c = GenerateConfig {
            max_chars: 12,
            require: Some(r"^\d".into()),
            validator: Some(Validator::IsoDate),
            verify: Some(Verifier::Exact),
            ..Default::default()
        };
        let f = TextFilters::new(&c).unwrap();
        assert_eq!(f.check("", None), Err("too short"));
        assert_eq!(f.check("2021-03-03 and more", None), Err("too long"));
        assert_eq!(f.check("x2021-03-03", None), Err("require regex"));
        assert_eq!(f.check("2021-13-03", None), Err("validator"));
        assert_eq!(f.check("2021-03-03", Some("2021-03-04")), Err("verifier"));
        assert_eq!(f.check("2021-03-03", Some("2021-03-03")), Ok(()));
        assert_eq!(f.check("2021-03-03", None), Ok(()));
    }
}
