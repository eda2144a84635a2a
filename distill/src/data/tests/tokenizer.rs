//! Tokenizer tests: parity with transformers on the fixture of
//! `tests/fixtures/make_chat_fixtures.py`, save/load round trips, BPE training, bad input.

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde::Deserialize;

use super::*;

const SPECIAL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

#[derive(Deserialize)]
struct Expected {
    vocab_size: usize,
    strings: Vec<Encoded>,
    chat: Chat,
}

#[derive(Deserialize)]
struct Encoded {
    text: String,
    ids: Vec<u32>,
    ids_with_special: Vec<u32>,
    tokens: Vec<String>,
    decoded: String,
    decoded_skip_special: String,
}

#[derive(Deserialize)]
struct Chat {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    expected: String,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The texts the fixture tokenizer was trained on (one JSON string per line).
fn corpus() -> Vec<String> {
    let text = std::fs::read_to_string(fixture_dir().join("corpus.jsonl")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn trained() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::train_bpe(corpus().iter(), 400, &SPECIAL, BpeSplit::Words).unwrap()
    })
}

/// A checkpoint-like directory holding the fixture's tokenizer.json and the given files.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join(TOKENIZER_FILE),
        dir.path().join(TOKENIZER_FILE),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn assert_same_encodings(a: &Tokenizer, b: &Tokenizer) {
    for case in expected().strings {
        for special in [false, true] {
            assert_eq!(
                a.encode(&case.text, special).unwrap(),
                b.encode(&case.text, special).unwrap(),
                "{:?}",
                case.text
            );
        }
    }
}

#[test]
fn encodes_like_transformers() {
    let tokenizer = Tokenizer::from_dir(&fixture_dir()).unwrap();
    let expected = expected();
    assert_eq!(tokenizer.vocab_size(), expected.vocab_size);
    assert_eq!(tokenizer.bos_token(), None);
    assert_eq!(tokenizer.eos_token(), Some("<|im_end|>"));
    assert_eq!(tokenizer.eos_id(), Some(2));
    assert_eq!(tokenizer.pad_id(), Some(0));
    assert_eq!(tokenizer.bos_id(), None);
    assert_eq!(tokenizer.model_max_length(), Some(2048));
    assert!(expected.strings.len() >= 15);

    for case in &expected.strings {
        let text = &case.text;
        let ids = tokenizer.encode(text, false).unwrap();
        assert_eq!(ids, case.ids, "ids of {text:?}");
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            case.ids_with_special,
            "ids with special tokens of {text:?}"
        );
        let tokens: Vec<String> = ids
            .iter()
            .map(|&id| tokenizer.id_to_token(id).unwrap())
            .collect();
        assert_eq!(tokens, case.tokens, "tokens of {text:?}");
        for (token, &id) in tokens.iter().zip(&ids) {
            assert_eq!(tokenizer.token_to_id(token), Some(id));
        }
        assert_eq!(
            tokenizer.decode(&ids, false).unwrap(),
            case.decoded,
            "decode of {text:?}"
        );
        assert_eq!(
            tokenizer.decode(&ids, true).unwrap(),
            case.decoded_skip_special,
            "decode without special tokens of {text:?}"
        );
        assert_eq!(case.decoded, *text, "byte-level BPE round-trips");
    }

    let texts: Vec<&str> = expected.strings.iter().map(|c| c.text.as_str()).collect();
    let batch = tokenizer.encode_batch(&texts, false).unwrap();
    let one_by_one: Vec<Vec<u32>> = expected.strings.iter().map(|c| c.ids.clone()).collect();
    assert_eq!(batch, one_by_one);

    let chat = &expected.chat;
    assert_eq!(
        tokenizer
            .apply_chat_template(&chat.messages, chat.add_generation_prompt)
            .unwrap(),
        chat.expected
    );
}

#[test]
fn from_file_reads_only_the_tokenizer() {
    let tokenizer = Tokenizer::from_file(&fixture_dir().join(TOKENIZER_FILE)).unwrap();
    assert_eq!(tokenizer.vocab_size(), 400);
    assert_eq!(tokenizer.special_tokens(), &SpecialTokens::default());
    assert!(tokenizer.chat_template().is_none());
    assert_same_encodings(&tokenizer, &Tokenizer::from_dir(&fixture_dir()).unwrap());
}

