//! The fused kernels of `kernels.rs` as burn operations, with their backward passes registered
//! in burn's autodiff graph, on the `flex` CPU backend.
//!
//! A burn backend extension: the trait below is implemented for `Flex` (forward only, for
//! inference) and for `Autodiff<Flex>` (forward, keeping what the backward pass needs). The model
//! calls the wrappers at the bottom; they fall back to the composed operations on any other
//! device, for other dtypes, and when `WORKBENCH_FUSED=0` is set (for benchmarks that compare the
//! two).

use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, BackendTensor, Dispatch, DispatchDevice, DispatchTensorKind, Flex,
    backend_extension,
};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use super::kernels::{self, AttnShape};

/// The fused operations. Every input is `f32`; the output has the input's shape.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// The dense projection `x · w`: `x: [rows, d_in]`, `w: [d_in, d_out]` → `[rows, d_out]`.
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Causal grouped-query attention with rotary embeddings on the packed projections
    /// `qkv: [b, s, (h + 2·kvh)·d]` (each row `q`, then `k`, then `v`), `cos, sin: [s, d]` →
    /// `[b, s, h·d]`.
    fn fused_attention(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        heads: usize,
        kv_heads: usize,
    ) -> FloatTensor<Self>;
    /// `silu(gate) · up`.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Per row of `x: [rows, n]`, `log softmax(row)[targets[row]]` → `[rows]`.
    fn fused_target_logprobs(x: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self>;
    /// `log_softmax` over the last dimension.
    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// RMSNorm over the last dimension with gain `w: [n]`.
    fn fused_rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().iter().copied().collect()
}

/// The tensor's values in order, copied only when the layout is not already contiguous.
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

fn tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}

fn attn_shape(qkv: &FlexTensor, heads: usize, kv_heads: usize) -> AttnShape {
    let d = dims(qkv);
    let per_row = heads + 2 * kv_heads;
    assert!(
        d.len() == 3 && d[2].is_multiple_of(per_row),
        "fused attention: qkv must be [b, s, (heads + 2·kv_heads)·d]"
    );
    AttnShape {
        batch: d[0],
        seq: d[1],
        heads,
        kv_heads,
        head_dim: d[2] / per_row,
    }
}

fn scale(shape: AttnShape) -> f32 {
    1.0 / (shape.head_dim as f32).sqrt()
}

/// Forward on plain tensors; with `keep_probs`, also the attention probabilities.
fn attention_forward(
    qkv: &FlexTensor,
    cos: &FlexTensor,
    sin: &FlexTensor,
    shape: AttnShape,
    keep_probs: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let (out, probs) = kernels::attention_forward(
        &values(qkv),
        (&values(cos), &values(sin)),
        shape,
        scale(shape),
        keep_probs,
    );
    let AttnShape {
        batch,
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    (
        tensor(out, vec![batch, seq, heads * head_dim]),
        probs.map(|p| tensor(p, vec![batch, heads, seq, seq])),
    )
}

fn linear_sizes(x: &FlexTensor, w: &FlexTensor) -> (usize, usize) {
    let (xd, wd) = (dims(x), dims(w));
    assert!(
        xd.len() == 2 && wd.len() == 2 && xd[1] == wd[0],
        "fused linear: x must be [rows, d_in] and w [d_in, d_out]"
    );
    (wd[0], wd[1])
}

fn linear_forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let (d_in, d_out) = linear_sizes(x, w);
    tensor(
        kernels::linear_forward(&values(x), &values(w), d_in, d_out),
        vec![dims(x)[0], d_out],
    )
}

fn target_logprobs_forward(x: &FlexTensor, targets: &[u32]) -> (FlexTensor, Vec<f32>) {
    let d = dims(x);
    assert_eq!(
        d.len(),
        2,
        "fused target log-probabilities: x must be [rows, n]"
    );
    let (out, lse) = kernels::target_logprobs_forward(&values(x), targets, d[1]);
    (tensor(out, vec![d[0]]), lse)
}

impl FusedOps for Flex {
    fn fused_linear(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        linear_forward(&x, &w)
    }

