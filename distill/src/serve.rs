//! `workbench serve`: an OpenAI-compatible server for any checkpoint the workbench can load.
//!
//! `/v1/models`, `/v1/completions` and `/v1/chat/completions`, with `logprobs` / `top_logprobs`,
//! streaming (server-sent events ending in `data: [DONE]`) and errors as
//! `{"error": {"message", "type", "code"}}`. It binds loopback unless told otherwise, bounds the
//! request body and the number of tokens a request may ask for, and supports vLLM's
//! `return_tokens_as_token_ids` so a client can recover exact ids.
//!
//! burn modules are not `Sync`, so one worker thread owns the model and runs requests in turn;
//! HTTP handlers (tokio) talk to it through channels and stream what it sends back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datasets::{Message, TopLogprob};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::generate::{FinishReason, GenerateOptions, Generated, generate_with};
use crate::model::Model;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The model id clients name (`/v1/models` lists it).
    pub model_name: String,
    /// The most tokens one request may generate.
    pub max_tokens: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// What the worker sends back while generating.
enum Progress {
    Token {
        row: usize,
        id: u32,
        logprob: f32,
        top: Vec<TopLogprob>,
    },
    Done(Vec<Generated>),
    Failed(String),
}

struct Job {
    prompts: Vec<Vec<u32>>,
    options: GenerateOptions,
    events: mpsc::UnboundedSender<Progress>,
}

struct Shared {
    jobs: std_mpsc::Sender<Job>,
    tokenizer: Arc<Tokenizer>,
    options: ServeOptions,
    created: u64,
    max_positions: usize,
}

/// An error response in OpenAI's shape.
struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: &'static str,
}

impl ApiError {
    fn bad(message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            code,
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            code: "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"message": self.message, "type": self.kind, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}

/// A string or a list of strings (`stop`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A completions prompt: text, texts, token ids, or lists of token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: PromptInput,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    logprobs: Option<usize>,
    #[serde(default)]
    stop: Option<OneOrMany>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    return_tokens_as_token_ids: bool,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    logprobs: bool,
    #[serde(default)]
    top_logprobs: Option<usize>,
    #[serde(default)]
    stop: Option<OneOrMany>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    return_tokens_as_token_ids: bool,
}

/// Sampling settings common to both endpoints.
struct Sampling {
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    n: Option<usize>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    logprobs: usize,
}

impl Shared {
    fn check_model(&self, model: &Option<String>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != &self.options.model_name => Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "The model `{m}` does not exist; this server serves `{}`",
                    self.options.model_name
                ),
                kind: "invalid_request_error",
                code: "model_not_found",
            }),
            _ => Ok(()),
        }
    }

    fn options(
        &self,
        s: Sampling,
        longest_prompt: usize,
    ) -> Result<(GenerateOptions, usize), ApiError> {
        let temperature = s.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad(
                format!("`temperature` is {temperature}; expected 0 to 2"),
                "invalid_value",
            ));
        }
        let top_p = s.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad(
                format!("`top_p` is {top_p}; expected a number in (0, 1]"),
                "invalid_value",
            ));
        }
        if s.logprobs > 20 {
            return Err(ApiError::bad(
                format!("`logprobs` is {}; at most 20", s.logprobs),
                "invalid_value",
            ));
        }
        let n = s.n.unwrap_or(1);
        if n == 0 || n > 16 {
            return Err(ApiError::bad(
                format!("`n` is {n}; expected 1 to 16"),
                "invalid_value",
            ));
        }
        let room = self.max_positions.saturating_sub(longest_prompt);
        let wanted = s.max_tokens.unwrap_or(16.min(room));
        if wanted == 0 {
            return Err(ApiError::bad(
                "`max_tokens` is 0; ask for at least 1",
                "invalid_value",
            ));
        }
        if wanted > self.options.max_tokens {
            return Err(ApiError::bad(
                format!(
                    "`max_tokens` is {wanted}; this server allows at most {}",
                    self.options.max_tokens
                ),
                "invalid_value",
            ));
        }
        if wanted > room {
            return Err(ApiError::bad(
                format!(
                    "The prompt has {longest_prompt} tokens; with `max_tokens` {wanted} it exceeds the model's {} positions",
                    self.max_positions
                ),
                "context_length_exceeded",
            ));
        }
        let stop = s.stop.map(OneOrMany::into_vec).unwrap_or_default();
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::bad(
                "`stop` takes up to 4 non-empty strings",
                "invalid_value",
            ));
        }
        let eos = self.tokenizer.eos_id().into_iter().collect();
        Ok((
            GenerateOptions {
                max_new_tokens: wanted,
                temperature,
                top_k: s.top_k.filter(|&k| k > 0).map_or(0, |k| k as usize),
                top_p,
                seed: s.seed.unwrap_or_else(rand_seed),
                row_seeds: Vec::new(),
                logprobs: s.logprobs,
                eos_ids: eos,
                stop,
            },
            n,
        ))
    }

    /// Runs a job on the worker; the receiver gets tokens as they come and the final result.
    fn submit(
        &self,
        prompts: Vec<Vec<u32>>,
        options: GenerateOptions,
    ) -> Result<mpsc::UnboundedReceiver<Progress>, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.jobs
            .send(Job {
                prompts,
                options,
                events: tx,
            })
            .map_err(|_| ApiError::internal("The model worker has stopped"))?;
        Ok(rx)
    }
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32)
}