#[test]
fn save_dir_round_trips() {
    let original = Tokenizer::from_dir(&fixture_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/tokenizer");
    original.save_dir(&out).unwrap();
    let loaded = Tokenizer::from_dir(&out).unwrap();

    assert_eq!(loaded.vocab_size(), original.vocab_size());
    assert_eq!(loaded.special_tokens(), original.special_tokens());
    assert_eq!(loaded.model_max_length(), Some(2048));
    assert_eq!(loaded.chat_template(), original.chat_template());
    assert_same_encodings(&loaded, &original);
    let chat = expected().chat;
    assert_eq!(
        loaded.apply_chat_template(&chat.messages, true).unwrap(),
        chat.expected
    );

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(TOKENIZER_CONFIG_FILE)).unwrap())
            .unwrap();
    assert_eq!(config["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(config["eos_token"], "<|im_end|>");
    assert_eq!(config["pad_token"], "<|endoftext|>");
    assert_eq!(config["bos_token"], serde_json::Value::Null);
    assert_eq!(config["added_tokens_decoder"]["2"]["content"], "<|im_end|>");
    assert_eq!(config["added_tokens_decoder"]["2"]["special"], true);
    assert!(
        config["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
    // Nothing but the two files, no temporaries left behind.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]);
}

#[test]
fn save_dir_rewrites_a_stale_chat_template_jinja() {
    let mut tokenizer = Tokenizer::from_dir(&fixture_dir()).unwrap();
    let dir = dir_with(&[(CHAT_TEMPLATE_FILE, "stale {{ messages }}")]);
    tokenizer.save_dir(dir.path()).unwrap();
    let loaded = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(loaded.chat_template(), tokenizer.chat_template());

    tokenizer.set_chat_template(None);
    tokenizer.save_dir(dir.path()).unwrap();
    assert!(!dir.path().join(CHAT_TEMPLATE_FILE).exists());
    assert!(
        Tokenizer::from_dir(dir.path())
            .unwrap()
            .chat_template()
            .is_none()
    );
}

#[test]
fn trained_bpe_saves_and_loads() {
    let mut tokenizer = trained().clone();
    tokenizer.set_special_tokens(SpecialTokens {
        eos: Some("<|im_end|>".into()),
        pad: Some("<|endoftext|>".into()),
        ..SpecialTokens::default()
    });
    tokenizer.set_chat_template(Some(
        ChatTemplate::new("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}", None).unwrap(),
    ));
    let dir = tempfile::tempdir().unwrap();
    tokenizer.save_dir(dir.path()).unwrap();
    let loaded = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(loaded.special_tokens(), tokenizer.special_tokens());
    assert_eq!(loaded.eos_id(), Some(2));
    assert_eq!(loaded.model_max_length(), None);
    assert_same_encodings(&loaded, &tokenizer);
    let messages = [Message::new("user", "Hi")];
    assert_eq!(
        loaded.apply_chat_template(&messages, false).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn train_bpe_matches_python_tokenizers() {
    // The fixture's tokenizer.json was trained by Python's `tokenizers` on the same corpus with
    // the same settings: the vocabulary and merges must be the same.
    let ours: serde_json::Value =
        serde_json::from_str(&trained().inner().to_string(false).unwrap()).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join(TOKENIZER_FILE)).unwrap())
            .unwrap();
    assert_eq!(ours["model"]["vocab"], theirs["model"]["vocab"]);
    assert_eq!(ours["model"]["merges"], theirs["model"]["merges"]);
    assert_eq!(ours["pre_tokenizer"], theirs["pre_tokenizer"]);
    assert_eq!(ours["decoder"], theirs["decoder"]);
    assert_eq!(ours["post_processor"], theirs["post_processor"]);
    assert_eq!(ours["added_tokens"], theirs["added_tokens"]);
}

#[test]
fn train_bpe_is_deterministic() {
    let texts = corpus();
    let a = Tokenizer::train_bpe(texts.iter(), 350, &SPECIAL, BpeSplit::Words).unwrap();
    let b = Tokenizer::train_bpe(texts.clone(), 350, &SPECIAL, BpeSplit::Words).unwrap();
    assert_eq!(
        a.inner().to_string(false).unwrap(),
        b.inner().to_string(false).unwrap()
    );
    let text = "Normalise 3rd of March 2021 → 2021-03-03 🎉";
    assert_eq!(
        a.encode(text, false).unwrap(),
        b.encode(text, false).unwrap()
    );
}

#[test]
fn train_bpe_honours_vocab_size_and_special_ids() {
    let tokenizer = trained();
    assert_eq!(tokenizer.vocab_size(), 400);
    for (id, token) in SPECIAL.iter().enumerate() {
        assert_eq!(tokenizer.token_to_id(token), Some(id as u32));
        assert_eq!(tokenizer.id_to_token(id as u32).as_deref(), Some(*token));
        // Never split, and dropped when decoding without special tokens.
        let ids = tokenizer.encode(&format!("a{token}b"), false).unwrap();
        assert!(ids.contains(&(id as u32)), "{token}: {ids:?}");
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), "ab");
    }
    // A corpus too small for the vocabulary asked for gives fewer tokens, never more.
    let small = Tokenizer::train_bpe(["abab abab"], 1000, &["<s>"], BpeSplit::Words).unwrap();
    assert!(small.vocab_size() < 1000 && small.vocab_size() > 257);
    // Exactly the minimum: the bytes and the special tokens, no merges.
    let bytes_only = Tokenizer::train_bpe(corpus(), 259, &SPECIAL, BpeSplit::Words).unwrap();
    assert_eq!(bytes_only.vocab_size(), 259);
    assert_eq!(bytes_only.encode("ab", false).unwrap().len(), 2);
}

#[test]
fn train_bpe_refuses_bad_arguments() {
    let err = Tokenizer::train_bpe(["x"], 100, &SPECIAL, BpeSplit::Words).unwrap_err();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err:?}");
    assert!(err.to_string().contains("too small"), "{err}");
    let err = Tokenizer::train_bpe(["x"], 400, &["<s>", "<s>"], BpeSplit::Words).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let err = Tokenizer::train_bpe(["x"], 400, &[""], BpeSplit::Words).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn trained_bpe_round_trips_any_text(text in any::<String>()) {
        let tokenizer = trained();
        let ids = tokenizer.encode(&text, false).unwrap();
        prop_assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn trained_bpe_round_trips_text_with_special_tokens(
        parts in proptest::collection::vec(("\\PC{0,12}", 0usize..4), 0..6)
    ) {
        let tokenizer = trained();
        let text: String = parts
            .iter()
            .map(|(s, k)| format!("{s}{}", SPECIAL.get(*k).copied().unwrap_or("")))
            .collect();
        let ids = tokenizer.encode(&text, false).unwrap();
        prop_assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn config_chat_template_list_uses_default() {
    let config = r#"{"chat_template": [
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "{{ messages[0].content }}!"}
    ]}"#;
    let dir = dir_with(&[(TOKENIZER_CONFIG_FILE, config)]);
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    let out = tokenizer
        .apply_chat_template(&[Message::new("user", "hi")], false)
        .unwrap();
    assert_eq!(out, "hi!");

    let config = r#"{"chat_template": [{"name": "tool_use", "template": "tools"}]}"#;
    let dir = dir_with(&[(TOKENIZER_CONFIG_FILE, config)]);
    assert!(
        Tokenizer::from_dir(dir.path())
            .unwrap()
            .chat_template()
            .is_none()
    );
}

