//! Training examples as token ids, and batches of them as tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use datasets::TopLogprob;

/// One training sequence: prompt tokens then completion tokens; only the completion is learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Prompt then completion.
    pub ids: Vec<u32>,
    /// How many of `ids` are the prompt.
    pub prompt_len: usize,
    /// The teacher's top-k at each completion token, when the set has it.
    pub topk: Option<Vec<Vec<TopLogprob>>>,
    /// A preference pair's rejected completion (token ids after the same prompt); the completion
    /// in `ids` is then the chosen one.
    pub rejected: Option<Vec<u32>>,
    /// How much each completion token counts in the loss (1 each when `None`): the tokens an
    /// expert corrected count more.
    pub weights: Option<Vec<f32>>,
}

impl Example {
    /// Completion tokens (the positions that count).
    pub fn completion_len(&self) -> usize {
        self.ids.len() - self.prompt_len
    }

    /// The rejected side of a preference pair as an example of its own (prompt, then the rejected
    /// completion).
    pub fn rejected_example(&self) -> Option<Example> {
        let rejected = self.rejected.as_ref()?;
        let mut ids = self.ids[..self.prompt_len].to_vec();
        ids.extend_from_slice(rejected);
        Some(Example {
            ids,
            prompt_len: self.prompt_len,
            topk: None,
            rejected: None,
            weights: None,
        })
    }
}

/// A batch on a device. Position `t` of `input` predicts `targets[t]`; `mask` is 1 on completion
/// targets.
pub struct Batch {
    /// `[batch, positions]`.
    pub input: Tensor<2, Int>,
    /// `[batch, positions]`.
    pub targets: Tensor<2, Int>,
    /// `[batch, positions]`: a completion token's weight (1.0 unless the example weighs its
    /// tokens), 0 elsewhere.
    pub mask: Tensor<2>,
    /// The teacher's top-k per target position: ids, logprobs and validity, `[batch, positions,
    /// k]`; `None` when no example has one.
    pub topk: Option<(Tensor<3, Int>, Tensor<3>, Tensor<3>)>,
    /// Completion tokens in the batch.
    pub tokens: usize,
}

/// Builds a right-padded batch (`pad` fills the tail; masked out). `k` is the top-k width (the
/// widest row's when 0).
pub fn batch(examples: &[&Example], pad: u32, device: &Device) -> Batch {
    let b = examples.len();
    let len = examples
        .iter()
        .map(|e| e.ids.len())
        .max()
        .unwrap_or(1)
        .max(2)
        - 1;
    let mut input = vec![pad as i64; b * len];
    let mut targets = vec![pad as i64; b * len];
    let mut mask = vec![0f32; b * len];
    let k = examples
        .iter()
        .filter_map(|e| e.topk.as_ref())
        .flat_map(|t| t.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    let with_topk = k > 0;
    let mut top_ids = vec![0i64; if with_topk { b * len * k } else { 0 }];
    let mut top_lp = vec![0f32; top_ids.len()];
    let mut top_valid = vec![0f32; top_ids.len()];
    let mut tokens = 0;
    for (i, e) in examples.iter().enumerate() {
        for t in 0..e.ids.len().saturating_sub(1) {
            input[i * len + t] = e.ids[t] as i64;
            targets[i * len + t] = e.ids[t + 1] as i64;
            if t + 1 >= e.prompt_len {
                mask[i * len + t] = e
                    .weights
                    .as_ref()
                    .and_then(|w| w.get(t + 1 - e.prompt_len).copied())
                    .unwrap_or(1.0);
                tokens += 1;
                if let Some(top) = e.topk.as_ref().and_then(|v| v.get(t + 1 - e.prompt_len)) {
                    for (j, entry) in top.iter().take(k).enumerate() {
                        let at = (i * len + t) * k + j;
                        top_ids[at] = entry.id as i64;
                        top_lp[at] = entry.logprob;
                        top_valid[at] = 1.0;
                    }
                }
            }
        }
    }
    let topk = with_topk.then(|| {
        (
            Tensor::from_data(TensorData::new(top_ids, [b, len, k]), device),
            Tensor::from_data(TensorData::new(top_lp, [b, len, k]), device),
            Tensor::from_data(TensorData::new(top_valid, [b, len, k]), device),
        )
    });
    Batch {
        input: Tensor::from_data(TensorData::new(input, [b, len]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, len]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, len]), device),
        topk,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_shift_by_one_and_only_completions_count() {
        let a = Example {
            ids: vec![5, 6, 7, 8],
            prompt_len: 2,
            topk: Some(vec![
                vec![TopLogprob {
                    id: 7,
                    logprob: -0.1,
                }],
                vec![TopLogprob {
                    id: 8,
                    logprob: -0.2,
                }],
            ]),
            rejected: None,
            weights: None,
        };
        let b = Example {
            ids: vec![9, 10, 11],
            prompt_len: 2,
            topk: None,
            rejected: None,
            weights: None,
        };
        let batch = batch(&[&a, &b], 0, &crate::backend::cpu());
        let v = |t: Tensor<2, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(v(batch.input), vec![5, 6, 7, 9, 10, 0]);
        assert_eq!(v(batch.targets), vec![6, 7, 8, 10, 11, 0]);
        assert_eq!(
            batch.mask.into_data().try_to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(batch.tokens, 3);
        let (ids, lp, valid) = batch.topk.unwrap();
        assert_eq!(
            ids.into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![0, 7, 8, 0, 0, 0]
        );
        assert_eq!(
            valid.into_data().try_to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(lp.into_data().try_to_vec::<f32>().unwrap()[2], -0.2);
    }
}
