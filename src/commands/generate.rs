//! `workbench generate CONFIG`: teacher → synthetic set.

use anyhow::Result;
use datasets::rundir::{RunDir, layout};

use crate::cli::RunArgs;
use crate::output::Output;
use crate::stages;

pub fn run(out: &Output, args: RunArgs) -> Result<()> {
    let loaded = super::load_config(&args.config)?;
    let run = RunDir::open(&loaded, args.force)?;
    stages::data::data_stage(out, &loaded, &run)?;
    stages::synthetic::synthetic_stage(out, &loaded, &run)?;
    out.hint(format!(
        "look at the set with `workbench datasets inspect {}`",
        run.stage_dir(layout::SYNTHETIC).display()
    ));
    Ok(())
}
