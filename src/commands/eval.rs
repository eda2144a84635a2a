//! `workbench eval CONFIG [--json]`: every model of the run on the eval set, in one table.

use anyhow::Result;
use datasets::rundir::RunDir;
use distill::evaluate;

use crate::cli::EvalArgs;
use crate::output::Output;
use crate::stages;

pub fn run(out: &Output, args: EvalArgs) -> Result<()> {
    let loaded = super::load_config(&args.run.config)?;
    let run = RunDir::open(&loaded, args.run.force)?;
    stages::data::data_stage(out, &loaded, &run)?;
    let rows = stages::eval::eval_stage(out, &loaded, &run, &args.run.config)?;
    if args.json {
        out.json(&serde_json::json!({ "rows": rows }))?;
    } else {
        out.data(&evaluate::markdown(&rows))?;
    }
    Ok(())
}
