//! The GGUF export of the final student (`export.gguf`): `runs/<name>/<name>.<type>.gguf`, a
//! file llama.cpp, Ollama and LM Studio serve as is.

use std::path::{Path, PathBuf};

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::RunDir;
use distill::data::tokenizer::Tokenizer;
use distill::model::checkpoint;
use distill::model::to_gguf::{self, GgufType};

use crate::BadInput;
use crate::output::Output;

/// Where the student's tokenizer comes from, when it is not the one the run trains: a
/// pretrained student's, or a pretrained teacher's (which a student cut from it or trained on
/// its tokens shares).
fn pretrained_tokenizer(loaded: &LoadedConfig) -> Option<PathBuf> {
    let c = &loaded.config;
    if let Some(p) = &c.student.path {
        return Some(loaded.resolve(p));
    }
    if c.teacher.trained_by_run() {
        return None;
    }
    distill::stages::teacher::teacher_dir(loaded, &loaded.run_dir())
        .or_else(|| c.teacher.tokenizer.as_ref().map(|p| loaded.resolve(p)))
}

/// Checks, before anything trains, that the final student can be written as GGUF: llama.cpp
/// must encode text as its tokenizer does, or every prompt would reach the model as other tokens.
pub fn check_gguf(loaded: &LoadedConfig) -> Result<()> {
    if loaded.config.export.gguf.is_none() {
        return Ok(());
    }
    let refuse = |why: String| {
        BadInput(format!(
            "`export.gguf` in `{}` asks for the final student as a GGUF file, but {why}",
            loaded.path.display()
        ))
    };
    let Some(path) = pretrained_tokenizer(loaded) else {
        let c = &loaded.config;
        if c.teacher.tokenizer_split == Some(datasets::config::TokenizerSplit::Words) {
            // The run's own tokenizer, split as SmolLM's is: llama.cpp runs it.
            return Ok(());
        }
        return Err(refuse(
            "the student will use the tokenizer this run trains for itself, which keeps words \
             together for its small models (`teacher.tokenizer_split = \"digits\"`, the \
             default); llama.cpp has no pre-tokenizer that splits text so, and would encode \
             every prompt as other tokens\n\nhint: set `teacher.tokenizer_split = \"words\"` \
             (a tokenizer llama.cpp runs; prompts take more tokens), start the student from a \
             pretrained model (`student.path`, or `student.from_teacher` with a pretrained \
             `teacher.path`), or drop `export.gguf` and serve the student with `workbench serve`"
                .into(),
        )
        .into());
    };
    let tok = Tokenizer::from_dir(&path)?;
    to_gguf::check_tokenizer(&tok).map_err(|e| {
        refuse(format!(
            "the student's tokenizer (from `{}`) cannot go into one: {e}",
            path.display()
        ))
    })?;
    Ok(())
}

/// Writes the student in `model` as the run's GGUF file when `export.gguf` asks for one.
pub fn gguf_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir, model: &Path) -> Result<()> {
    let Some(name) = &loaded.config.export.gguf else {
        return Ok(());
    };
    let kind = GgufType::parse(name).ok_or_else(|| {
        BadInput(format!(
            "`export.gguf = \"{name}\"`: expected one of {}",
            datasets::config::GGUF_TYPES.join(", ")
        ))
    })?;
    let device = distill::backend::device("cpu")?;
    let (m, tok) = checkpoint::load_with_tokenizer(model, &device)?;
    let dest = run
        .path()
        .join(format!("{}.{}.gguf", loaded.config.run.name, kind.as_str()));
    to_gguf::save(&m, Some(&tok), &dest, kind)?;
    out.say(format!(
        "export: the student in `{}` as GGUF ({}) in `{}`; serve it with `llama-server -m {}`",
        model.display(),
        kind.as_str(),
        dest.display(),
        crate::commands::shell_word(&dest.to_string_lossy())
    ));
    Ok(())
}
