//! `workbench model logits | convert` and `workbench serve`, with a real HTTP client on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::{Sandbox, root, tiny_config};

fn fixture(name: &str) -> PathBuf {
    root().join("distill/tests/fixtures/models").join(name)
}

fn greedy(name: &str) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    let ids = |k: &str| -> Vec<Vec<u32>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect()
    };
    (ids("inputs"), ids("greedy"))
}

#[test]
fn logits_have_one_vocabulary_row_per_position() {
    let sb = Sandbox::new();
    let m = fixture("llama-gqa");
    let v = sb
        .run(&[
            "model",
            "logits",
            "--model",
            m.to_str().unwrap(),
            "--ids",
            "1,2,3",
            "--json",
        ])
        .ok()
        .json();
    let rows = v["logits"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.as_array().unwrap().len() == 512));
    let v = sb
        .run(&[
            "model",
            "logits",
            "--model",
            m.to_str().unwrap(),
            "--text",
            "hello world",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        v["logits"].as_array().unwrap().len(),
        v["ids"].as_array().unwrap().len()
    );
    let r = sb
        .run(&[
            "model",
            "logits",
            "--model",
            m.to_str().unwrap(),
            "--ids",
            "1,2",
        ])
        .ok();
    assert!(r.stdout.starts_with("[0] "), "{}", r.stdout);
}

#[test]
fn bad_model_inputs_are_refused_cleanly() {
    let sb = Sandbox::new();
    let m = fixture("llama-gqa");
    let r = sb
        .run(&["model", "logits", "--model", "missing", "--ids", "1"])
        .bad_input();
    assert!(r.stderr.contains("missing"), "{}", r.stderr);
    let r = sb
        .run(&[
            "model",
            "logits",
            "--model",
            m.to_str().unwrap(),
            "--ids",
            "9999",
        ])
        .bad_input();
    assert!(
        r.stderr.contains("9999") && r.stderr.contains("vocabulary"),
        "{}",
        r.stderr
    );
    std::fs::create_dir(sb.join("no-tok")).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(m.join(f), sb.join("no-tok").join(f)).unwrap();
    }
    let r = sb
        .run(&["model", "logits", "--model", "no-tok", "--text", "hi"])
        .bad_input();
    assert!(
        r.stderr.contains("tokenizer.json") && r.stderr.contains("--ids"),
        "{}",
        r.stderr
    );
    sb.run(&["model", "logits", "--model", m.to_str().unwrap()])
        .bad_input();
}

#[test]
fn convert_writes_a_checkpoint_with_the_same_logits() {
    let sb = Sandbox::new();
    let m = fixture("qwen2-tied-bf16");
    sb.run(&[
        "model",
        "convert",
        "--model",
        m.to_str().unwrap(),
        "--out",
        "out",
    ])
    .ok();
    for f in [
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(sb.join(&format!("out/{f}")).exists(), "{f}");
    }
    let a = sb
        .run(&[
            "model",
            "logits",
            "--model",
            m.to_str().unwrap(),
            "--ids",
            "4,5,6",
            "--json",
        ])
        .ok()
        .json();
    let b = sb
        .run(&[
            "model", "logits", "--model", "out", "--ids", "4,5,6", "--json",
        ])
        .ok()
        .json();
    assert_eq!(a["logits"], b["logits"]);
    let r = sb
        .run(&[
            "model",
            "convert",
            "--model",
            m.to_str().unwrap(),
            "--out",
            "out",
        ])
        .bad_input();
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
}

