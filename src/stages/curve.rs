//! The learning curve (`runs/<name>/curve/`): what expert decisions buy, and what the queue's
//! order adds. The simulated expert spends the budget again from a fresh database, once in the
//! run's queue order and once in `random` order; after a third, two thirds and all of the budget,
//! the distilled student is fine-tuned (the run's `[finetune]` recipe) on the feedback so far
//! and scored on the eval set, overall and per slice. Zero decisions is the distilled student.

use anyhow::Result;
use datasets::config::{LoadedConfig, QueueOrder};
use datasets::rundir::{RunDir, layout};
use distill::train::job::Checkpoints;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::output::Output;

/// One point of the curve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    /// The queue order the decisions were taken in.
    pub order: String,
    /// Expert decisions spent (skips included, as the budget counts them).
    pub decisions: u64,
    /// Of those, corrections (the output was wrong and the expert wrote the answer).
    pub corrected: u64,
    /// Exact match on the eval set of the student fine-tuned on them.
    pub exact_match: f64,
    /// The same per slice (empty when the eval set has none).
    pub exact_match_by_slice: BTreeMap<String, f64>,
}

/// The curve as `curve.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Curve {
    /// The budget the points divide.
    pub budget: u64,
    /// Points in order: per queue order, by decisions.
    pub points: Vec<CurvePoint>,
}

/// The decisions at which the curve is measured: 0, a third, two thirds and all of `budget`.
pub fn curve_points(budget: u64) -> Vec<u64> {
    let mut points = vec![0, budget / 3, budget * 2 / 3, budget];
    points.dedup();
    points
}

/// The orders compared: the run's, then `random` (once when the run's is `random`).
pub fn curve_orders(order: QueueOrder) -> Vec<QueueOrder> {
    if order == QueueOrder::Random {
        vec![order]
    } else {
        vec![order, QueueOrder::Random]
    }
}

/// Measures the learning curve unless the config does not ask for it or it is up to date.
pub fn curve_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    let c = &loaded.config;
    if !c.annotate.curve {
        return Ok(());
    }
    let hash = {
        let keys = serde_json::json!({
            "finetune": distill::stages::hashes::finetune_hash(c, "curve"),
            "candidates": distill::candidates::candidates_hash(c),
            "annotate": { "order": c.annotate.order, "budget": c.annotate.budget },
            "eval": c.eval,
        });
        blake3::hash(keys.to_string().as_bytes()).to_hex()[..16].to_string()
    };
    if !super::must_run(
        out,
        run,
        layout::CURVE,
        "curve",
        &hash,
        "measuring it again",
    ) {
        return Ok(());
    }
    let stage = run.begin(layout::CURVE, &hash)?;
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    let synthetic_dir = run.stage_dir(layout::SYNTHETIC);
    let synthetic = if synthetic_dir.join("data").is_dir() {
        datasets::Set::open(&synthetic_dir)?.read_all::<datasets::Sample>(None)?
    } else {
        Vec::new()
    };
    let budget = c.annotate.budget;
    let (start_em, start_slices) = distill::evaluate::exact_match_of(
        c,
        &run.stage_dir(layout::STUDENT).join(layout::FINAL),
        &data.eval,
    )?;
    let steps = &c.eval.normalize;
    let same = |a: &str, b: &str| {
        datasets::config::Normalize::apply(steps, a) == datasets::config::Normalize::apply(steps, b)
    };
    let items = annotate::import::run_items(run.path())?;
    let mut points = Vec::new();
    for order in curve_orders(c.annotate.order) {
        let name = order.name().to_string();
        points.push(CurvePoint {
            order: name.clone(),
            decisions: 0,
            corrected: 0,
            exact_match: start_em,
            exact_match_by_slice: start_slices.clone(),
        });
        let db = stage.path().join(format!("{name}.db"));
        let mut store = annotate::Store::open(&db)?;
        annotate::import::set_queue_seed(&mut store, c.run.seed)?;
        annotate::import::import(&mut store, &items, &mut |_| {})?;
        annotate::simulated::review(&mut store, order, budget, &same)?;
        let decisions = store.decisions()?;
        for &k in &curve_points(budget)[1..] {
            let spent = &decisions[..(k as usize).min(decisions.len())];
            let (sft, preference) = annotate::feedback::rows(&store, spent)?;
            let model_dir = stage.path().join("model");
            let ck = Checkpoints {
                dir: stage.path().join("checkpoints"),
                hash: format!("{hash}-{name}-{k}"),
                require_resume: false,
                config_toml: c.to_toml(),
            };
            let bar = out.progress(
                &format!("curve ({name}, {k} decisions)"),
                "steps",
                Some(c.finetune.train.steps as u64),
            );
            let fit = distill::stages::finetune::finetune_student(
                loaded,
                run.path(),
                &data,
                &sft,
                &preference,
                &synthetic,
                &ck,
                &model_dir,
                run.config_hash(),
                false,
                &mut |s| bar.set_position(s.step as u64),
            );
            bar.finish_and_clear();
            fit?;
            let (em, slices) = distill::evaluate::exact_match_of(c, &model_dir, &data.eval)?;
            let corrected = spent
                .iter()
                .filter(|d| d.annotation.decision == datasets::Decision::Edit)
                .count() as u64;
            out.say(format!(
                "curve: {name} order, {} ({corrected} corrected) → exact match {:.1}%{}",
                datasets::text::count(spent.len() as u64, "decision"),
                100.0 * em,
                slice_text(&slices)
            ));
            points.push(CurvePoint {
                order: name.clone(),
                decisions: spent.len() as u64,
                corrected,
                exact_match: em,
                exact_match_by_slice: slices,
            });
            // The curve keeps numbers, not models: each would be as large as the student.
            std::fs::remove_dir_all(&model_dir)?;
            let _ = std::fs::remove_dir_all(&ck.dir);
        }
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(stage.path().join(format!("{name}.db{suffix}")));
        }
    }
    let curve = Curve { budget, points };
    write_curve(stage.path(), &curve)?;
    let dest = stage.dest().to_path_buf();
    stage.finish(serde_json::to_value(&curve)?)?;
    out.say(format!(
        "curve: exact match against decisions spent in `{}` (curve.md, curve.svg)",
        dest.display()
    ));
    Ok(())
}

