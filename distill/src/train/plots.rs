//! The plots every training stage leaves: loss (log scale, train loss smoothed) and exact match
//! against steps.

use datasets::rundir::layout;
use std::path::Path;

use crate::Result;
use crate::plot::{Chart, Series};
use crate::train::StepLog;

/// What the plots and the report call a training stage.
pub fn stage_label(stage: &str) -> String {
    match stage {
        layout::TEACHER => "teacher".into(),
        layout::STUDENT => "distilled student".into(),
        layout::BASELINE => "gold-only student".into(),
        layout::FINETUNED => "distilled+expert student".into(),
        other => match other.strip_prefix(&format!("{}-", layout::STUDENT)) {
            Some(name) => format!("distilled student ({name})"),
            None => other.into(),
        },
    }
}

/// The plots every training stage writes: the file, and what it shows.
pub const PLOTS: [(&str, &str); 2] = [
    ("loss.svg", "loss"),
    ("exact_match.svg", "exact match on the eval set"),
];

/// The title of a stage's plot; the report captions the plot with the same words.
pub fn plot_title(stage: &str, what: &str) -> String {
    format!("{}: {what}", stage_label(stage))
}

/// How much of the running average each training-loss point keeps (TensorBoard's default
/// smoothing): per-batch loss is noisy, and the trend is what a reader looks for.
pub(crate) const LOSS_SMOOTHING: f64 = 0.9;

/// `loss.svg` (train and eval loss, log scale, train smoothed with its raw points faint behind)
/// and `exact_match.svg` (eval exact match) in `dir`.
pub fn write_plots(stage: &str, log: &[StepLog], dir: &Path) -> Result<()> {
    let points = |f: &dyn Fn(&StepLog) -> Option<f64>| -> Vec<(f64, f64)> {
        log.iter()
            .filter_map(|s| f(s).map(|v| (s.step as f64, v)))
            .collect()
    };
    let [(loss_file, loss_what), (em_file, em_what)] = PLOTS;
    let loss = Chart {
        title: plot_title(stage, loss_what),
        x_label: "step".into(),
        y_label: "loss (log scale)".into(),
        series: vec![
            Series::smoothed(
                format!("train (EMA {LOSS_SMOOTHING}, raw faint)"),
                points(&|s| Some(s.loss)),
                LOSS_SMOOTHING,
            ),
            Series::new("eval (CE)", points(&|s| s.eval_loss)),
        ],
        y_range: None,
        log_y: true,
    };
    let em = Chart {
        title: plot_title(stage, em_what),
        x_label: "step".into(),
        y_label: "exact match".into(),
        series: vec![Series::new("eval", points(&|s| s.eval_exact))],
        y_range: Some((0.0, 1.0)),
        log_y: false,
    };
    datasets::atomic::write_file(dir.join(loss_file), loss.to_svg().as_bytes())?;
    datasets::atomic::write_file(dir.join(em_file), em.to_svg().as_bytes())?;
    Ok(())
}