fn request_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand_seed())
}

/// The raw bytes of a token: byte-level BPE tokens map back through GPT-2's byte alphabet.
fn token_bytes(tokenizer: &Tokenizer, id: u32) -> Vec<u8> {
    let Some(piece) = tokenizer.id_to_token(id) else {
        return Vec::new();
    };
    let mut bytes = Vec::with_capacity(piece.len());
    for c in piece.chars() {
        match byte_of_char(c) {
            Some(b) => bytes.push(b),
            None => {
                return tokenizer
                    .decode(&[id], false)
                    .unwrap_or_default()
                    .into_bytes();
            }
        }
    }
    bytes
}

/// Inverse of GPT-2's `bytes_to_unicode`.
fn byte_of_char(c: char) -> Option<u8> {
    let u = c as u32;
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if u < 256 && printable(u) {
        return Some(u as u8);
    }
    // The other 68 bytes are mapped to 256.. in order.
    let mut n = 256;
    for b in 0u32..256 {
        if !printable(b) {
            if n == u {
                return Some(b as u8);
            }
            n += 1;
        }
    }
    None
}

fn token_text(tokenizer: &Tokenizer, id: u32, as_ids: bool) -> String {
    if as_ids {
        format!("token_id:{id}")
    } else {
        String::from_utf8_lossy(&token_bytes(tokenizer, id)).into_owned()
    }
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// Text that is safe to send: everything but a tail that could still become a stop string.
fn safe_prefix_len(text: &str, stops: &[String]) -> usize {
    let mut cut = text.len();
    for stop in stops {
        for k in (1..stop.len()).rev() {
            if stop.is_char_boundary(k) && text.ends_with(&stop[..k]) {
                cut = cut.min(text.len() - k);
                break;
            }
        }
    }
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

fn usage(prompts: &[Vec<u32>], out: &[Generated]) -> Value {
    let prompt: usize = prompts.iter().map(Vec::len).sum();
    let completion: usize = out.iter().map(|g| g.ids.len()).sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

async fn models(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": s.options.model_name, "object": "model", "created": s.created, "owned_by": "workbench"}],
    }))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            format!("The request body is not valid: {e}"),
            "invalid_request",
        )
    })
}

