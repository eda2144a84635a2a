//! A test-only OpenAI-compatible server that misbehaves on purpose: 429 with `Retry-After`, 500,
//! answers slower than the client's timeout, malformed JSON, dropped connections. Its good
//! answers are deterministic (a function of the prompt) and it counts every request it receives,
//! per prompt, so tests can prove that nothing answered is asked again.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Ok,
    TooMany,
    Internal,
    Slow,
    Malformed,
    Drop,
}

#[derive(Default)]
pub struct State {
    /// Faults to apply to the next requests, in order; then `after` for the rest.
    pub plan: VecDeque<Fault>,
    pub after: Option<Fault>,
    /// Requests received per prompt (the last user message).
    pub per_prompt: HashMap<String, usize>,
    /// Good answers sent.
    pub answered: usize,
    /// Requests received.
    pub received: usize,
    /// The `Authorization` header a request must carry (else 401).
    pub key: Option<String>,
    /// Delay before each good answer.
    pub delay: Duration,
    /// Answer without logprobs, as a server that does not support them.
    pub no_logprobs: bool,
    /// Down: every request, health checks included, gets a 500.
    pub down: bool,
    /// `GET /v1/models` requests received (a fleet's health checks).
    pub health_checks: usize,
    /// Error replies sent to generation requests.
    pub errors_sent: usize,
}

pub struct FakeServer {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeServer {
    pub fn start(state: State) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(state));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &s);
                });
            }
        });
        FakeServer { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

/// The deterministic answer to a prompt.
pub fn answer_for(prompt: &str) -> String {
    let sum: u32 = prompt.bytes().map(u32::from).sum();
    format!("ans-{}", sum % 997)
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        // Headers.
        let mut length = 0usize;
        let mut auth = None;
        let mut first = String::new();
        if reader.read_line(&mut first)? == 0 {
            return Ok(());
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        if first.starts_with("GET ") && first.contains("/models") {
            let down = {
                let mut s = state.lock().unwrap();
                s.health_checks += 1;
                s.down
            };
            let (status, body) = if down {
                (
                    "500 Internal Server Error",
                    r#"{"error": {"message": "down"}}"#,
                )
            } else {
                (
                    "200 OK",
                    r#"{"object": "list", "data": [{"id": "fake", "object": "model"}]}"#,
                )
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let prompt = v["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .or_else(|| v["prompt"].as_str())
            .unwrap_or("")
            .to_string();
        let (fault, key_ok, delay, no_logprobs) = {
            let mut s = state.lock().unwrap();
            s.received += 1;
            *s.per_prompt.entry(prompt.clone()).or_default() += 1;
            let fault = if s.down {
                Fault::Internal
            } else {
                s.plan.pop_front().or(s.after).unwrap_or(Fault::Ok)
            };
            if fault != Fault::Ok {
                s.errors_sent += 1;
            }
            let key_ok = match &s.key {
                None => true,
                Some(k) => auth.as_deref() == Some(&format!("Bearer {k}")),
            };
            (fault, key_ok, s.delay, s.no_logprobs)
        };
        let reply = |stream: &mut TcpStream, status: &str, extra: &str, body: &str| {
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
                body.len()
            )
        };
        if !key_ok {
            reply(
                &mut stream,
                "401 Unauthorized",
                "",
                r#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}"#,
            )?;
            continue;
        }
        match fault {
            Fault::Drop => return Ok(()),
            Fault::TooMany => reply(
                &mut stream,
                "429 Too Many Requests",
                "Retry-After: 1\r\n",
                r#"{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}"#,
            )?,
            Fault::Internal => reply(
                &mut stream,
                "500 Internal Server Error",
                "",
                r#"{"error": {"message": "The server had an error", "type": "server_error", "code": 500}}"#,
            )?,
            Fault::Slow => {
                std::thread::sleep(Duration::from_secs(4));
                return Ok(());
            }
            Fault::Malformed => reply(&mut stream, "200 OK", "", "{\"choices\": [{\"mess")?,
            Fault::Ok => {
                std::thread::sleep(delay);
                let text = answer_for(&prompt);
                let content: Vec<serde_json::Value> = text
                    .bytes()
                    .map(|b| {
                        let id = u32::from(b);
                        serde_json::json!({
                            "token": format!("token_id:{id}"),
                            "logprob": -0.25,
                            "top_logprobs": [
                                {"token": format!("token_id:{id}"), "logprob": -0.25},
                                {"token": format!("token_id:{}", id + 1), "logprob": -2.0},
                            ]
                        })
                    })
                    .collect();
                let body = serde_json::json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": v["model"],
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": if no_logprobs { serde_json::Value::Null } else { serde_json::json!({"content": content}) },
                        "finish_reason": "stop"
                    }],
                    "usage": {"prompt_tokens": prompt.len(), "completion_tokens": text.len(), "total_tokens": prompt.len() + text.len()}
                })
                .to_string();
                reply(&mut stream, "200 OK", "", &body)?;
                state.lock().unwrap().answered += 1;
            }
        }
        stream.flush()?;
    }
}