    fn fused_target_logprobs(x: FlexTensor, targets: Vec<u32>) -> FlexTensor {
        target_logprobs_forward(&x, &targets).0
    }

    fn fused_attention(
        qkv: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        heads: usize,
        kv_heads: usize,
    ) -> FlexTensor {
        let shape = attn_shape(&qkv, heads, kv_heads);
        attention_forward(&qkv, &cos, &sin, shape, false).0
    }

    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        tensor(
            kernels::swiglu_forward(&values(&gate), &values(&up)),
            dims(&gate),
        )
    }

    fn fused_log_softmax(x: FlexTensor) -> FlexTensor {
        let d = dims(&x);
        tensor(
            kernels::log_softmax_forward(&values(&x), *d.last().expect("a dimension")),
            d,
        )
    }

    fn fused_rms_norm(x: FlexTensor, w: FlexTensor, eps: f64) -> FlexTensor {
        tensor(
            kernels::rms_norm_forward(&values(&x), &values(&w), eps as f32).0,
            dims(&x),
        )
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    /// x, w.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w) = ops.state;
        let sizes = linear_sizes(&x, &w);
        let (dx, dw) = kernels::linear_backward(
            &values(&x),
            &values(&w),
            &values(&dy),
            sizes,
            (node_x.is_some(), node_w.is_some()),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, dims(&x)));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, tensor(dw, dims(&w)));
        }
    }
}

#[derive(Debug)]
struct TargetLogprobsBackward;

impl Backward<Flex, 1> for TargetLogprobsBackward {
    /// The logits, the targets, each row's log-sum-exp.
    type State = (FlexTensor, Vec<u32>, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (x, targets, lse) = ops.state;
        if let Some(node) = node {
            let d = dims(&x);
            let dx =
                kernels::target_logprobs_backward(&values(&x), &targets, &lse, &values(&g), d[1]);
            grads.register::<Flex>(node.id, tensor(dx, d));
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    /// qkv, cos, sin, probabilities, sizes.
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, AttnShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let (qkv, cos, sin, probs, shape) = ops.state;
        if let Some(node) = node {
            let dqkv = kernels::attention_backward(
                &values(&qkv),
                (&values(&cos), &values(&sin)),
                &values(&probs),
                &values(&dout),
                shape,
                scale(shape),
            );
            grads.register::<Flex>(node.id, tensor(dqkv, dims(&qkv)));
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_gate, node_up] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let (gate, up) = ops.state;
        let (dg, du) = kernels::swiglu_backward(&values(&gate), &values(&up), &values(&dout));
        let d = dims(&gate);
        if let Some(node) = node_gate {
            grads.register::<Flex>(node.id, tensor(dg, d.clone()));
        }
        if let Some(node) = node_up {
            grads.register::<Flex>(node.id, tensor(du, d));
        }
    }
}

#[derive(Debug)]
struct LogSoftmaxBackward;

impl Backward<Flex, 1> for LogSoftmaxBackward {
    /// The output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let y = ops.state;
        if let Some(node) = node {
            let d = dims(&y);
            let n = *d.last().expect("a dimension");
            let dx = kernels::log_softmax_backward(&values(&y), &values(&dy), n);
            grads.register::<Flex>(node.id, tensor(dx, d));
        }
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// x, w, each row's 1/rms.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w, inv) = ops.state;
        let (dx, dw) = kernels::rms_norm_backward(&values(&x), &values(&w), &inv, &values(&dy));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, dims(&x)));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, dims(&w)));
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [x.node(), w.node()];
        let (x, w) = (x.into_primitive(), w.into_primitive());
        let out = linear_forward(&x, &w);
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, w), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_attention(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        heads: usize,
        kv_heads: usize,
    ) -> FloatTensor<Self> {
        let nodes = [qkv.node()];
        let qkv = qkv.into_primitive();
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let shape = attn_shape(&qkv, heads, kv_heads);
        match AttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) = attention_forward(&qkv, &cos, &sin, shape, true);
                let probs = probs.expect("probabilities were asked for");
                prep.finish((qkv, cos, sin, probs, shape), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(attention_forward(&qkv, &cos, &sin, shape, false).0)
            }
        }
    }

    fn fused_target_logprobs(x: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let x = x.into_primitive();
        let (out, lse) = target_logprobs_forward(&x, &targets);
        match TargetLogprobsBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, targets, lse), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [gate.node(), up.node()];
        let (gate, up) = (gate.into_primitive(), up.into_primitive());
        let out = Flex::fused_swiglu(gate.clone(), up.clone());
        match SwigluBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((gate, up), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let out = Flex::fused_log_softmax(x.into_primitive());
        match LogSoftmaxBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(out.clone(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let nodes = [x.node(), w.node()];
        let (x, w) = (x.into_primitive(), w.into_primitive());
        let (out, inv) = kernels::rms_norm_forward(&values(&x), &values(&w), eps as f32);
        let out = tensor(out, dims(&x));
        match RmsNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, w, inv), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// The tensor's values as a contiguous `f32` flex tensor: its own buffer when it already is one
/// (no copy), a contiguous copy of a strided flex tensor, or `None` on another backend or dtype.
pub fn host_f32<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    match t.clone().into_dispatch().kind {
        DispatchTensorKind::Flex(BackendTensor::Float(f)) if f.as_slice::<f32>().is_some() => {
            Some(f)
        }
        DispatchTensorKind::Flex(BackendTensor::Float(f)) => Some(f.to_contiguous()),
        _ => None,
    }
}

/// Whether the fused kernels serve tensors on `device` of `dtype`: the flex CPU backend, `f32`,
/// unless `WORKBENCH_FUSED=0`.
pub fn available(device: &Device, dtype: DType) -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    let off = *OFF.get_or_init(|| std::env::var("WORKBENCH_FUSED").is_ok_and(|v| v.trim() == "0"));
    !off && dtype == DType::F32
        && matches!(
            device.as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
}

/// See [`FusedOps::fused_linear`]; the caller checks [`available`].
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_linear(
        x.into_dispatch(),
        w.into_dispatch(),
    ))
}

