//! Inter-annotator agreement for nominal labels, as reported by `workbench annotate stats`.
//!
//! When several experts review the same items, their agreement says how far their labels can be
//! trusted as training signal: raw percent agreement overstates it, because two annotators who
//! pick labels at random still agree some of the time. Both statistics here correct for that
//! chance agreement, so 1 means perfect agreement, 0 means agreement no better than chance, and
//! negative values mean systematic disagreement.
//!
//! The labels are treated as **nominal**: categories with no order and no distance between them
//! (accept / reject / edit, an error category, a preferred answer). Any two different labels count
//! as one full disagreement; "reject" is not closer to "edit" than to "accept". Labels are only
//! ever compared for equality (hashed, never cloned), so any `Eq + Hash` type works.
//!
//! - [`cohen_kappa`]: Cohen's kappa, for exactly two annotators who both labelled every item.
//!   `kappa = (p_o - p_e) / (1 - p_e)`, with `p_o` the observed fraction of items on which they
//!   agree and `p_e = sum_c p1_c * p2_c` the agreement expected from each annotator's own label
//!   proportions (`p1_c`, `p2_c`).
//! - [`krippendorff_alpha`]: Krippendorff's alpha with the nominal metric, for any number of
//!   annotators and missing labels (not every annotator labels every item). It uses the
//!   coincidence-matrix form (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011):
//!   `alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c * n_k`, where
//!   `o_ck = sum_u (number of c-k pairs of values in unit u) / (m_u - 1)` over the units with
//!   `m_u >= 2` values, `n_c = sum_k o_ck` is the number of pairable values with label `c` and
//!   `n = sum_c n_c` the total number of pairable values. Unlike kappa it pools all annotators'
//!   labels to estimate chance, and includes a small-sample correction (the `n - 1`). Krippendorff
//!   suggests relying on data with `alpha >= 0.800` and drawing only tentative conclusions for
//!   `0.667 <= alpha < 0.800`.
//!
//! Both return `None` when the statistic is undefined (no data, or only one label in play so that
//! chance agreement is already perfect) rather than a NaN or an arbitrary value.

use std::collections::HashMap;
use std::hash::Hash;

