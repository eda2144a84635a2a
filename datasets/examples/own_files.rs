//! Writes the small dataset `configs/own-files.toml` reads, in the shapes users' own files come
//! in: a TRL conversational gold set (`messages`), a prompt pool whose prompt column is called
//! `question`, and eval and review files whose answers are in `answer` and `completion`. The rows
//! come from the built-in dates task with a seed of their own, so the files are reproducible:
//!
//! ```text
//! cargo run -p workbench-datasets --example own_files -- configs/own-files
//! ```

use std::io::Write;
use std::path::PathBuf;

use datasets::Sample;
use datasets::config::BuiltinTask;
use datasets::tasks::{Sizes, generate};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: own_files DIR (the folder to write the JSONL files into)")?,
    );
    std::fs::create_dir_all(&dir)?;
    let sets = generate(
        BuiltinTask::Dates,
        2026,
        Sizes {
            gold: 300,
            prompts: 1500,
            eval: 400,
            review: 300,
            slice_share: 0.0,
        },
    );
    let answer = |s: &Sample| s.reference.clone().unwrap_or_default();
    let files: [(&str, Vec<serde_json::Value>); 4] = [
        (
            "gold.jsonl",
            sets.gold
                .iter()
                .map(|s| {
                    json!({"messages": [
                        {"role": "user", "content": s.prompt},
                        {"role": "assistant", "content": answer(s)},
                    ]})
                })
                .collect(),
        ),
        (
            "prompts.jsonl",
            sets.prompts
                .iter()
                .map(|s| json!({"question": s.prompt}))
                .collect(),
        ),
        (
            "eval.jsonl",
            sets.eval
                .iter()
                .map(|s| json!({"prompt": s.prompt, "answer": answer(s)}))
                .collect(),
        ),
        (
            "review.jsonl",
            sets.review
                .iter()
                .map(|s| json!({"prompt": s.prompt, "completion": answer(s)}))
                .collect(),
        ),
    ];
    for (name, rows) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for row in &rows {
            serde_json::to_writer(&mut f, row)?;
            f.write_all(b"\n")?;
        }
        f.into_inner()?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        println!("{}: {} rows", path.display(), rows.len());
    }
    Ok(())
}
