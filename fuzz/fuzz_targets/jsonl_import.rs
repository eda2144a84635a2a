//! JSON Lines and JSON arrays through `workbench datasets import`: the input is written as
//! `input.json`, so the importer's own sniffing picks JSONL or a JSON array from the first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    workbench_fuzz::import_bytes(data, "input.json");
});