/// `log p(targets)` under `logits`: `[b, t, n]` and `[b, t]` → `[b, t]`, fused where
/// [`available`] (one pass forward, one backward, no `[b, t, n]` log-probabilities), else burn's
/// `log_softmax` and `gather`. Every target must be below `n`.
pub fn target_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    let [b, t, n] = logits.dims();
    if !available(&logits.device(), logits.dtype()) {
        let lq = log_softmax(logits);
        return lq.gather(2, targets.unsqueeze_dim::<3>(2)).reshape([b, t]);
    }
    let ids: Vec<u32> = targets
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("integer targets")
        .into_iter()
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        .collect();
    let rows = <Dispatch as FusedOps>::fused_target_logprobs(
        logits.reshape([b * t, n]).into_dispatch(),
        ids,
    );
    Tensor::<1>::from_dispatch(rows).reshape([b, t])
}

/// See [`FusedOps::fused_attention`]; the caller checks [`available`].
pub fn attention(
    qkv: Tensor<3>,
    cos: Tensor<2>,
    sin: Tensor<2>,
    heads: usize,
    kv_heads: usize,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        qkv.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        heads,
        kv_heads,
    ))
}

/// `silu(gate) · up`: fused where [`available`], else burn's.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if available(&gate.device(), gate.dtype()) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_swiglu(
            gate.into_dispatch(),
            up.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::silu(gate) * up
    }
}

/// `log_softmax` over the last dimension: fused where [`available`], else burn's.
pub fn log_softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if available(&x.device(), x.dtype()) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_log_softmax(x.into_dispatch()))
    } else {
        burn::tensor::activation::log_softmax(x, D - 1)
    }
}

/// See [`FusedOps::fused_rms_norm`]; the caller checks [`available`].
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: Tensor<1>, eps: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(
        x.into_dispatch(),
        w.into_dispatch(),
        eps,
    ))
}

#[cfg(test)]
mod tests;