async fn completions(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(&body)?;
    s.check_model(&req.model)?;
    let tok = &s.tokenizer;
    let prompts: Vec<Vec<u32>> = match req.prompt {
        PromptInput::Text(t) => vec![
            tok.encode(&t, true)
                .map_err(|e| ApiError::bad(e.to_string(), "invalid_prompt"))?,
        ],
        PromptInput::Texts(ts) => ts
            .iter()
            .map(|t| tok.encode(t, true))
            .collect::<Result<_>>()
            .map_err(|e| ApiError::bad(e.to_string(), "invalid_prompt"))?,
        PromptInput::Ids(ids) => vec![ids],
        PromptInput::IdLists(l) => l,
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::bad("The prompt is empty", "invalid_prompt"));
    }
    if prompts.len() > 64 {
        return Err(ApiError::bad(
            "At most 64 prompts per request",
            "invalid_prompt",
        ));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (options, n) = s.options(
        Sampling {
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            n: req.n,
            stop: req.stop,
            seed: req.seed,
            logprobs: req.logprobs.unwrap_or(0),
        },
        longest,
    )?;
    let prompts: Vec<Vec<u32>> = prompts
        .into_iter()
        .flat_map(|p| std::iter::repeat_n(p, n))
        .collect();
    let want_logprobs = req.logprobs.is_some();
    let as_ids = req.return_tokens_as_token_ids;
    let id = request_id("cmpl");
    let stops = options.stop.clone();
    let mut rx = s.submit(prompts.clone(), options)?;
    let model = s.options.model_name.clone();
    let created = now();
    if !req.stream {
        let out = wait(&mut rx).await?;
        let choices: Vec<Value> = out
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let text = tok.decode(&g.ids, true).unwrap_or_default();
                let logprobs = want_logprobs.then(|| completion_logprobs(tok, g, as_ids));
                json!({"index": i, "text": text, "finish_reason": finish_reason(g.finish), "logprobs": logprobs})
            })
            .collect();
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": choices, "usage": usage(&prompts, &out),
        }))
        .into_response());
    }
    let tok = s.tokenizer.clone();
    let stream = async_stream(
        rx,
        prompts.len(),
        tok,
        stops,
        move |tok, row, delta, token, finish| {
            let logprobs = match (token, want_logprobs) {
                (Some((tid, lp, top)), true) => json!({
                    "tokens": [token_text(tok, tid, as_ids)],
                    "token_logprobs": [lp],
                    "top_logprobs": [top_map(tok, top, as_ids)],
                }),
                _ => Value::Null,
            };
            json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": row, "text": delta, "finish_reason": finish, "logprobs": logprobs}],
            })
        },
    );
    Ok(Sse::new(stream).into_response())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn top_map(tok: &Tokenizer, top: &[TopLogprob], as_ids: bool) -> Value {
    let mut m = serde_json::Map::new();
    for t in top {
        m.insert(token_text(tok, t.id, as_ids), json!(t.logprob));
    }
    Value::Object(m)
}