/// `model convert --out FILE.gguf` writes a GGUF file that loads back (`--model FILE.gguf`) with the
/// logits of its source: equal for F32, within the quantization's error for F16, Q8_0 and Q4_0;
/// it serves chat with the rebuilt tokenizer; and an existing file is replaced only with `--force`.
#[test]
fn a_gguf_export_loads_back_with_the_logits_of_its_source() {
    let sb = Sandbox::new();
    let logits = |model: &str| -> Vec<f64> {
        sb.logits(std::path::Path::new(model), &[4, 5, 6, 300, 2])
            .concat()
    };
    for name in ["llama-gqa", "qwen2-tied-bf16"] {
        let m = fixture(name);
        let want = logits(m.to_str().unwrap());
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (kind, tolerance) in [("f32", 1e-5), ("f16", 0.02), ("q8_0", 0.05), ("q4_0", 0.5)] {
            let file = format!("{name}-{kind}.gguf");
            let r = sb
                .run(&[
                    "model",
                    "convert",
                    "--model",
                    m.to_str().unwrap(),
                    "--out",
                    &file,
                    "--quantize",
                    kind,
                ])
                .ok();
            assert!(r.stderr.contains(&format!("GGUF, {kind}")), "{}", r.stderr);
            let got = logits(&file);
            assert_eq!(got.len(), want.len(), "{name} {kind}: every logit");
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= tolerance * scale.max(1.0),
                "{name} {kind}: logits differ by {worst} (largest logit {scale})"
            );
        }
    }
    // Written again only with --force, and only over a GGUF file.
    let src = fixture("llama-gqa");
    let again = [
        "model",
        "convert",
        "--model",
        src.to_str().unwrap(),
        "--out",
        "llama-gqa-f32.gguf",
    ];
    let r = sb.run(&again).bad_input();
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    let mut forced = again.to_vec();
    forced.push("--force");
    sb.run(&forced).ok();
    sb.write("notes.gguf", "my notes, not a model");
    let r = sb
        .run(&[
            forced[0],
            forced[1],
            forced[2],
            forced[3],
            "--out",
            "notes.gguf",
            "--force",
        ])
        .bad_input();
    assert!(r.stderr.contains("not a GGUF file"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(sb.join("notes.gguf")).unwrap(),
        "my notes, not a model"
    );
}

/// Greedy token ids `/v1/completions` returns for `prompt`.
fn served_greedy(server: &Server, prompt: &[u32], n: usize) -> Vec<u32> {
    let req = serde_json::json!({
        "prompt": prompt, "max_tokens": n, "temperature": 0,
        "logprobs": 1, "return_tokens_as_token_ids": true,
    });
    let (status, body) = http(&server.addr, "POST", "/v1/completions", &req.to_string());
    assert_eq!(status, 200, "{body}");
    token_ids(&json(&body))
}

/// The ids of a completion's `logprobs.tokens`, returned as `token_id:N`.
fn token_ids(v: &serde_json::Value) -> Vec<u32> {
    v["choices"][0]["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.as_str()
                .unwrap()
                .trim_start_matches("token_id:")
                .parse()
                .unwrap()
        })
        .collect()
}

/// A Q8_0 or Q4_0 GGUF file is served with its quantized weights by default (`--quantize auto`):
/// its greedy tokens are those of the quantized decoder, and `--quantize f32` serves the
/// dequantized weights with the f32 decoder's tokens.
#[test]
fn a_quantized_gguf_file_is_served_with_its_quantized_weights() {
    use distill::model::kernels::quant::QuantKind;
    let src = fixture("llama-gqa");
    // The fixture's prompts, and more made up, to find one where the decoders part.
    let (mut inputs, _) = greedy("llama-gqa");
    inputs.extend((0..48u32).map(|i| (0..6).map(|k| (i * 37 + k * 101 + 5) % 500).collect()));
    let device = distill::backend::device("cpu").unwrap();
    let options = distill::generate::GenerateOptions {
        max_new_tokens: 12,
        temperature: 0.0,
        eos_ids: Vec::new(),
        ..Default::default()
    };
    let ours = |m: &distill::model::Model| -> Vec<Vec<u32>> {
        distill::generate::generate(m, &inputs, &options, None)
            .unwrap()
            .into_iter()
            .map(|g| g.ids)
            .collect()
    };
    for (name, kind) in [("q8_0", QuantKind::Q8_0), ("q4_0", QuantKind::Q4_0)] {
        let sb = Sandbox::new();
        sb.run(&[
            "model",
            "convert",
            "--model",
            src.to_str().unwrap(),
            "--out",
            "m.gguf",
            "--quantize",
            name,
        ])
        .ok();
        let file = sb.join("m.gguf");
        let mut model = distill::model::checkpoint::load(&file, &device).unwrap();
        let f32_tokens = ours(&model);
        model.quantize(Some(kind)).unwrap();
        let quantized = ours(&model);
        // A prompt where the rounding changes the greedy path, so the two servers are told
        // apart.
        let at = (0..inputs.len())
            .find(|&i| quantized[i] != f32_tokens[i])
            .unwrap_or_else(|| panic!("{name}: no prompt tells the two decoders apart"));
        let served = Server::start_with(&file, &[]);
        assert_eq!(
            served_greedy(&served, &inputs[at], 12),
            quantized[at],
            "{name}"
        );
        drop(served);
        let served = Server::start_with(&file, &["--quantize", "f32"]);
        assert_eq!(
            served_greedy(&served, &inputs[at], 12),
            f32_tokens[at],
            "{name}"
        );
    }
}

