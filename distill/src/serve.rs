//! `workbench serve`: an OpenAI-compatible server for any checkpoint the workbench can load.
//!
//! `/v1/models`, `/v1/completions` and `/v1/chat/completions`, with `logprobs` / `top_logprobs`,
//! streaming (server-sent events ending in `data: [DONE]`) and every error, whatever refused the
//! request (a bad field, a body over the limit, an unknown route, a timeout), as OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`. Messages never show the server's paths:
//! a client learns what was wrong with its request, not where the model lives. It binds loopback
//! unless told otherwise, bounds the request body, the tokens a request may ask for and
//! (optionally) its time, and supports vLLM's `return_tokens_as_token_ids` so a client can
//! recover exact ids.
//!
//! A client can also have the model score tokens it did not write (a teacher grading a
//! student's sample, a log-likelihood eval): `/v1/completions` with `prompt_logprobs = k`
//! (vLLM's extension: per prompt token its logprob, rank and the top-k) or with `echo = true` and
//! `logprobs = k` (the OpenAI shape: the prompt's tokens come back with their logprobs), both
//! with `max_tokens = 0` to score without generating.
//!
//! burn modules are not `Sync`, so one worker thread owns the model and runs requests in turn;
//! HTTP handlers (tokio) talk to it through channels and stream what it sends back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::BytesRejection;
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
use crate::generate::{FinishReason, GenerateOptions, Generated, Scored, generate_with};
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
    /// The longest a request may take, waiting in line and generating; `None` waits as long as
    /// it takes.
    pub timeout: Option<Duration>,
    /// The checkpoint directory. Never shown to clients: it is taken out of any message that
    /// would name it.
    pub model_dir: PathBuf,
}

/// What the worker sends back while generating.
enum Progress {
    Token {
        row: usize,
        id: u32,
        logprob: f32,
        top: Vec<TopLogprob>,
    },
    /// Every row's generation, and its prompt's scores when the job asked for them.
    Done(Vec<Generated>, Vec<Vec<Scored>>),
    /// Generation failed: whether the request was at fault, and the message for the client.
    Failed(bool, String),
}

struct Job {
    prompts: Vec<Vec<u32>>,
    options: GenerateOptions,
    /// Score the prompts first, with this many top logprobs per token.
    score: Option<usize>,
    events: mpsc::UnboundedSender<Progress>,
}

struct Shared {
    jobs: std_mpsc::Sender<Job>,
    tokenizer: Arc<Tokenizer>,
    options: ServeOptions,
    created: u64,
    max_positions: usize,
    /// Text that must not reach a client (the model's directory, the working directory), each
    /// with what a client sees instead.
    private: Vec<(String, String)>,
}

/// An error response in OpenAI's shape.
struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    /// The request field at fault, when one is.
    param: Option<&'static str>,
    code: &'static str,
}

impl ApiError {
    fn bad(message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code,
        }
    }

    /// A request refused because of the field `param`.
    fn field(param: &'static str, message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            param: Some(param),
            ..ApiError::bad(message, code)
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: "internal_error",
        }
    }

    fn timeout(limit: Duration) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: timeout_message(limit),
            kind: "server_error",
            param: None,
            code: "timeout",
        }
    }

    /// The error for a request the HTTP layer refused before any handler saw it (a body over
    /// the limit, one that could not be read).
    fn rejected(r: &BytesRejection, limit: usize) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError {
                status,
                message: format!(
                    "The request body is larger than this server's limit of {} KiB; send a \
                     smaller request (fewer or shorter prompts)",
                    limit >> 10
                ),
                kind: "invalid_request_error",
                param: None,
                code: "request_too_large",
            };
        }
        ApiError {
            status,
            message: format!("The request body could not be read: {}", r.body_text()),
            kind: "invalid_request_error",
            param: None,
            code: "invalid_request",
        }
    }

    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

fn timeout_message(limit: Duration) -> String {
    format!(
        "The request took longer than this server's limit of {} s and was stopped; ask for fewer \
         tokens (`max_tokens`), or try again when the server is less busy",
        limit.as_secs_f64()
    )
}

