//! Parquet through `workbench datasets import`: the footer, the Arrow schema, every row group
//! decoded and turned into records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    workbench_fuzz::import_bytes(data, "input.parquet");
});