/// A `workbench serve` process on a free loopback port.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(model: &std::path::Path) -> Server {
        Server::start_with(model, &["--max-body-kib", "64"])
    }

    /// A server on `model` with more `serve` flags.
    pub fn start_with(model: &std::path::Path, flags: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_workbench"))
            .args([
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ])
            .args(flags)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server says where it listens").unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns (status, body).
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    // Bodies may be chunked; the JSON is the part between the first `{` and the last `}`.
    let (a, b) = (body.find('{').unwrap(), body.rfind('}').unwrap());
    serde_json::from_str(&body[a..=b]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn the_server_answers_like_openai_and_matches_transformers_greedy() {
    let server = Server::start(&fixture("llama-gqa"));
    let (status, body) = http(&server.addr, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["data"][0]["id"], "llama-gqa");

    // Greedy from token ids, ids returned as vLLM does: equal to transformers' generate().
    let (inputs, expected) = greedy("llama-gqa");
    let req = serde_json::json!({
        "prompt": inputs[1], "max_tokens": expected[1].len(), "temperature": 0,
        "logprobs": 3, "return_tokens_as_token_ids": true,
    });
    let (status, body) = http(&server.addr, "POST", "/v1/completions", &req.to_string());
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    let tokens = token_ids(&v);
    assert_eq!(tokens, expected[1]);
    assert_eq!(v["usage"]["completion_tokens"], expected[1].len());
    assert_eq!(
        v["choices"][0]["logprobs"]["top_logprobs"][0]
            .as_object()
            .unwrap()
            .len(),
        3
    );

    // Chat, with logprobs.
    let req = r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 2}"#;
    let (status, body) = http(&server.addr, "POST", "/v1/chat/completions", req);
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Streaming: chunks, a finish reason, then [DONE].
    let req =
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": true}"#;
    let (status, body) = http(&server.addr, "POST", "/v1/chat/completions", req);
    assert_eq!(status, 200);
    // A sampled token may be the end of the text: either finish reason ends the stream.
    assert!(
        body.contains("chat.completion.chunk")
            && (body.contains("\"finish_reason\":\"length\"")
                || body.contains("\"finish_reason\":\"stop\"")),
        "{body}"
    );
    // [DONE] once, after the chunk with the finish reason.
    assert_eq!(body.matches("data: [DONE]").count(), 1, "{body}");
    assert!(
        body.rfind("data: [DONE]") > body.rfind("\"finish_reason\":\""),
        "{body}"
    );

    // Errors in OpenAI's shape.
    let (status, body) = http(&server.addr, "POST", "/v1/completions", "not json");
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"]["type"], "invalid_request_error");
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/completions",
        r#"{"prompt": "x", "model": "other"}"#,
    );
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(
        &server.addr,
        "POST",
        "/v1/completions",
        r#"{"prompt": "x", "max_tokens": 100000}"#,
    );
    assert_eq!(status, 400);
    let big = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(100 << 10));
    let (status, body) = http(&server.addr, "POST", "/v1/completions", &big);
    assert_eq!(status, 413);
    assert_eq!(json(&body)["error"]["code"], "request_too_large", "{body}");
    let (status, body) = http(&server.addr, "GET", "/v1/nothing", "");
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "not_found", "{body}");
}

