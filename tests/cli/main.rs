//! End-to-end tests of the `workbench` binary: what a user types, what they see, what is on disk.

#[path = "../common/mod.rs"]
mod common;

mod annotate;
mod bad_input;
mod config;
mod crash;
mod datasets;
mod distill;
mod finetune;
mod generate;
mod interop;
mod model;
mod run;
mod units;
