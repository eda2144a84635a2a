//! `workbench model logits | convert` and `workbench serve`, with a real HTTP client on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::{Sandbox, root};

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

/// A `workbench serve` process on a free loopback port.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(model: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_workbench"))
            .args([
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
                "--max-body-kib",
                "64",
            ])
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
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
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
    let tokens: Vec<u32> = v["choices"][0]["logprobs"]["tokens"]
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
        .collect();
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
    assert!(
        body.contains("chat.completion.chunk") && body.contains("\"finish_reason\":\"length\""),
        "{body}"
    );
    assert!(
        body.trim_end().ends_with("data: [DONE]") || body.contains("data: [DONE]"),
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
    let (status, _) = http(&server.addr, "POST", "/v1/completions", &big);
    assert_eq!(status, 413);
    let (status, _) = http(&server.addr, "GET", "/v1/nothing", "");
    assert_eq!(status, 404);
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
