//! CSV and TSV through `workbench datasets import`. The delimiter comes from the extension, so
//! an input whose first line has a tab and no comma is written as `.tsv`, any other as `.csv`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let tsv = first_line.contains(&b'\t') && !first_line.contains(&b',');
    workbench_fuzz::import_bytes(data, if tsv { "input.tsv" } else { "input.csv" });
});