fn completion_logprobs(tok: &Tokenizer, g: &Generated, as_ids: bool) -> Value {
    let tokens: Vec<String> = g.ids.iter().map(|&i| token_text(tok, i, as_ids)).collect();
    let mut offsets = Vec::with_capacity(tokens.len());
    let mut at = 0;
    for t in &tokens {
        offsets.push(at);
        at += t.len();
    }
    json!({
        "tokens": tokens,
        "token_logprobs": g.logprobs,
        "top_logprobs": g.top.iter().map(|t| top_map(tok, t, as_ids)).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

fn chat_logprob_entry(
    tok: &Tokenizer,
    id: u32,
    lp: f32,
    top: &[TopLogprob],
    as_ids: bool,
) -> Value {
    json!({
        "token": token_text(tok, id, as_ids),
        "logprob": lp,
        "bytes": token_bytes(tok, id),
        "top_logprobs": top.iter().map(|t| json!({
            "token": token_text(tok, t.id, as_ids),
            "logprob": t.logprob,
            "bytes": token_bytes(tok, t.id),
        })).collect::<Vec<_>>(),
    })
}

async fn chat(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse_body(&body)?;
    s.check_model(&req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad("`messages` is empty", "invalid_messages"));
    }
    let messages: Vec<Message> = req
        .messages
        .iter()
        .map(|m| {
            let content = match &m.content {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                // Content parts: keep the text ones.
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                Some(other) => other.to_string(),
            };
            Message::new(m.role.clone(), content)
        })
        .collect();
    let tok = &s.tokenizer;
    let text = tok
        .apply_chat_template(&messages, true)
        .map_err(|e| ApiError::bad(e.to_string(), "chat_template"))?;
    // The template writes any BOS itself.
    let prompt = tok
        .encode(&text, false)
        .map_err(|e| ApiError::bad(e.to_string(), "invalid_prompt"))?;
    if prompt.is_empty() {
        return Err(ApiError::bad(
            "The rendered prompt is empty",
            "invalid_messages",
        ));
    }
    let top = if req.logprobs {
        req.top_logprobs.unwrap_or(0)
    } else {
        0
    };
    let (mut options, n) = s.options(
        Sampling {
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            n: req.n,
            stop: req.stop,
            seed: req.seed,
            logprobs: top,
        },
        prompt.len(),
    )?;
    // Chat templates end assistant turns with a token of their own (e.g. <|im_end|>).
    for end in crate::generate::TURN_ENDS {
        if let Some(id) = tok.token_to_id(end)
            && !options.eos_ids.contains(&id)
        {
            options.eos_ids.push(id);
        }
    }
    let prompts = vec![prompt; n];
    let want = req.logprobs;
    let as_ids = req.return_tokens_as_token_ids;
    let id = request_id("chatcmpl");
    let stops = options.stop.clone();
    let eos = options.eos_ids.clone();
    let mut rx = s.submit(prompts.clone(), options)?;
    let model = s.options.model_name.clone();
    let created = now();
    if !req.stream {
        let out = wait(&mut rx).await?;
        let choices: Vec<Value> = out
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let visible: Vec<u32> = g.ids.iter().copied().filter(|t| !eos.contains(t)).collect();
                let content = tok.decode(&visible, true).unwrap_or_default();
                let logprobs = want.then(|| {
                    json!({"content": g.ids.iter().zip(&g.logprobs).zip(&g.top)
                        .map(|((&t, &lp), top)| chat_logprob_entry(tok, t, lp, top, as_ids)).collect::<Vec<_>>()})
                });
                json!({
                    "index": i,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason(g.finish),
                    "logprobs": logprobs,
                })
            })
            .collect();
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage(&prompts, &out),
        }))
        .into_response());
    }
    let tok = s.tokenizer.clone();
    let stream = async_stream(
        rx,
        prompts.len(),
        tok,
        stops,
        move |tok, row, delta, token, finish| {
            let logprobs = match (token, want) {
                (Some((tid, lp, top)), true) => {
                    json!({"content": [chat_logprob_entry(tok, tid, lp, top, as_ids)]})
                }
                _ => Value::Null,
            };
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": row, "delta": {"role": "assistant", "content": delta}, "finish_reason": finish, "logprobs": logprobs}],
            })
        },
    );
    Ok(Sse::new(stream).into_response())
}

async fn wait(rx: &mut mpsc::UnboundedReceiver<Progress>) -> Result<Vec<Generated>, ApiError> {
    while let Some(p) = rx.recv().await {
        match p {
            Progress::Done(out) => return Ok(out),
            Progress::Failed(m) => return Err(ApiError::bad(m, "generation_failed")),
            Progress::Token { .. } => {}
        }
    }
    Err(ApiError::internal(
        "The model worker stopped before answering",
    ))
}