/// What a client may read of a library error: its words without the server's paths. Failures of
/// the server's own files are not the client's business; they are logged, and the client is
/// told the server failed.
fn client_message(e: &Error) -> String {
    match e {
        Error::Tokenizer { message, .. } => format!("The model's tokenizer failed: {message}"),
        Error::Template { message, .. } => {
            format!("The model's chat template cannot render these messages: {message}")
        }
        Error::Read { .. }
        | Error::Write { .. }
        | Error::Json { .. }
        | Error::Unsupported { .. }
        | Error::Checkpoint { .. } => {
            tracing::error!("{e:#}");
            "The server failed to run the model; its log says why".into()
        }
        other => other.to_string(),
    }
}

/// A string or a list of strings (`stop`).
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "`stop` must be a string or a list of strings")]
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
#[serde(
    untagged,
    expecting = "`prompt` must be a string, a list of strings, a list of token ids or a list of lists of token ids"
)]
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
    /// Return the prompt before the completion (with `logprobs`, its tokens' logprobs too).
    #[serde(default)]
    echo: bool,
    /// vLLM's extension: per prompt token, its logprob and rank and the top `prompt_logprobs`.
    #[serde(default)]
    prompt_logprobs: Option<usize>,
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
    /// The field the request set `max_tokens` with (chat has two names for it).
    max_tokens_field: &'static str,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    n: Option<usize>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    logprobs: usize,
    /// The field that asked for `logprobs` (`top_logprobs` in chat).
    logprobs_field: &'static str,
    /// The request scores its prompt, so it may ask for no new tokens.
    scores_prompt: bool,
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
                param: Some("model"),
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
            return Err(ApiError::field(
                "temperature",
                format!("`temperature` is {temperature}; expected 0 to 2"),
                "invalid_value",
            ));
        }
        let top_p = s.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::field(
                "top_p",
                format!("`top_p` is {top_p}; expected a number in (0, 1]"),
                "invalid_value",
            ));
        }
        if s.logprobs > 20 {
            return Err(ApiError::field(
                s.logprobs_field,
                format!("`{}` is {}; at most 20", s.logprobs_field, s.logprobs),
                "invalid_value",
            ));
        }
        let n = s.n.unwrap_or(1);
        if n == 0 || n > 16 {
            return Err(ApiError::field(
                "n",
                format!("`n` is {n}; expected 1 to 16"),
                "invalid_value",
            ));
        }
        let room = self.max_positions.saturating_sub(longest_prompt);
        let wanted = s.max_tokens.unwrap_or(16.min(room));
        if wanted == 0 && !s.scores_prompt {
            return Err(ApiError::field(
                s.max_tokens_field,
                format!(
                    "`{}` is 0; ask for at least 1 (0 is for scoring the prompt, with `echo` \
                     and `logprobs` or with `prompt_logprobs`)",
                    s.max_tokens_field
                ),
                "invalid_value",
            ));
        }
        if wanted > self.options.max_tokens {
            return Err(ApiError::field(
                s.max_tokens_field,
                format!(
                    "`{}` is {wanted}; this server allows at most {}",
                    s.max_tokens_field, self.options.max_tokens
                ),
                "invalid_value",
            ));
        }
        if wanted > room {
            return Err(ApiError::field(
                s.max_tokens_field,
                format!(
                    "The prompt has {longest_prompt} tokens; with `{}` {wanted} it exceeds the model's {} positions",
                    s.max_tokens_field, self.max_positions
                ),
                "context_length_exceeded",
            ));
        }
        let stop = s.stop.map(OneOrMany::into_vec).unwrap_or_default();
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::field(
                "stop",
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

    /// `message` with every private path replaced by what a client may see.
    fn scrub(&self, message: &str) -> String {
        let mut m = message.to_string();
        for (private, shown) in &self.private {
            m = m.replace(private.as_str(), shown);
        }
        m
    }

    /// A library error as the client sees it.
    fn client_error(&self, e: &Error, code: &'static str) -> ApiError {
        let message = self.scrub(&client_message(e));
        if e.is_bad_input() {
            ApiError::bad(message, code)
        } else {
            ApiError::internal(message)
        }
    }

    /// When a request that arrives now must be answered by.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.options
            .timeout
            .map(|t| tokio::time::Instant::now() + t)
    }

    /// The request body, or the JSON error for one the HTTP layer refused.
    fn body(
        &self,
        body: Result<axum::body::Bytes, BytesRejection>,
    ) -> Result<axum::body::Bytes, ApiError> {
        body.map_err(|r| ApiError::rejected(&r, self.options.max_body_bytes))
    }

    /// Runs a job on the worker; the receiver gets tokens as they come and the final result.
    fn submit(
        &self,
        prompts: Vec<Vec<u32>>,
        options: GenerateOptions,
        score: Option<usize>,
    ) -> Result<mpsc::UnboundedReceiver<Progress>, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.jobs
            .send(Job {
                prompts,
                options,
                score,
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

/// The raw bytes of a token: byte-level BPE tokens map back through GPT-2's byte alphabet;
/// SentencePiece pieces spell a space `▁` and a fallback byte `<0xXX>`.
fn token_bytes(tokenizer: &Tokenizer, id: u32) -> Vec<u8> {
    let Some(piece) = tokenizer.id_to_token(id) else {
        return Vec::new();
    };
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>'))
        && hex.len() == 2
        && let Ok(b) = u8::from_str_radix(hex, 16)
    {
        return vec![b];
    }
    if piece.contains('\u{2581}') {
        return piece.replace('\u{2581}', " ").into_bytes();
    }
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

/// Text that is safe to send: everything but a tail that could still become a stop string, or
/// a character still being spelled out byte by byte (shown as U+FFFD until its last byte comes,
/// and then taken back), so nothing sent ever changes.
fn safe_prefix_len(text: &str, stops: &[String]) -> usize {
    let mut cut = text.trim_end_matches('\u{FFFD}').len();
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
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let deadline = s.deadline();
    let body = s.body(body)?;
    let req: CompletionRequest = parse_body(&body)?;
    s.check_model(&req.model)?;
    let tok = &s.tokenizer;
    let prompts: Vec<Vec<u32>> = match req.prompt {
        PromptInput::Text(t) => vec![
            tok.encode(&t, true)
                .map_err(|e| s.client_error(&e, "invalid_prompt"))?,
        ],
        PromptInput::Texts(ts) => ts
            .iter()
            .map(|t| tok.encode(t, true))
            .collect::<Result<_>>()
            .map_err(|e| s.client_error(&e, "invalid_prompt"))?,
        PromptInput::Ids(ids) => vec![ids],
        PromptInput::IdLists(l) => l,
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::field(
            "prompt",
            "The prompt is empty",
            "invalid_prompt",
        ));
    }
    if prompts.len() > 64 {
        return Err(ApiError::field(
            "prompt",
            "At most 64 prompts per request",
            "invalid_prompt",
        ));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(k) = req.prompt_logprobs
        && k > 20
    {
        return Err(ApiError::field(
            "prompt_logprobs",
            format!("`prompt_logprobs` is {k}; at most 20"),
            "invalid_value",
        ));
    }
    let echo_logprobs = (req.echo && req.logprobs.is_some()).then(|| req.logprobs.unwrap_or(0));
    let score = match (req.prompt_logprobs, echo_logprobs) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    };
    if req.stream && (req.echo || req.prompt_logprobs.is_some()) {
        return Err(ApiError::field(
            if req.echo { "echo" } else { "prompt_logprobs" },
            "`echo` and `prompt_logprobs` are answered whole, not streamed; send the request \
             without `stream`",
            "invalid_value",
        ));
    }
    let (options, n) = s.options(
        Sampling {
            max_tokens: req.max_tokens,
            max_tokens_field: "max_tokens",
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            n: req.n,
            stop: req.stop,
            seed: req.seed,
            logprobs: req.logprobs.unwrap_or(0),
            logprobs_field: "logprobs",
            scores_prompt: req.echo || req.prompt_logprobs.is_some(),
        },
        longest,
    )?;
    let prompts: Vec<Vec<u32>> = prompts
        .into_iter()
        .flat_map(|p| std::iter::repeat_n(p, n))
        .collect();
    let want_logprobs = req.logprobs.is_some();
    let as_ids = req.return_tokens_as_token_ids;
    let (echo, prompt_k, echo_k) = (req.echo, req.prompt_logprobs, req.logprobs.unwrap_or(0));
    let rows = prompts.clone();
    reply(
        &s,
        Endpoint::COMPLETIONS,
        prompts,
        options,
        score,
        req.stream,
        deadline,
        move |tok, row, g, scores| {
            let prompt = &rows[row];
            let mut text = tok.decode_continuation(&g.ids, true).unwrap_or_default();
            if echo {
                text = tok.decode(prompt, true).unwrap_or_default() + &text;
            }
            let logprobs = want_logprobs.then(|| {
                let mut lp = completion_logprobs(tok, g, as_ids);
                if echo {
                    lp = echoed_logprobs(tok, prompt, scores, echo_k, lp, as_ids);
                }
                lp
            });
            let mut choice = json!({
                "text": text,
                "finish_reason": finish_reason(g.finish),
                "logprobs": logprobs,
            });
            if let Some(k) = prompt_k {
                choice["prompt_logprobs"] = prompt_logprobs(tok, prompt, scores, k);
            }
            choice
        },
        move |tok, delta, token, finish| {
            let logprobs = match (token, want_logprobs) {
                (Some((tid, lp, top)), true) => json!({
                    "tokens": [token_text(tok, tid, as_ids)],
                    "token_logprobs": [lp],
                    "top_logprobs": [top_map(tok, top, as_ids)],
                }),
                _ => Value::Null,
            };
            json!({"text": delta, "finish_reason": finish, "logprobs": logprobs})
        },
    )
    .await
}

/// vLLM's `prompt_logprobs`: `null` for the first token (nothing comes before it), then per token
/// a map from token id to its logprob, rank and text, holding the top `k` and the token itself.
fn prompt_logprobs(tok: &Tokenizer, prompt: &[u32], scores: &[Scored], k: usize) -> Value {
    let mut out = Vec::with_capacity(prompt.len());
    out.push(Value::Null);
    for sc in scores {
        let mut m = serde_json::Map::new();
        for (rank, t) in sc.top.iter().take(k).enumerate() {
            m.insert(
                t.id.to_string(),
                json!({"logprob": t.logprob, "rank": rank + 1, "decoded_token": token_text(tok, t.id, false)}),
            );
        }
        m.entry(sc.id.to_string()).or_insert_with(|| {
            json!({"logprob": sc.logprob, "rank": sc.rank, "decoded_token": token_text(tok, sc.id, false)})
        });
        out.push(Value::Object(m));
    }
    Value::Array(out)
}

/// The OpenAI `logprobs` of an echoed prompt and its completion: the prompt's tokens first, the
/// first with `null` logprobs (nothing comes before it), then `completion`'s.
fn echoed_logprobs(
    tok: &Tokenizer,
    prompt: &[u32],
    scores: &[Scored],
    k: usize,
    completion: Value,
    as_ids: bool,
) -> Value {
    let mut tokens: Vec<Value> = prompt
        .iter()
        .map(|&i| json!(token_text(tok, i, as_ids)))
        .collect();
    let mut lps = vec![Value::Null];
    let mut tops = vec![Value::Null];
    for sc in scores {
        lps.push(json!(sc.logprob));
        let top: Vec<TopLogprob> = sc.top.iter().take(k).cloned().collect();
        tops.push(top_map(tok, &top, as_ids));
    }
    let list = |key: &str| {
        completion
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    tokens.extend(list("tokens"));
    lps.extend(list("token_logprobs"));
    tops.extend(list("top_logprobs"));
    let mut offsets = Vec::with_capacity(tokens.len());
    let mut at = 0;
    for t in &tokens {
        offsets.push(at);
        at += t.as_str().map_or(0, str::len);
    }
    json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// What tells one OpenAI endpoint's answers apart: the id's prefix and the objects' names.
struct Endpoint {
    id_prefix: &'static str,
    object: &'static str,
    chunk_object: &'static str,
}

impl Endpoint {
    const COMPLETIONS: Endpoint = Endpoint {
        id_prefix: "cmpl",
        object: "text_completion",
        chunk_object: "text_completion",
    };
    const CHAT: Endpoint = Endpoint {
        id_prefix: "chatcmpl",
        object: "chat.completion",
        chunk_object: "chat.completion.chunk",
    };
}

/// Runs `prompts` on the model and answers as `endpoint` does: one JSON object with a choice per
/// prompt (`choice` writes its fields from the row, its generation and its prompt's scores when
/// `score` asked for them), or, with `stream`, server-sent events with a chunk per
/// token (`chunk` writes its choice's fields from the new text, the token and the finish reason).
#[allow(clippy::too_many_arguments)]
async fn reply(
    s: &Arc<Shared>,
    endpoint: Endpoint,
    prompts: Vec<Vec<u32>>,
    options: GenerateOptions,
    score: Option<usize>,
    stream: bool,
    deadline: Option<tokio::time::Instant>,
    choice: impl Fn(&Tokenizer, usize, &Generated, &[Scored]) -> Value,
    chunk: impl Fn(&Tokenizer, String, Option<(u32, f32, &[TopLogprob])>, Option<&'static str>) -> Value
    + Send
    + Sync
    + 'static,
) -> Result<Response, ApiError> {
    let id = request_id(endpoint.id_prefix);
    let stops = options.stop.clone();
    let mut rx = s.submit(prompts.clone(), options, score)?;
    let model = s.options.model_name.clone();
    let created = now();
    if !stream {
        let (out, scores) = wait(s, &mut rx, deadline).await?;
        let choices: Vec<Value> = out
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut c = choice(
                    &s.tokenizer,
                    i,
                    g,
                    scores.get(i).map_or(&[][..], Vec::as_slice),
                );
                c["index"] = i.into();
                c
            })
            .collect();
        return Ok(Json(json!({
            "id": id, "object": endpoint.object, "created": created, "model": model,
            "choices": choices, "usage": usage(&prompts, &out),
        }))
        .into_response());
    }
    let object = endpoint.chunk_object;
    let stream = async_stream(
        rx,
        prompts.len(),
        s.tokenizer.clone(),
        stops,
        deadline.zip(s.options.timeout),
        s.clone(),
        move |tok, row, delta, token, finish| {
            let mut c = chunk(tok, delta, token, finish);
            c["index"] = row.into();
            json!({
                "id": id, "object": object, "created": created, "model": model,
                "choices": [c],
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

async fn chat(
    State(s): State<Arc<Shared>>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let deadline = s.deadline();
    let body = s.body(body)?;
    let req: ChatRequest = parse_body(&body)?;
    s.check_model(&req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::field(
            "messages",
            "`messages` is empty",
            "invalid_messages",
        ));
    }
    if s.tokenizer.chat_template().is_none() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "The model `{}` has no chat template, so it cannot turn `messages` into a \
                 prompt; send the text to /v1/completions instead (the server's operator can \
                 give the model a template with `workbench model convert --chat-template plain`)",
                s.options.model_name
            ),
            kind: "invalid_request_error",
            param: Some("messages"),
            code: "chat_template_missing",
        });
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
        .map_err(|e| ApiError {
            param: Some("messages"),
            ..s.client_error(&e, "chat_template")
        })?;
    // The template writes any BOS itself.
    let prompt = tok
        .encode(&text, false)
        .map_err(|e| s.client_error(&e, "invalid_prompt"))?;
    if prompt.is_empty() {
        return Err(ApiError::field(
            "messages",
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
            max_tokens_field: if req.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            },
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            n: req.n,
            stop: req.stop,
            seed: req.seed,
            logprobs: top,
            logprobs_field: "top_logprobs",
            scores_prompt: false,
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
    let want = req.logprobs;
    let as_ids = req.return_tokens_as_token_ids;
    let eos = options.eos_ids.clone();
    reply(
        &s,
        Endpoint::CHAT,
        vec![prompt; n],
        options,
        None,
        req.stream,
        deadline,
        move |tok, _, g, _| {
            let visible: Vec<u32> = g.ids.iter().copied().filter(|t| !eos.contains(t)).collect();
            let logprobs = want.then(|| {
                json!({"content": g.ids.iter().zip(&g.logprobs).zip(&g.top)
                    .map(|((&t, &lp), top)| chat_logprob_entry(tok, t, lp, top, as_ids)).collect::<Vec<_>>()})
            });
            json!({
                "message": {"role": "assistant", "content": tok.decode_continuation(&visible, true).unwrap_or_default()},
                "finish_reason": finish_reason(g.finish),
                "logprobs": logprobs,
            })
        },
        move |tok, delta, token, finish| {
            let logprobs = match (token, want) {
                (Some((tid, lp, top)), true) => {
                    json!({"content": [chat_logprob_entry(tok, tid, lp, top, as_ids)]})
                }
                _ => Value::Null,
            };
            json!({"delta": {"role": "assistant", "content": delta}, "finish_reason": finish, "logprobs": logprobs})
        },
    )
    .await
}

/// The next message from the worker, or `Err(())` once `deadline` has passed.
async fn next(
    rx: &mut mpsc::UnboundedReceiver<Progress>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Option<Progress>, ()> {
    match deadline {
        None => Ok(rx.recv().await),
        Some(d) => tokio::time::timeout_at(d, rx.recv()).await.map_err(|_| ()),
    }
}

/// Waits for the whole answer. Past the deadline the receiver is dropped with the request,
/// which stops the worker's generation at its next token.
async fn wait(
    s: &Shared,
    rx: &mut mpsc::UnboundedReceiver<Progress>,
    deadline: Option<tokio::time::Instant>,
) -> Result<(Vec<Generated>, Vec<Vec<Scored>>), ApiError> {
    loop {
        match next(rx, deadline).await {
            Ok(Some(Progress::Done(out, scores))) => return Ok((out, scores)),
            Ok(Some(Progress::Failed(bad, m))) => {
                let m = s.scrub(&m);
                return Err(if bad {
                    ApiError::bad(m, "generation_failed")
                } else {
                    ApiError::internal(m)
                });
            }
            Ok(Some(Progress::Token { .. })) => {}
            Ok(None) => {
                return Err(ApiError::internal(
                    "The model worker stopped before answering",
                ));
            }
            Err(()) => {
                let limit = s.options.timeout.unwrap_or_default();
                return Err(ApiError::timeout(limit));
            }
        }
    }
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
    deadline: Option<(tokio::time::Instant, Duration)>,
    shared: Arc<Shared>,
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
        let shared = shared.clone();
        async move {
            loop {
                if let Some(e) = st.pending.pop_front() {
                    return Some((Ok(e), st));
                }
                if st.finished {
                    return None;
                }
                let Ok(progress) = next(&mut st.rx, deadline.map(|d| d.0)).await else {
                    let limit = deadline.map(|d| d.1).unwrap_or_default();
                    let v = ApiError::timeout(limit).body();
                    st.pending.push_back(Event::default().data(v.to_string()));
                    st.pending.push_back(Event::default().data("[DONE]"));
                    st.finished = true;
                    // Dropping the receiver stops the worker at its next token.
                    st.rx.close();
                    continue;
                };
                match progress {
                    Some(Progress::Token {
                        row,
                        id,
                        logprob,
                        top,
                    }) => {
                        st.ids[row].push(id);
                        let text = tok
                            .decode_continuation(&st.ids[row], true)
                            .unwrap_or_default();
                        let safe = safe_prefix_len(&text, &stops);
                        // What was sent only ever grows: a slice that is not there yet waits.
                        let delta = match text.get(st.sent[row]..safe) {
                            Some(d) if safe > st.sent[row] => {
                                st.sent[row] = safe;
                                d.to_string()
                            }
                            _ => String::new(),
                        };
                        let v = chunk(&tok, row, delta, Some((id, logprob, &top)), None);
                        st.pending.push_back(Event::default().data(v.to_string()));
                    }
                    Some(Progress::Done(out, _)) => {
                        for (row, g) in out.iter().enumerate() {
                            let text = tok.decode_continuation(&g.ids, true).unwrap_or_default();
                            let delta = text.get(st.sent[row]..).unwrap_or("").to_string();
                            let v = chunk(&tok, row, delta, None, Some(finish_reason(g.finish)));
                            st.pending.push_back(Event::default().data(v.to_string()));
                        }
                        st.pending.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                    Some(Progress::Failed(bad, m)) => {
                        let m = shared.scrub(&m);
                        let v = if bad {
                            ApiError::bad(m, "generation_failed")
                        } else {
                            ApiError::internal(m)
                        }
                        .body();
                        st.pending.push_back(Event::default().data(v.to_string()));
                        st.pending.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                    None => {
                        // The worker let go of the request without an answer: it skipped it
                        // because its time had run out, or it stopped. Either way the client
                        // gets an error event, never a silent end.
                        let v = match deadline {
                            Some((d, limit)) if tokio::time::Instant::now() >= d => {
                                ApiError::timeout(limit).body()
                            }
                            _ => ApiError::internal("The model worker stopped before answering")
                                .body(),
                        };
                        st.pending.push_back(Event::default().data(v.to_string()));
                        st.pending.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                }
            }
        }
    })
}

/// The worker: owns the model, runs jobs in arrival order.
fn worker(model: Model, tokenizer: Arc<Tokenizer>, jobs: std_mpsc::Receiver<Job>) {
    for job in jobs {
        // Its client gave up (timed out, went away) while it waited in line.
        if job.events.is_closed() {
            continue;
        }
        let events = job.events.clone();
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
        let scores = match job.score {
            None => Ok(Vec::new()),
            Some(k) => job
                .prompts
                .iter()
                .map(|p| crate::generate::score(&model, p, k))
                .collect::<Result<Vec<_>>>(),
        };
        let result = scores.and_then(|scores| {
            if job.options.max_new_tokens == 0 {
                let none = Generated {
                    ids: Vec::new(),
                    logprobs: Vec::new(),
                    top: Vec::new(),
                    entropy: Vec::new(),
                    finish: FinishReason::Length,
                };
                return Ok((vec![none; job.prompts.len()], scores));
            }
            let out = generate_with(
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
            )?;
            Ok((out, scores))
        });
        let _ = match result {
            Ok((out, scores)) => job.events.send(Progress::Done(out, scores)),
            Err(e) => job
                .events
                .send(Progress::Failed(e.is_bad_input(), client_message(&e))),
        };
    }
}

/// The paths a client must never read, longest first (so a directory's full path goes before
/// its tail), each with what a client sees instead: the model's directory becomes the model's
/// name, the working directory `.`.
fn private_paths(options: &ServeOptions) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |path: PathBuf, shown: &str| {
        let text = path.display().to_string();
        if text.len() > 1 && !out.iter().any(|(p, _): &(String, String)| *p == text) {
            out.push((text, shown.to_string()));
        }
    };
    let dir = &options.model_dir;
    if let Ok(canonical) = dir.canonicalize() {
        add(canonical, &options.model_name);
    }
    if let Ok(absolute) = std::path::absolute(dir) {
        add(absolute, &options.model_name);
    }
    add(dir.clone(), &options.model_name);
    if let Ok(cwd) = std::env::current_dir() {
        add(cwd, ".");
    }
    if let Some(home) = std::env::var_os("HOME") {
        add(PathBuf::from(home), "~");
    }
    out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    out
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
        private: private_paths(&options),
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
                param: None,
                code: "not_found",
            }
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: format!(
                    "{method} is not allowed here; /v1/models takes GET, /v1/completions and \
                     /v1/chat/completions take POST"
                ),
                kind: "invalid_request_error",
                param: None,
                code: "method_not_allowed",
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
        // "é" spelled over two byte tokens: after the first, the decoded text ends in U+FFFD,
        // which is held back until the character is whole.
        assert_eq!(safe_prefix_len("caf\u{FFFD}", &[]), 3);
        assert_eq!(safe_prefix_len("caf\u{FFFD}\u{FFFD}", &stops), 3);
        assert_eq!(safe_prefix_len("café", &[]), "café".len());
    }
}
