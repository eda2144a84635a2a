//! Built-in tasks: data the project makes itself, deterministically from a seed, so the embedded
//! default runs with no downloads.
//!
//! A task makes three sets, as any user's data would come: a **gold** set (prompt + reference)
//! that trains the local teacher, a larger **prompt** pool without answers that the teacher
//! labels, and an **eval** set with references. Nothing downstream knows which task made them.

pub mod dates;

use crate::config::BuiltinTask;
use crate::record::{Sample, now_micros};

/// A small deterministic generator (SplitMix64): the data must not change when a dependency
/// changes its RNG, so the generator is ours.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6A09_E667_F3BC_C908)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for data generation, and stable.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A number in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The three sets of a task.
#[derive(Debug, Clone)]
pub struct TaskSets {
    /// Prompt + reference, for training the teacher.
    pub gold: Vec<Sample>,
    /// Prompts only, for the teacher to label.
    pub prompts: Vec<Sample>,
    /// Prompt + reference, held out.
    pub eval: Vec<Sample>,
    /// Prompt + reference, held out from training and eval alike: what the student answers for
    /// expert review.
    pub review: Vec<Sample>,
}

/// Who answers a slice row: the generalist (the teacher's gold) misreads it; the references
/// that measure and the experts' answers are right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SliceAnswers {
    Misread,
    Right,
}

fn make(
    rng: &mut Rng,
    n: usize,
    with_reference: bool,
    slice: (f64, SliceAnswers),
    template: &str,
    now: i64,
) -> Vec<Sample> {
    let (share, answers) = slice;
    (0..n)
        .map(|_| {
            // No draw when there is no slice: the sets stay the rows they were without one.
            let in_slice = share > 0.0 && rng.unit() < share;
            let mut s = if in_slice {
                let date = dates::random_slice_date(rng);
                let surface = dates::slice_surface(rng, date);
                let mut s = Sample::from_prompt(dates::slice_prompt(&surface));
                if with_reference {
                    let said = match answers {
                        SliceAnswers::Misread => dates::misread(date),
                        SliceAnswers::Right => date,
                    };
                    s.reference = Some(dates::answer(said));
                }
                s.slice = Some(dates::SLICE.to_string());
                s
            } else {
                let date = dates::random_date(rng);
                let surface = dates::surface(rng, date);
                let mut s = Sample::from_prompt(dates::prompt(&surface));
                if with_reference {
                    s.reference = Some(dates::answer(date));
                }
                s
            };
            s.template = Some(template.to_string());
            s.created_at = now;
            s
        })
        .collect()
}

/// How many rows of each set a task makes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    /// Gold rows.
    pub gold: usize,
    /// Prompt-pool rows.
    pub prompts: usize,
    /// Eval rows.
    pub eval: usize,
    /// Review rows.
    pub review: usize,
    /// The share of each set's rows in the task's slice (0 for none): the gold set answers them
    /// as a generalist would, wrongly; eval and review references are right.
    pub slice_share: f64,
}

/// Makes a task's sets from a seed; the same seed gives the same rows (but `created_at`).
pub fn generate(task: BuiltinTask, seed: u64, sizes: Sizes) -> TaskSets {
    let Sizes {
        gold,
        prompts,
        eval,
        review,
        slice_share,
    } = sizes;
    let (wrong, right) = (
        (slice_share, SliceAnswers::Misread),
        (slice_share, SliceAnswers::Right),
    );
    let now = now_micros();
    match task {
        BuiltinTask::Dates => {
            // Independent streams per set, so growing one set does not reshuffle the others.
            let template = "dates-v1";
            TaskSets {
                gold: make(
                    &mut Rng::new(seed.wrapping_mul(3).wrapping_add(1)),
                    gold,
                    true,
                    wrong,
                    template,
                    now,
                ),
                prompts: make(
                    &mut Rng::new(seed.wrapping_mul(3).wrapping_add(2)),
                    prompts,
                    false,
                    right,
                    template,
                    now,
                ),
                eval: make(
                    &mut Rng::new(seed.wrapping_mul(3).wrapping_add(3)),
                    eval,
                    true,
                    right,
                    template,
                    now,
                ),
                // A stream of its own (a constant no `3·seed + k` reaches for small seeds).
                review: make(
                    &mut Rng::new(seed ^ 0x5EED_0F4E_71E3_0000),
                    review,
                    true,
                    right,
                    template,
                    now,
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(gold: usize, prompts: usize, eval: usize) -> Sizes {
        Sizes {
            gold,
            prompts,
            eval,
            review: 4,
            slice_share: 0.0,
        }
    }

    /// With a slice, a share of every set is in it: the gold set misreads those dates (month
    /// first), eval and review references read them right (day first); the rest is unchanged.
    #[test]
    fn the_slice_is_wrong_in_gold_and_right_in_eval_and_review() {
        let with = Sizes {
            slice_share: 0.3,
            ..sizes(400, 400, 400)
        };
        let s = generate(BuiltinTask::Dates, 7, with);
        let in_slice = |rows: &[Sample]| {
            rows.iter()
                .filter(|r| r.slice.as_deref() == Some(dates::SLICE))
                .count()
        };
        for rows in [&s.gold, &s.prompts, &s.eval] {
            let n = in_slice(rows);
            assert!((80..=160).contains(&n), "{n} of 400 in the slice");
        }
        // `d/m/y`: the reference's month is the surface's second number in eval, its first in
        // gold.
        let month_read = |r: &Sample| -> (u32, u32) {
            let surface = r
                .prompt
                .lines()
                .last()
                .unwrap()
                .trim_start_matches("Date: ");
            let parts: Vec<u32> = surface.split('/').map(|p| p.parse().unwrap()).collect();
            let reference = r.reference.as_deref().unwrap();
            (parts[1], reference[5..7].parse().unwrap())
        };
        for r in s.eval.iter().chain(&s.review).filter(|r| r.slice.is_some()) {
            let (second, month) = month_read(r);
            assert_eq!(second, month, "{r:?}");
        }
        for r in s.gold.iter().filter(|r| r.slice.is_some()) {
            let (second, month) = month_read(r);
            assert_ne!(second, month, "{r:?}");
            assert!(r.prompt.contains(dates::SLICE_NOTE));
        }
        // Without a slice the sets are what they were.
        let without = generate(BuiltinTask::Dates, 7, sizes(400, 400, 400));
        assert!(without.gold.iter().all(|r| r.slice.is_none()));
    }

    #[test]
    fn the_same_seed_gives_the_same_sets() {
        let a = generate(BuiltinTask::Dates, 5, sizes(10, 20, 5));
        let b = generate(BuiltinTask::Dates, 5, sizes(10, 20, 5));
        let ids = |s: &[Sample]| s.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a.gold), ids(&b.gold));
        assert_eq!(ids(&a.prompts), ids(&b.prompts));
        assert_eq!(ids(&a.eval), ids(&b.eval));
        let c = generate(BuiltinTask::Dates, 6, sizes(10, 20, 5));
        assert_ne!(ids(&a.gold), ids(&c.gold));
    }

    #[test]
    fn gold_and_eval_have_references_and_prompts_do_not() {
        let s = generate(BuiltinTask::Dates, 1, sizes(5, 5, 5));
        assert!(
            s.gold
                .iter()
                .all(|x| x.reference.as_deref().is_some_and(|r| r.len() == 10))
        );
        assert!(s.eval.iter().all(|x| x.reference.is_some()));
        assert!(s.prompts.iter().all(|x| x.reference.is_none()));
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(0);
        for n in [1, 2, 7, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
    }
}