#[test]
fn chat_template_jinja_wins_over_the_config() {
    let config = r#"{"chat_template": "from config", "eos_token": "<|im_end|>",
        "model_max_length": 1000000000000000019884624838656}"#;
    let dir = dir_with(&[
        (TOKENIZER_CONFIG_FILE, config),
        (CHAT_TEMPLATE_FILE, "{{ eos_token }}\r\nfrom jinja\r\n"),
    ]);
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tokenizer.model_max_length(), None);
    let template = tokenizer.chat_template().unwrap();
    assert_eq!(template.source(), "{{ eos_token }}\nfrom jinja\n");
    assert!(template.origin().unwrap().ends_with(CHAT_TEMPLATE_FILE));
    let out = tokenizer
        .apply_chat_template(&[Message::new("user", "hi")], false)
        .unwrap();
    assert_eq!(out, "<|im_end|>\nfrom jinja");

    // No tokenizer_config.json at all is fine.
    let dir = dir_with(&[(CHAT_TEMPLATE_FILE, "x")]);
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tokenizer.special_tokens(), &SpecialTokens::default());
    assert_eq!(tokenizer.chat_template().unwrap().source(), "x");
}

#[test]
fn added_tokens_decoder_adds_missing_tokens() {
    let config = r#"{
        "added_tokens_decoder": {
            "2": {"content": "<|im_end|>", "special": true},
            "400": {"content": "<tool_call>", "special": false, "normalized": false},
            "401": {"content": "<|eot|>", "special": true}
        },
        "eos_token": {"__type": "AddedToken", "content": "<|eot|>", "lstrip": false},
        "bos_token": "<missing>"
    }"#;
    let dir = dir_with(&[(TOKENIZER_CONFIG_FILE, config)]);
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tokenizer.vocab_size(), 402);
    assert_eq!(tokenizer.token_to_id("<tool_call>"), Some(400));
    assert_eq!(tokenizer.eos_id(), Some(401));
    assert_eq!(tokenizer.eos_token(), Some("<|eot|>"));
    // A named token the vocabulary lacks keeps its text but has no id.
    assert_eq!(tokenizer.bos_token(), Some("<missing>"));
    assert_eq!(tokenizer.bos_id(), None);
    let ids = tokenizer.encode("a<tool_call>b<|eot|>", false).unwrap();
    assert!(ids.contains(&400) && ids.contains(&401), "{ids:?}");
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), "a<tool_call>b");
}

