//! What the training stages read from the data stage: the gold, prompt and eval sets, the run's
//! tokenizer, and gold rows as training examples.

use std::path::Path;

use datasets::config::{Config, TokenizerSplit};
use datasets::{Sample, Set};

use crate::data::tokenizer::{BpeSplit, Tokenizer};
use crate::recipe::EvalSet;
use crate::recipe::{self};
use crate::train::data::Example;
use crate::{Error, Result};

/// The data stage's sets, as training reads them.
pub struct RunData {
    /// Gold rows (prompt and reference).
    pub gold: Vec<Sample>,
    /// The prompt pool (no answers).
    pub prompts: Vec<Sample>,
    /// Held-out prompts with references: where the results are measured.
    pub eval: EvalSet,
    /// Held out of the eval set (`data.validation_share`): where training is evaluated and the
    /// fine-tuned student compared; empty without one.
    pub validation: EvalSet,
}

impl RunData {
    /// The set training evaluates on (early stopping, loss curves) and the fine-tune's keep
    /// decision compares on: the validation set, else the eval set.
    pub fn selection(&self) -> &EvalSet {
        if self.validation.prompts.is_empty() {
            &self.eval
        } else {
            &self.validation
        }
    }
}

/// Reads the data stage's `gold`, `prompts`, `eval` and `validation` sets (any may be missing).
pub fn read_data(data_dir: &Path) -> Result<RunData> {
    Ok(RunData {
        gold: read_set(data_dir, "gold")?,
        prompts: read_set(data_dir, "prompts")?,
        eval: read_eval_set(data_dir, "eval")?,
        validation: read_eval_set(data_dir, "validation")?,
    })
}

/// The data stage's set `name`, empty when it has none.
fn read_set(data_dir: &Path, name: &str) -> Result<Vec<Sample>> {
    let dir = data_dir.join(name);
    if !Set::is_set(&dir) {
        return Ok(Vec::new());
    }
    Ok(Set::open(&dir)?.read_all::<Sample>(None)?)
}

/// The rows with a reference of the data stage's set `name` (`eval` or `validation`).
pub fn read_eval_set(data_dir: &Path, name: &str) -> Result<EvalSet> {
    let mut set = EvalSet::default();
    for s in read_set(data_dir, name)? {
        if let Some(r) = s.reference {
            set.prompts.push(s.prompt);
            set.references.push(r);
            set.slices.push(s.slice);
        }
    }
    Ok(set)
}

/// The gold rows the students learn from: the first `distill.gold_rows` (all when unset); the
/// local teacher learns from every gold row.
pub fn students_gold<'a>(c: &Config, data: &'a RunData) -> &'a [Sample] {
    let n = c.distill.gold_rows.unwrap_or(usize::MAX);
    &data.gold[..n.min(data.gold.len())]
}

/// The texts the run's tokenizer learns from: gold prompts and references, and the prompt pool
/// (never the eval set).
pub(crate) fn tokenizer_texts(data: &RunData) -> Vec<String> {
    data.gold
        .iter()
        .chain(&data.prompts)
        .map(|s| s.prompt.clone())
        .chain(data.gold.iter().filter_map(|s| s.reference.clone()))
        .collect()
}