/// Every error a client can get is OpenAI's JSON (`message`, `type`, `param`, `code`) and names
/// no path of the server's. A 10 MB body got a plain-text 413; a model without a chat template
/// answered chat with the tokenizer's path.
#[test]
fn every_server_error_is_openai_json_and_names_no_server_path() {
    let sb = Sandbox::new();
    // A checkpoint without tokenizer_config.json: no chat template.
    let model = sb.join("private-models/plain");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("llama-gqa").join(f), model.join(f)).unwrap();
    }
    let server = Server::start_with(&model, &[]);
    let private = [
        sb.path().to_str().unwrap().to_string(),
        "private-models".to_string(),
    ];
    let ten_mb = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(10 << 20));
    // (method, path, body, status, code, param)
    let cases: Vec<ErrorCase> = vec![
        (
            "POST",
            "/v1/completions",
            ten_mb,
            413,
            "request_too_large",
            None,
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#.into(),
            400,
            "chat_template_missing",
            Some("messages"),
        ),
        (
            "POST",
            "/v1/completions",
            "{".into(),
            400,
            "invalid_request",
            None,
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt": {"not": "a prompt"}}"#.into(),
            400,
            "invalid_request",
            None,
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt": "x", "temperature": 9}"#.into(),
            400,
            "invalid_value",
            Some("temperature"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt": [99999]}"#.into(),
            400,
            "generation_failed",
            None,
        ),
        (
            "GET",
            "/v1/completions",
            String::new(),
            405,
            "method_not_allowed",
            None,
        ),
        ("GET", "/nowhere", String::new(), 404, "not_found", None),
    ];
    for (method, path, body, status, code, param) in cases {
        let (got, text) = http_tolerant(&server.addr, method, path, &body);
        let what = format!("{method} {path} ({} bytes)", body.len());
        assert_eq!(got, status, "{what}: {text}");
        let v = json(&text);
        let e = &v["error"];
        assert_eq!(e["code"], code, "{what}: {text}");
        assert!(
            e["type"].is_string() && e["message"].is_string(),
            "{what}: {text}"
        );
        assert!(
            e.as_object().unwrap().contains_key("param"),
            "{what}: {text}"
        );
        assert_eq!(e["param"].as_str(), param, "{what}: {text}");
        for p in &private {
            assert!(!text.contains(p.as_str()), "{what} shows `{p}`: {text}");
        }
        // No Rust type names either.
        assert!(
            !text.contains("PromptInput") && !text.contains("untagged"),
            "{text}"
        );
    }
}

/// A request and the error it must get: method, path, body, status, `code`, `param`.
type ErrorCase = (
    &'static str,
    &'static str,
    String,
    u16,
    &'static str,
    Option<&'static str>,
);

/// Like [`http`], for a body the server may refuse before reading it all: the request is written
/// from another thread, and a write cut short by the server is not an error.
fn http_tolerant(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut writer = s.try_clone().unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(request.as_bytes());
    });
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A model the workbench trained answered `/v1/chat/completions` with 400 "has no chat
/// template". Its tokenizer now carries the plain template: chat works, and renders the prompt
/// as training did, so greedy chat and greedy completion of the same text agree.
#[test]
fn a_model_the_workbench_trained_answers_chat() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "chat", "[generate]\nmax_new_tokens = 12\n");
    let cfg = cfg.to_str().unwrap();
    sb.run(&["teacher", "train", cfg]).ok();
    sb.run(&["generate", cfg]).ok();
    sb.run(&["distill", cfg]).ok();
    let model = sb.join("runs/chat/student/final");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert!(config["workbench_version"].is_string(), "{config}");
    let server = Server::start(&model);
    let prompt = "Normalise the date: 3 May 2001";
    let chat = serde_json::json!({
        "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "temperature": 0,
    });
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/chat/completions",
        &chat.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let chat = json(&body);
    let completion = serde_json::json!({"prompt": prompt, "max_tokens": 8, "temperature": 0});
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/completions",
        &completion.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let completion = json(&body);
    assert_eq!(
        chat["usage"]["prompt_tokens"], completion["usage"]["prompt_tokens"],
        "chat renders the prompt as training encodes it"
    );
    let text = completion["choices"][0]["text"].as_str().unwrap();
    let content = chat["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content, text);
}