#[test]
fn added_tokens_decoder_with_other_ids_is_an_error() {
    let config = r#"{"added_tokens_decoder": {"5": {"content": "<|im_end|>", "special": true}}}"#;
    let dir = dir_with(&[(TOKENIZER_CONFIG_FILE, config)]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("id 5") && text.contains("id 2"), "{text}");
}

#[test]
fn no_chat_template_says_what_to_do() {
    let tokenizer = Tokenizer::from_file(&fixture_dir().join(TOKENIZER_FILE)).unwrap();
    let err = tokenizer
        .apply_chat_template(&[Message::new("user", "hi")], true)
        .unwrap_err();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("no chat template") && text.contains("hint:"),
        "{text}"
    );
}

#[test]
fn missing_tokenizer_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("no `tokenizer.json`"), "{err}");

    std::fs::write(dir.path().join("vocab.json"), "{}").unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("hint:"), "{err}");

    let err = Tokenizer::from_dir(&dir.path().join("nope")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");

    let err = Tokenizer::from_file(&dir.path().join(TOKENIZER_FILE)).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
}

#[test]
fn malformed_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKENIZER_FILE);
    for bad in [
        "",
        "{",
        "[1, 2]",
        r#"{"model": {"type": "BPE", "vocab": 3}}"#,
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = Tokenizer::from_file(&path).unwrap_err();
        assert!(matches!(err, Error::Tokenizer { .. }), "{bad}: {err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    for (config, kind) in [
        ("{not json", "Json"),
        ("[]", "Json"),
        (r#"{"bos_token": 3}"#, "Json"),
        (r#"{"eos_token": {"lstrip": true}}"#, "Json"),
        (
            r#"{"added_tokens_decoder": {"x": {"content": "a"}}}"#,
            "Json",
        ),
        (r#"{"added_tokens_decoder": {"7": {}}}"#, "Json"),
        (r#"{"chat_template": 3}"#, "Json"),
        (r#"{"chat_template": [{"name": "default"}]}"#, "Json"),
        (
            r#"{"chat_template": "{% for m in messages %}"}"#,
            "Template",
        ),
    ] {
        let dir = dir_with(&[(TOKENIZER_CONFIG_FILE, config)]);
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        let got = match &err {
            Error::Json { path, .. } => {
                assert!(path.ends_with(TOKENIZER_CONFIG_FILE));
                "Json"
            }
            Error::Template { origin, .. } => {
                assert!(origin.as_deref().unwrap().contains(TOKENIZER_CONFIG_FILE));
                "Template"
            }
            other => panic!("{config}: {other:?}"),
        };
        assert_eq!(got, kind, "{config}: {err}");
        assert!(err.is_bad_input());
    }

    let dir = dir_with(&[(CHAT_TEMPLATE_FILE, "{{ unclosed")]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
    assert!(err.to_string().contains(CHAT_TEMPLATE_FILE), "{err}");
}

#[test]
fn template_errors_surface_through_the_tokenizer() {
    let config = r#"{"chat_template": "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok"}"#;
    let dir = dir_with(&[(TOKENIZER_CONFIG_FILE, config)]);
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    let err = tokenizer
        .apply_chat_template(&[Message::new("system", "x")], false)
        .unwrap_err();
    assert!(
        err.to_string().contains("System role not supported"),
        "{err}"
    );
    assert!(tokenizer.apply_chat_template(&[], false).is_err());
}

#[test]
fn decode_drops_unknown_ids_like_transformers() {
    let tokenizer = trained();
    let mut ids = tokenizer.encode("hello", false).unwrap();
    ids.push(1_000_000);
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), "hello");
}

#[test]
fn tokenizer_is_shared_across_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Tokenizer>();
    send_sync::<ChatTemplate>();
}