/// The run's own tokenizer (what `workbench teacher train` makes).
pub fn run_tokenizer(c: &Config, data: &RunData) -> Result<Tokenizer> {
    let texts = tokenizer_texts(data);
    if texts.is_empty() {
        return Err(Error::invalid(
            "There is no text to train the run's tokenizer on: the gold and prompt sets are empty",
        ));
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let split = match c.teacher.tokenizer_split {
        None | Some(TokenizerSplit::Digits) => BpeSplit::Digits,
        Some(TokenizerSplit::Words) => BpeSplit::DigitsThenWords,
    };
    recipe::train_tokenizer(&refs, c.teacher.vocab_size, split)
}

/// Training examples from gold rows, and the rows left out and why.
pub(crate) struct GoldExamples {
    pub(crate) examples: Vec<Example>,
    /// Rows without a reference.
    no_reference: usize,
    /// Rows longer than the model's positions.
    too_long: usize,
    /// The longest row, in tokens.
    longest: usize,
}

impl GoldExamples {
    pub(crate) fn skipped(&self) -> usize {
        self.no_reference + self.too_long
    }

    /// Why there is nothing to learn from, naming the real culprit: the missing answers or the
    /// model's positions (`positions_key` is the config key that sets them, when one does).
    pub(crate) fn nothing_to_learn(
        &self,
        rows: usize,
        who: &str,
        positions_key: Option<&str>,
        limit: usize,
    ) -> Error {
        if rows == 0 {
            return Error::invalid(format!(
                "The gold set is empty, so {who} has nothing to learn from\n\nhint: check the \
                 data stage's summary: its filters may have removed every row"
            ));
        }
        if self.too_long > 0 {
            let hint = match positions_key {
                Some(key) => format!("raise `{key}` to at least {}", self.longest),
                None => "use shorter prompts and answers, or a model with more positions".into(),
            };
            return Error::invalid(format!(
                "None of the {rows} gold rows fits {who}: {} are longer than its {limit} positions \
                 (the longest is {} tokens, prompt and answer together){}\n\nhint: {hint}",
                self.too_long,
                self.longest,
                if self.no_reference > 0 {
                    format!(", and {} have no reference", self.no_reference)
                } else {
                    String::new()
                },
            ));
        }
        Error::invalid(format!(
            "The gold set has no rows with a reference, so {who} has nothing to learn from\n\n\
             hint: map the answer column with `data.gold.map = {{ reference = \"COLUMN\" }}`, or \
             use `data.task = \"dates\"`"
        ))
    }
}

/// Examples from (prompt, answer) pairs; pairs without an answer or longer than `max_positions`
/// are counted, not kept.
pub(crate) fn gold_examples(
    tok: &Tokenizer,
    gold: &[Sample],
    max_positions: usize,
) -> Result<GoldExamples> {
    let mut out = GoldExamples {
        examples: Vec::with_capacity(gold.len()),
        no_reference: 0,
        too_long: 0,
        longest: 0,
    };
    for s in gold {
        match &s.reference {
            Some(r) => {
                let e = recipe::example(tok, &s.prompt, r, None)?;
                out.longest = out.longest.max(e.ids.len());
                if e.ids.len() <= max_positions {
                    out.examples.push(e);
                } else {
                    out.too_long += 1;
                }
            }
            None => out.no_reference += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::hashes::{baseline_hash, student_hash, teacher_hash};
    use datasets::config::BuiltinTask;

    use datasets::tasks::{Sizes, generate};

    fn config(overrides: &[&str]) -> Config {
        let overrides: Vec<_> = overrides
            .iter()
            .map(|o| datasets::config::Override::parse(o).unwrap())
            .collect();
        Config::from_str_with(
            "[run]\nname = \"t\"\n[data]\ntask = \"dates\"\n",
            "t.toml",
            &overrides,
        )
        .unwrap()
    }

    fn data(gold: usize) -> RunData {
        let sets = generate(
            BuiltinTask::Dates,
            5,
            Sizes {
                gold,
                prompts: 0,
                eval: 0,
                review: 0,
                slice_share: 0.0,
            },
        );
        RunData {
            gold: sets.gold,
            prompts: Vec::new(),
            eval: EvalSet::default(),
            validation: EvalSet::default(),
        }
    }

    #[test]
    fn the_students_learn_from_the_first_gold_rows_and_the_teacher_from_all() {
        let d = data(10);
        let all = config(&[]);
        assert_eq!(students_gold(&all, &d).len(), 10);
        let some = config(&["distill.gold_rows=4"]);
        let gold = students_gold(&some, &d);
        assert_eq!(gold.len(), 4);
        assert_eq!(gold[3].id, d.gold[3].id);
        // More rows asked for than there are: every row.
        assert_eq!(
            students_gold(&config(&["distill.gold_rows=99"]), &d).len(),
            10
        );
        // The baseline (which reads no other `[distill]` key but its training) is redone when
        // its rows change; the teacher is not.
        assert_ne!(baseline_hash(&all), baseline_hash(&some));
        assert_eq!(teacher_hash(&all), teacher_hash(&some));
        assert_ne!(student_hash(&all), student_hash(&some));
    }
}