/// `model convert --chat-template` gives a model without one (here a checkpoint from elsewhere)
/// a template, so its chat endpoint works; the weights are the same.
#[test]
fn convert_gives_a_model_a_chat_template() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.join("bare")).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("llama-gqa").join(f), sb.join("bare").join(f)).unwrap();
    }
    let r = sb
        .run(&[
            "model",
            "convert",
            "--model",
            "bare",
            "--out",
            "chat",
            "--chat-template",
            "plain",
        ])
        .ok();
    assert!(r.stderr.contains("the plain chat template"), "{}", r.stderr);
    let config = std::fs::read_to_string(sb.join("chat/tokenizer_config.json")).unwrap();
    assert!(config.contains("chat_template"), "{config}");
    let server = Server::start(&sb.join("chat"));
    let req =
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}"#;
    let (status, body) = http(&server.addr, "POST", "/v1/chat/completions", req);
    assert_eq!(status, 200, "{body}");
    drop(server);

    // A template of one's own, from a file; and `--force` replaces the workbench's own output.
    sb.write(
        "t.jinja",
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    );
    sb.run(&[
        "model",
        "convert",
        "--model",
        "chat",
        "--out",
        "chat",
        "--force",
        "--chat-template",
        "t.jinja",
    ])
    .ok();
    let config = std::fs::read_to_string(sb.join("chat/tokenizer_config.json")).unwrap();
    assert!(config.contains("<{{ m.role }}>"), "{config}");
    let a = sb
        .run(&[
            "model", "logits", "--model", "bare", "--ids", "4,5", "--json",
        ])
        .ok()
        .json();
    let b = sb
        .run(&[
            "model", "logits", "--model", "chat", "--ids", "4,5", "--json",
        ])
        .ok()
        .json();
    assert_eq!(a["logits"], b["logits"]);
}