fn slice_text(slices: &BTreeMap<String, f64>) -> String {
    if slices.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = slices
        .iter()
        .map(|(k, v)| format!("{k} {:.1}%", 100.0 * v))
        .collect();
    format!(" ({})", parts.join(", "))
}

/// The curve as a table: a row per number of decisions, a column per order (and per order and
/// slice).
pub fn table(curve: &Curve) -> distill::report::Table {
    let (orders, slices) = orders_and_slices(curve);
    let mut header = vec!["decisions".to_string()];
    for o in &orders {
        header.push(format!("{o}: all"));
        header.extend(slices.iter().map(|s| format!("{o}: {s}")));
    }
    let mut counts: Vec<u64> = curve.points.iter().map(|p| p.decisions).collect();
    counts.sort_unstable();
    counts.dedup();
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let rows = counts
        .into_iter()
        .map(|k| {
            let mut cells = vec![k.to_string()];
            for o in &orders {
                let p = curve
                    .points
                    .iter()
                    .find(|p| p.order == *o && p.decisions == k);
                cells.push(pct(p.map(|p| p.exact_match)));
                for s in &slices {
                    cells.push(pct(p.and_then(|p| p.exact_match_by_slice.get(*s).copied())));
                }
            }
            cells
        })
        .collect();
    distill::report::Table {
        title: "Learning curve".into(),
        note: format!(
            "Exact match on the eval set after a fine-tune on the first N decisions of the \
             simulated expert (not a person), per queue order, of a budget of {}; 0 is the \
             distilled student.",
            curve.budget
        ),
        header,
        rows,
    }
}

/// The orders and the slices the curve's points have, in the order they first appear.
fn orders_and_slices(curve: &Curve) -> (Vec<&str>, Vec<&str>) {
    let mut orders: Vec<&str> = Vec::new();
    let mut slices: Vec<&str> = Vec::new();
    for p in &curve.points {
        if !orders.contains(&p.order.as_str()) {
            orders.push(&p.order);
        }
        for s in p.exact_match_by_slice.keys() {
            if !slices.contains(&s.as_str()) {
                slices.push(s);
            }
        }
    }
    (orders, slices)
}

fn write_curve(dir: &std::path::Path, curve: &Curve) -> Result<()> {
    let json = serde_json::to_string_pretty(curve)?;
    datasets::atomic::write_file(dir.join("curve.json"), json.as_bytes())?;
    let t = table(curve);
    let md = format!("# {}\n\n{}\n\n{}", t.title, t.note, t.markdown());
    datasets::atomic::write_file(dir.join("curve.md"), md.as_bytes())?;
    let mut series = Vec::new();
    let (orders, slices) = orders_and_slices(curve);
    for o in orders {
        let of = |f: &dyn Fn(&CurvePoint) -> Option<f64>| -> Vec<(f64, f64)> {
            curve
                .points
                .iter()
                .filter(|p| p.order == o)
                .filter_map(|p| f(p).map(|v| (p.decisions as f64, 100.0 * v)))
                .collect()
        };
        series.push(distill::plot::Series::new(
            format!("{o}: all"),
            of(&|p| Some(p.exact_match)),
        ));
        for &s in slices.iter().filter(|s| **s != distill::evaluate::REST) {
            series.push(distill::plot::Series::new(
                format!("{o}: {s}"),
                of(&|p| p.exact_match_by_slice.get(s).copied()),
            ));
        }
    }
    let chart = distill::plot::Chart {
        title: "Exact match against expert decisions".into(),
        x_label: "decisions spent".into(),
        y_label: "exact match (%)".into(),
        series,
        y_range: Some((0.0, 100.0)),
        log_y: false,
    };
    datasets::atomic::write_file(dir.join("curve.svg"), chart.to_svg().as_bytes())?;
    Ok(())
}

/// The run's curve, when it has one.
pub fn read_curve(run: &RunDir) -> Option<Curve> {
    run.marker(layout::CURVE)?.summary_as::<Curve>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_points_from_zero_to_the_budget() {
        assert_eq!(curve_points(150), [0, 50, 100, 150]);
        assert_eq!(curve_points(2), [0, 1, 2]);
        assert_eq!(
            curve_orders(QueueOrder::Ranked),
            [QueueOrder::Ranked, QueueOrder::Random]
        );
        assert_eq!(curve_orders(QueueOrder::Random), [QueueOrder::Random]);
    }
}
