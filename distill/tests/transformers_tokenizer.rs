//! A tokenizer the workbench trains and saves loads in `transformers` and agrees with us: the
//! embedded default trains its own byte-level BPE, and users take the student (with this
//! tokenizer) back out to serve with their usual tools.
//!
//! Needs the torch + transformers venv (`WORKBENCH_TORCH_PYTHON`); without it the check is skipped
//! with a message, except under CI, where it must run.

use std::path::{Path, PathBuf};

use datasets::Message;
use distill::data::chat::ChatTemplate;
use distill::data::tokenizer::{BpeSplit, SpecialTokens, Tokenizer};

fn torch_python() -> Option<PathBuf> {
    match std::env::var_os("WORKBENCH_TORCH_PYTHON") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!(
                "CI must run this check: set WORKBENCH_TORCH_PYTHON=$(scripts/python-env.sh scripts/requirements-torch.txt)"
            )
        }
        _ => {
            eprintln!(
                "skipped: needs WORKBENCH_TORCH_PYTHON=$(scripts/python-env.sh scripts/requirements-torch.txt)"
            );
            None
        }
    }
}

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[test]
fn a_trained_and_saved_tokenizer_loads_in_transformers() {
    let Some(py) = torch_python() else { return };
    let corpus: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "Rewrite the date {i} March 2021 as ISO 8601: 2021-03-{:02}. Ça marche, 東京 {i}!",
                i % 28 + 1
            )
        })
        .collect();
    let mut tok = Tokenizer::train_bpe(
        corpus.iter(),
        400,
        &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        // The split the workbench trains its own tokenizers with (the Sequence pre-tokenizer).
        BpeSplit::Digits,
    )
    .unwrap();
    tok.set_special_tokens(SpecialTokens {
        bos: None,
        eos: Some("<|im_end|>".into()),
        pad: Some("<|endoftext|>".into()),
        unk: None,
    });
    tok.set_chat_template(Some(
        ChatTemplate::new(CHATML, Some("test".into())).unwrap(),
    ));
    let dir = tempfile::tempdir().unwrap();
    tok.save_dir(dir.path()).unwrap();
    let messages = vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Normalise 3rd of March '21"),
    ];
    let rendered = tok.apply_chat_template(&messages, true).unwrap();
    let texts = [
        "3rd of March 2021",
        "  东京 Ça   va?\n",
        "<|im_start|>user\nhi<|im_end|>",
    ];
    let encodings: Vec<serde_json::Value> = texts
        .iter()
        .map(|t| serde_json::json!({"text": t, "ids": tok.encode(t, false).unwrap()}))
        .collect();
    let expected = dir.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::json!({
            "messages": messages,
            "add_generation_prompt": true,
            "expected": rendered,
            "encodings": encodings,
        })
        .to_string(),
    )
    .unwrap();
    check_in_transformers(&py, dir.path(), &expected);
}

#[test]
fn the_runs_own_tokenizer_encodes_like_transformers() {
    // The tokenizer `workbench teacher train` makes: digits apart, merges across words, BOS
    // added on encode. Its ids with and without special tokens must be transformers' ids.
    let Some(py) = torch_python() else { return };
    let corpus: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "Rewrite the date as ISO 8601.\nDate: {i} March 2021 -> 2021-03-{:02}",
                i % 28 + 1
            )
        })
        .collect();
    let refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let tok =
        distill::recipe::train_tokenizer(&refs, 400, distill::data::tokenizer::BpeSplit::Digits)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    tok.save_dir(dir.path()).unwrap();
    let mut encodings = Vec::new();
    for text in [
        "Rewrite the date as ISO 8601.\nDate: 3rd of March '21",
        "2021-03-03",
        "  Ça va? 東京",
    ] {
        for special in [false, true] {
            encodings.push(serde_json::json!({
                "text": text,
                "special": special,
                "ids": tok.encode(text, special).unwrap(),
            }));
        }
    }
    assert_eq!(
        tok.encode("2021", true).unwrap().len(),
        5,
        "BOS, then one token per digit"
    );
    let expected = dir.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::json!({ "encodings": encodings }).to_string(),
    )
    .unwrap();
    check_in_transformers(&py, dir.path(), &expected);
}

/// Runs `tests/interop/check_tokenizer_dir.py` on a saved tokenizer and its expectations.
fn check_in_transformers(py: &Path, dir: &Path, expected: &Path) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/check_tokenizer_dir.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(dir)
        .arg(expected)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("tokenizer dir ok"),
        "{stdout}\n{stderr}"
    );
}