type ChunkFn = dyn Fn(&Tokenizer, usize, String, Option<(u32, f32, &[TopLogprob])>, Option<&'static str>) -> Value
    + Send
    + Sync;

/// Turns worker progress into SSE events: one chunk per token (its text held back while it could
/// still become a stop string), a final chunk per row with its finish reason, then `[DONE]`.
fn async_stream(
    rx: mpsc::UnboundedReceiver<Progress>,
    rows: usize,
    tok: Arc<Tokenizer>,
    stops: Vec<String>,
    chunk: impl Fn(
        &Tokenizer,
        usize,
        String,
        Option<(u32, f32, &[TopLogprob])>,
        Option<&'static str>,
    ) -> Value
    + Send
    + Sync
    + 'static,
) -> impl futures_util::Stream<Item = std::result::Result<Event, std::convert::Infallible>> {
    let chunk: Arc<ChunkFn> = Arc::new(chunk);
    struct St {
        rx: mpsc::UnboundedReceiver<Progress>,
        ids: Vec<Vec<u32>>,
        sent: Vec<usize>,
        pending: std::collections::VecDeque<Event>,
        finished: bool,
    }
    let state = St {
        rx,
        ids: vec![Vec::new(); rows],
        sent: vec![0; rows],
        pending: Default::default(),
        finished: false,
    };
    futures_util::stream::unfold(state, move |mut st| {
        let tok = tok.clone();
        let chunk = chunk.clone();
        let stops = stops.clone();
        async move {
            loop {
                if let Some(e) = st.pending.pop_front() {
                    return Some((Ok(e), st));
                }
                if st.finished {
                    return None;
                }
                match st.rx.recv().await {
                    Some(Progress::Token {
                        row,
                        id,
                        logprob,
                        top,
                    }) => {
                        st.ids[row].push(id);
                        let text = tok.decode(&st.ids[row], true).unwrap_or_default();
                        let safe = safe_prefix_len(&text, &stops);
                        let delta = if safe > st.sent[row] {
                            text[st.sent[row]..safe].to_string()
                        } else {
                            String::new()
                        };
                        st.sent[row] = st.sent[row].max(safe);
                        let v = chunk(&tok, row, delta, Some((id, logprob, &top)), None);
                        st.pending.push_back(Event::default().data(v.to_string()));
                    }
                    Some(Progress::Done(out)) => {
                        for (row, g) in out.iter().enumerate() {
                            let text = tok.decode(&g.ids, true).unwrap_or_default();
                            let delta = text.get(st.sent[row]..).unwrap_or("").to_string();
                            let v = chunk(&tok, row, delta, None, Some(finish_reason(g.finish)));
                            st.pending.push_back(Event::default().data(v.to_string()));
                        }
                        st.pending.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                    Some(Progress::Failed(m)) => {
                        let v = json!({"error": {"message": m, "type": "server_error", "code": "generation_failed"}});
                        st.pending.push_back(Event::default().data(v.to_string()));
                        st.pending.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                    None => return None,
                }
            }
        }
    })
}

/// The worker: owns the model, runs jobs in arrival order.
fn worker(model: Model, tokenizer: Arc<Tokenizer>, jobs: std_mpsc::Receiver<Job>) {
    for job in jobs {
        let events = job.events.clone();
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
        let result = generate_with(
            &model,
            &job.prompts,
            &job.options,
            Some(&decode),
            &mut |row, t| {
                events
                    .send(Progress::Token {
                        row,
                        id: t.id,
                        logprob: t.logprob,
                        top: t.top.to_vec(),
                    })
                    .is_ok()
            },
        );
        let _ = match result {
            Ok(out) => job.events.send(Progress::Done(out)),
            Err(e) => job.events.send(Progress::Failed(e.to_string())),
        };
    }
}

/// Serves `model` until the process is stopped; `ready` is called with the bound address.
pub fn serve(
    model: Model,
    tokenizer: Tokenizer,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let tokenizer = Arc::new(tokenizer);
    let (tx, rx) = std_mpsc::channel::<Job>();
    let max_positions = model.config().max_position_embeddings;
    let worker_tok = tokenizer.clone();
    // The model is moved into its thread: burn modules are not Sync.
    std::thread::Builder::new()
        .name("model-worker".into())
        .spawn(move || worker(model, worker_tok, rx))
        .map_err(|e| Error::invalid(format!("Failed to start the model worker: {e}")))?;
    let shared = Arc::new(Shared {
        jobs: tx,
        tokenizer,
        created: now(),
        max_positions,
        options: options.clone(),
    });
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "Unknown endpoint; this server has /v1/models, /v1/completions and /v1/chat/completions".into(),
                kind: "invalid_request_error",
                code: "not_found",
            }
        })
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(shared);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("Failed to start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.addr).await.map_err(|e| {
            Error::invalid(format!(
                "Cannot listen on {}: {e}\n\nhint: pick another port with `--addr 127.0.0.1:PORT`",
                options.addr
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("Cannot read the bound address: {e}")))?;
        ready(addr);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Error::invalid(format!("The server stopped: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_alphabet_round_trips() {
        // 'Ġ' (U+0120) is the space byte; '!' is itself.
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('!'), Some(b'!'));
        assert_eq!(byte_of_char('Ċ'), Some(b'\n'));
        assert_eq!(byte_of_char('€'), None);
    }

    #[test]
    fn text_that_could_start_a_stop_string_is_held_back() {
        let stops = vec!["\nUser:".to_string()];
        assert_eq!(safe_prefix_len("hello\nUs", &stops), 5);
        assert_eq!(safe_prefix_len("hello", &stops), 5);
        assert_eq!(safe_prefix_len("héllo", &[]), "héllo".len());
    }
}