/// Cohen's kappa for two annotators over the same items.
///
/// `pairs` holds one `(label of annotator 1, label of annotator 2)` per item. Labels are nominal:
/// only equality matters.
///
/// Returns `None` when `pairs` is empty, and when the expected (chance) agreement is 1, which
/// happens exactly when both annotators used one and the same label for every item: kappa is then
/// `0 / 0`, undefined. (If only one annotator is constant, kappa is defined and equals 0.)
/// Otherwise the value lies in `[-1, 1]`.
pub fn cohen_kappa<L: Eq + Hash + Clone>(pairs: &[(L, L)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    // Per label: how many items each annotator gave it.
    let mut marginals: HashMap<&L, (u128, u128)> = HashMap::new();
    let mut agreed: u128 = 0;
    for (first, second) in pairs {
        marginals.entry(first).or_default().0 += 1;
        marginals.entry(second).or_default().1 += 1;
        if first == second {
            agreed += 1;
        }
    }
    let n = pairs.len() as u128;
    // In counts rather than proportions, so the degenerate case is detected exactly:
    // p_o = agreed / n, p_e = expected / n^2, kappa = (n * agreed - expected) / (n^2 - expected).
    let expected: u128 = marginals.values().map(|&(a, b)| a * b).sum();
    let total = n * n;
    if expected == total {
        return None;
    }
    let numerator = (n * agreed) as f64 - expected as f64;
    let denominator = (total - expected) as f64;
    Some(numerator / denominator)
}

/// Krippendorff's alpha with the nominal metric, for any number of annotators with missing values.
///
/// `units` holds, for each item, the labels given by the annotators who labelled it (any count, in
/// any order; who gave which label does not matter). Units with fewer than 2 labels cannot be
/// paired and are left out, as in Krippendorff's definition.
///
/// Returns `None` when there are fewer than 2 pairable values in total (no unit has 2 labels), and
/// when the expected disagreement is 0 because all pairable values carry one and the same label:
/// alpha is then `0 / 0`, undefined. Otherwise the value is at most 1 (perfect agreement), 0 at
/// chance level and negative for systematic disagreement.
pub fn krippendorff_alpha<L: Eq + Hash + Clone>(units: &[Vec<L>]) -> Option<f64> {
    // n_c: pairable values per label, over the units with at least 2 values.
    let mut label_totals: HashMap<&L, u128> = HashMap::new();
    // sum_{c != k} o_ck: each unit contributes its ordered pairs of different values,
    // m_u^2 - sum_c n_uc^2, weighted by 1 / (m_u - 1).
    let mut observed_disagreement = 0.0_f64;
    let mut unit_counts: HashMap<&L, u128> = HashMap::new();
    for unit in units {
        let m = unit.len() as u128;
        if m < 2 {
            continue;
        }
        unit_counts.clear();
        for label in unit {
            *unit_counts.entry(label).or_default() += 1;
        }
        let same: u128 = unit_counts.values().map(|&c| c * c).sum();
        observed_disagreement += (m * m - same) as f64 / (m - 1) as f64;
        for (&label, &count) in &unit_counts {
            *label_totals.entry(label).or_default() += count;
        }
    }
    let n: u128 = label_totals.values().sum();
    if n < 2 {
        return None;
    }
    // sum_{c != k} n_c n_k = n^2 - sum_c n_c^2, exact in integers.
    let expected_disagreement = n * n - label_totals.values().map(|&c| c * c).sum::<u128>();
    if expected_disagreement == 0 {
        return None;
    }
    Some(1.0 - (n - 1) as f64 * observed_disagreement / expected_disagreement as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: Option<f64>, expected: f64, tolerance: f64) {
        let actual = actual.expect("statistic should be defined");
        assert!(
            (actual - expected).abs() <= tolerance,
            "got {actual}, expected {expected} (tolerance {tolerance})"
        );
    }

    /// Repeats `pair` `count` times.
    fn repeat(
        pair: (&'static str, &'static str),
        count: usize,
    ) -> Vec<(&'static str, &'static str)> {
        vec![pair; count]
    }

    /// Two annotators on 10 items over a, b, c; the confusion matrix (rows annotator 1) is
    /// a: 3 1 0 | b: 0 2 1 | c: 1 0 2.
    fn three_label_pairs() -> Vec<(&'static str, &'static str)> {
        [
            repeat(("a", "a"), 3),
            repeat(("a", "b"), 1),
            repeat(("b", "b"), 2),
            repeat(("b", "c"), 1),
            repeat(("c", "a"), 1),
            repeat(("c", "c"), 2),
        ]
        .concat()
    }

    /// Wikipedia's Cohen's kappa example: 50 items, 20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no.
    fn wikipedia_pairs() -> Vec<(&'static str, &'static str)> {
        [
            repeat(("yes", "yes"), 20),
            repeat(("yes", "no"), 5),
            repeat(("no", "yes"), 10),
            repeat(("no", "no"), 15),
        ]
        .concat()
    }

    #[test]
    fn kappa_textbook_example() {
        // p_o = 35/50 = 0.7; annotator 1 says yes 25/50, annotator 2 says yes 30/50;
        // p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
        close(cohen_kappa(&wikipedia_pairs()), 0.4, 1e-12);
    }

    #[test]
    fn kappa_three_labels() {
        // Confusion matrix (rows annotator 1, columns annotator 2) over a, b, c:
        //   a: 3 1 0 | b: 0 2 1 | c: 1 0 2, n = 10.
        // p_o = 7/10; marginals 1: a 4, b 3, c 3; 2: a 4, b 3, c 3;
        // p_e = (16 + 9 + 9) / 100 = 0.34; kappa = 0.36 / 0.66 = 6/11.
        let pairs = three_label_pairs();
        close(cohen_kappa(&pairs), 6.0 / 11.0, 1e-12);
    }

    #[test]
    fn kappa_perfect_agreement_is_one() {
        let pairs = [("a", "a"), ("b", "b"), ("c", "c"), ("a", "a")];
        assert_eq!(cohen_kappa(&pairs), Some(1.0));
    }

    #[test]
    fn kappa_chance_agreement_is_zero() {
        // p_o = 0.5, p_e = 0.5 * 0.5 + 0.5 * 0.5 = 0.5.
        let pairs = [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")];
        assert_eq!(cohen_kappa(&pairs), Some(0.0));
        // One constant annotator: p_o = p_e = share of "a" for annotator 2.
        let pairs = [("a", "a"), ("a", "b"), ("a", "a"), ("a", "c")];
        assert_eq!(cohen_kappa(&pairs), Some(0.0));
    }

    #[test]
    fn kappa_systematic_disagreement_is_negative() {
        // p_o = 0, p_e = 0.5; kappa = -0.5 / 0.5 = -1.
        let pairs = [("a", "b"), ("b", "a")];
        assert_eq!(cohen_kappa(&pairs), Some(-1.0));
    }

    #[test]
    fn kappa_degenerate_cases_are_none() {
        let empty: [(u8, u8); 0] = [];
        assert_eq!(cohen_kappa(&empty), None);
        // Both annotators constant on the same label: p_e = 1.
        assert_eq!(cohen_kappa(&[("a", "a"), ("a", "a"), ("a", "a")]), None);
        assert_eq!(cohen_kappa(&[(7, 7)]), None);
    }

    /// The reliability data of Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
    /// section C (also Wikipedia's example): 4 observers (rows) by 12 units (columns), `.` =
    /// missing, as printed there.
    fn krippendorff_2011_units() -> Vec<Vec<u8>> {
        let observers = [
            "1 2 3 3 2 1 4 1 2 . . .", // A
            "1 2 3 3 2 2 4 1 2 5 . 3", // B
            ". 3 3 3 2 3 4 2 2 5 1 .", // C
            "1 2 3 3 2 4 4 1 2 5 1 .", // D
        ];
        let rows: Vec<Vec<Option<u8>>> = observers
            .iter()
            .map(|row| row.split(' ').map(|value| value.parse().ok()).collect())
            .collect();
        assert!(rows.iter().all(|row| row.len() == 12));
        (0..12)
            .map(|unit| rows.iter().filter_map(|row| row[unit]).collect())
            .collect()
    }

    #[test]
    fn alpha_krippendorff_2011_nominal_example() {
        let units = krippendorff_2011_units();
        // Unit 12 has a single value and is not pairable; 40 pairable values remain.
        assert_eq!(units[11], vec![3]);
        assert_eq!(
            units
                .iter()
                .filter(|u| u.len() >= 2)
                .map(Vec::len)
                .sum::<usize>(),
            40
        );
        // Published: nominal alpha = 0.743.
        close(krippendorff_alpha(&units), 0.743, 1e-3);
        // Exactly: n_c = 9, 13, 10, 5, 3; sum_{c != k} n_c n_k = 1600 - 384 = 1216;
        // sum_{c != k} o_ck = 8: only units 2 [2,2,3,2], 6 [1,2,3,4] and 8 [1,1,2,1] disagree,
        // with 6, 12 and 6 ordered pairs of different values, each / (4 - 1): 2 + 4 + 2.
        // alpha = 1 - 39 * 8 / 1216 = 113/152 = 0.74342...
        close(krippendorff_alpha(&units), 113.0 / 152.0, 1e-12);
    }

    #[test]
    fn alpha_ignores_unpairable_units_and_label_order() {
        let units = krippendorff_2011_units();
        let reference = krippendorff_alpha(&units);
        let mut changed: Vec<Vec<u8>> = units
            .iter()
            .filter(|u| u.len() >= 2)
            .map(|u| u.iter().rev().copied().collect())
            .collect();
        changed.push(vec![]);
        changed.push(vec![9]);
        changed.reverse();
        close(krippendorff_alpha(&changed), reference.unwrap(), 1e-12);
    }

    #[test]
    fn alpha_two_annotators_without_missing_data() {
        // The Wikipedia kappa data as units of two values: n = 100 values,
        // n_yes = 25 + 30 = 55, n_no = 45; 15 disagreeing units contribute 2 / (2 - 1) each.
        // alpha = 1 - 99 * 30 / (10000 - 55^2 - 45^2) = 1 - 2970 / 4950 = 0.4.
        let units: Vec<Vec<&str>> = wikipedia_pairs()
            .into_iter()
            .map(|(a, b)| vec![a, b])
            .collect();
        close(krippendorff_alpha(&units), 0.4, 1e-12);

        // With two annotators and N items, alpha = 1 - (2N - 1) / (2N) * (1 - pi), with pi
        // Scott's pi (chance from the pooled labels). On the three-label data of
        // `kappa_three_labels`: p_o = 0.7, pooled shares a 8/20, b 6/20, c 6/20,
        // p_e = (64 + 36 + 36) / 400 = 0.34, pi = 0.36 / 0.66 = 6/11,
        // alpha = 1 - (19/20) * (5/11) = 1 - 19/44 = 25/44 (kappa is 6/11 there too, since both
        // annotators have the same marginals; alpha is slightly larger by the small-sample term).
        let pairs = three_label_pairs();
        let units: Vec<Vec<&str>> = pairs.iter().map(|&(a, b)| vec![a, b]).collect();
        close(krippendorff_alpha(&units), 25.0 / 44.0, 1e-12);
        close(cohen_kappa(&pairs), 6.0 / 11.0, 1e-12);
    }

    #[test]
    fn alpha_small_example_with_missing_data() {
        // Units [a, a, b], [a, b], [b] (the last not pairable). n_a = 3, n_b = 2, n = 5.
        // Observed: unit 1 has 9 - (4 + 1) = 4 ordered different pairs, / (3 - 1) = 2;
        // unit 2 has 4 - 2 = 2, / 1 = 2; total 4. Expected: 25 - 9 - 4 = 12.
        // alpha = 1 - 4 * 4 / 12 = -1/3.
        let units = vec![vec!["a", "a", "b"], vec!["a", "b"], vec!["b"]];
        close(krippendorff_alpha(&units), -1.0 / 3.0, 1e-12);
    }

    #[test]
    fn alpha_perfect_agreement_is_one() {
        let units = vec![
            vec!["a", "a", "a"],
            vec!["b", "b"],
            vec!["c", "c", "c", "c"],
            vec!["a"],
        ];
        assert_eq!(krippendorff_alpha(&units), Some(1.0));
    }

    #[test]
    fn alpha_degenerate_cases_are_none() {
        let empty: Vec<Vec<u8>> = vec![];
        assert_eq!(krippendorff_alpha(&empty), None);
        // No unit has two values: nothing is pairable.
        assert_eq!(
            krippendorff_alpha(&[vec![1], vec![2], vec![], vec![3]]),
            None
        );
        // Every pairable value carries the same label: no expected disagreement.
        assert_eq!(
            krippendorff_alpha(&[vec!["a", "a"], vec!["a", "a", "a"], vec!["b"]]),
            None
        );
    }
}