/// `--timeout-secs`: a request past it gets a 503 `timeout` error in JSON, streaming or not.
#[test]
fn a_request_past_the_timeout_gets_a_json_503() {
    let server = Server::start_with(&fixture("llama-gqa"), &["--timeout-secs", "0.000001"]);
    let req = r#"{"prompt": "hello", "max_tokens": 64, "temperature": 0}"#;
    let (status, body) = http(&server.addr, "POST", "/v1/completions", req);
    assert_eq!(status, 503, "{body}");
    let v = json(&body);
    assert_eq!(v["error"]["code"], "timeout", "{body}");
    assert_eq!(v["error"]["type"], "server_error", "{body}");
    let req = r#"{"prompt": "hello", "max_tokens": 64, "stream": true}"#;
    let (status, body) = http(&server.addr, "POST", "/v1/completions", req);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""code":"timeout""#), "{body}");
    assert!(body.contains("data: [DONE]"), "{body}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let sb = Sandbox::new();
    let m = fixture("llama-gqa");
    let r = sb
        .run(&["serve", "--model", m.to_str().unwrap(), "--addr", &addr])
        .bad_input();
    assert!(
        r.stderr.contains(&addr) && r.stderr.contains("--addr"),
        "{}",
        r.stderr
    );
}

/// `workbench model logits`, log-softmaxed: position `i`'s distribution over the next token.
fn logits_logprobs(sb: &Sandbox, model: &std::path::Path, ids: &[u32]) -> Vec<Vec<f64>> {
    sb.logits(model, ids)
        .into_iter()
        .map(|x| {
            let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            x.iter().map(|v| v - lse).collect()
        })
        .collect()
}

/// The two ways a client scores tokens it did not generate: vLLM's `prompt_logprobs` and the
/// OpenAI `echo` with `logprobs`, both with `max_tokens = 0`. Each token's logprob, rank and
/// top-k equal `workbench model logits` log-softmaxed; the first token has none.
#[test]
fn the_server_scores_prompts_as_vllm_and_openai_do() {
    let sb = Sandbox::new();
    let model = fixture("llama-gqa");
    let server = Server::start(&model);
    let ids: Vec<u32> = vec![1, 17, 300, 42, 9, 250, 3];
    let want = logits_logprobs(&sb, &model, &ids);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4;
    let k = 4;

    let req = serde_json::json!({"prompt": ids, "max_tokens": 0, "prompt_logprobs": k});
    let (status, body) = http(&server.addr, "POST", "/v1/completions", &req.to_string());
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    let choice = &v["choices"][0];
    assert_eq!(choice["text"], "");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    assert_eq!(v["usage"]["prompt_tokens"], ids.len());
    let list = choice["prompt_logprobs"].as_array().unwrap();
    assert_eq!(list.len(), ids.len());
    assert!(list[0].is_null());
    for (i, entry) in list.iter().enumerate().skip(1) {
        let dist = &want[i - 1];
        let map = entry.as_object().unwrap();
        let own = &map[&ids[i].to_string()];
        assert!(close(
            own["logprob"].as_f64().unwrap(),
            dist[ids[i] as usize]
        ));
        let rank = 1 + dist.iter().filter(|&&x| x > dist[ids[i] as usize]).count();
        assert_eq!(own["rank"].as_u64().unwrap() as usize, rank);
        let mut order: Vec<usize> = (0..dist.len()).collect();
        order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]));
        for (r, &id) in order.iter().take(k).enumerate() {
            let e = &map[&id.to_string()];
            assert!(close(e["logprob"].as_f64().unwrap(), dist[id]), "token {i}");
            assert_eq!(e["rank"].as_u64().unwrap() as usize, r + 1);
        }
        assert!(map.len() == k || map.len() == k + 1);
    }

    let req = serde_json::json!({
        "prompt": ids, "max_tokens": 0, "echo": true, "logprobs": k,
        "return_tokens_as_token_ids": true,
    });
    let (status, body) = http(&server.addr, "POST", "/v1/completions", &req.to_string());
    assert_eq!(status, 200, "{body}");
    let lp = json(&body)["choices"][0]["logprobs"].clone();
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), ids.len());
    assert_eq!(tokens[2], "token_id:300");
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    for i in 1..ids.len() {
        let dist = &want[i - 1];
        assert!(close(
            lp["token_logprobs"][i].as_f64().unwrap(),
            dist[ids[i] as usize]
        ));
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert_eq!(top.len(), k);
        for (t, x) in top {
            let id: usize = t.trim_start_matches("token_id:").parse().unwrap();
            assert!(close(x.as_f64().unwrap(), dist[id]));
        }
    }

    // Scoring and generating in one request: the prompt's scores, then new tokens.
    let req = serde_json::json!({
        "prompt": ids, "max_tokens": 2, "temperature": 0, "echo": true, "logprobs": 1,
        "prompt_logprobs": 1, "return_tokens_as_token_ids": true,
    });
    let (status, body) = http(&server.addr, "POST", "/v1/completions", &req.to_string());
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        ids.len() + 2
    );
    assert_eq!(
        v["choices"][0]["prompt_logprobs"].as_array().unwrap().len(),
        ids.len()
    );

    // What a scoring request may not ask.
    for (req, needle) in [
        (
            serde_json::json!({"prompt": ids, "max_tokens": 0}),
            "0 is for scoring the prompt",
        ),
        (
            serde_json::json!({"prompt": ids, "max_tokens": 0, "prompt_logprobs": 21}),
            "`prompt_logprobs` is 21; at most 20",
        ),
        (
            serde_json::json!({"prompt": ids, "max_tokens": 1, "echo": true, "stream": true}),
            "not streamed",
        ),
    ] {
        let (status, body) = http(&server.addr, "POST", "/v1/completions", &req.to_string());
        assert_eq!(status, 400, "{body}");
        let m = json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(m.contains(needle), "{m}");
    }
}
