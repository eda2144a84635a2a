//! Training: distillation losses, the loop, checkpoints that resume exactly.

pub mod loss;
