//! A teacher behind any OpenAI-compatible server: vLLM, llama.cpp, Ollama, hosted APIs.
//!
//! Chat or completions with `logprobs` / `top_logprobs`; bounded concurrency; retries with
//! exponential backoff and jitter on connection errors, timeouts, 408, 409, 429 and 5xx
//! (honouring `Retry-After`); several base URLs as a fleet (see [`super::fleet`]: the least busy
//! server first, a failing one taken out until a health check passes). Token ids come from the server
//! when it returns them as `token_id:N` (vLLM's `return_tokens_as_token_ids`, which the
//! workbench's own server honours too); otherwise token strings are mapped through a tokenizer
//! and the answer is marked approximate.
//!
//! It also scores tokens the teacher did not write ([`OpenAiTeacher::score`]): a student's
//! sample, graded token by token for on-policy distillation. `/v1/completions` with the token
//! ids as the prompt and `max_tokens = 0`, first with vLLM's `prompt_logprobs = k`, and, if the
//! server does not answer that, with `echo = true` and `logprobs = k` (the OpenAI shape); the
//! shape that worked is used from then on.
//!
//! The API key is read from the environment variable the config names, sent as a bearer token,
//! and never formatted into a message, a log line or a file.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use datasets::TopLogprob;
use datasets::config::{ApiKind, TeacherConfig};
use rand::Rng as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::data::tokenizer::Tokenizer;
use crate::{Error, Result};

use super::fleet::{Fleet, TAKE_OUT_AFTER};
use super::{Request, Response, Teacher, TeacherStats, entropy_from_topk, now_micros};

/// The API key, kept out of `Debug` and `Display`.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Whether a base URL points at this machine.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.as_str().to_string(),
    }
}

struct Shared {
    client: reqwest::Client,
    fleet: Arc<Fleet>,
    model: String,
    api: ApiKind,
    key: Option<Secret>,
    token_ids: bool,
    tokenizer: Option<Tokenizer>,
    max_retries: u32,
    backoff: Duration,
    backoff_max: Duration,
    requests: AtomicU64,
    retries: AtomicU64,
    /// How the servers score tokens: [`SHAPE_UNKNOWN`] until one answers.
    score_shape: AtomicU8,
}

/// No server has scored yet.
const SHAPE_UNKNOWN: u8 = 0;
/// vLLM's `prompt_logprobs`.
const SHAPE_PROMPT_LOGPROBS: u8 = 1;
/// `echo` with `logprobs`.
const SHAPE_ECHO: u8 = 2;

/// A sequence for the teacher to score: every token after the first `prompt_len`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRequest {
    /// Prompt then completion, as token ids of the teacher's vocabulary.
    pub ids: Vec<u32>,
    /// How many of `ids` are the prompt (at least 1).
    pub prompt_len: usize,
    /// How many of the teacher's top logprobs to return per token.
    pub top_logprobs: usize,
}

/// The response-cache key of a score: the teacher, the tokens and what is asked of them.
pub fn score_key(cache_id: &str, r: &ScoreRequest) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"workbench-teacher-score-v1\0");
    h.update(cache_id.as_bytes());
    h.update(b"\0");
    h.update(&serde_json::to_vec(r).expect("score requests serialise"));
    h.finalize().to_hex()[..32].to_string()
}

/// An OpenAI-compatible server (or a fleet of them).
pub struct OpenAiTeacher {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    concurrency: usize,
    id: String,
    cache_id: String,
}

impl OpenAiTeacher {
    /// Connects nothing yet: checks the URLs (a host off this machine needs `allow_remote`),
    /// reads the API key from its environment variable, and builds the client. `tokenizer` maps
    /// token strings to ids when the server does not return ids.
    pub fn new(config: &TeacherConfig, tokenizer: Option<Tokenizer>) -> Result<OpenAiTeacher> {
        let model = config
            .model
            .clone()
            .ok_or_else(|| Error::invalid("`teacher.model` is missing"))?;
        let mut urls = Vec::new();
        for raw in config
            .base_url
            .as_ref()
            .map(|u| u.to_vec())
            .unwrap_or_default()
        {
            let trimmed = raw.trim_end_matches('/');
            let url = reqwest::Url::parse(&format!("{trimmed}/")).map_err(|e| {
                Error::invalid(format!(
                    "`teacher.base_url` `{raw}` is not a URL ({e}); expected e.g. \
                     `http://127.0.0.1:8000/v1`"
                ))
            })?;
            let host = host_of(&url);
            if !is_loopback(&url) && !config.allow_remote {
                return Err(Error::invalid(format!(
                    "`teacher.base_url` points at `{host}`, which is not this machine; prompts \
                     would leave it\n\nhint: set `teacher.allow_remote = true` if that is \
                     intended (the run records which hosts received prompts)"
                )));
            }
            urls.push((url, host));
        }
        if urls.is_empty() {
            return Err(Error::invalid("`teacher.base_url` names no server"));
        }
        let key = match &config.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret(v)),
                _ => {
                    return Err(Error::invalid(format!(
                        "`teacher.api_key_env` names `{var}`, but `{var}` is not set in the \
                         environment\n\nhint: export {var}=... in the shell that runs the \
                         workbench (the key is never written to any file)"
                    )));
                }
            },
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(config.timeout_secs))
            .connect_timeout(Duration::from_secs_f64(config.timeout_secs.min(30.0)))
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .map_err(|e| Error::teacher(format!("Cannot build the HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::teacher(format!("Cannot start the async runtime: {e}")))?;
        let api = match config.api {
            ApiKind::Chat => "chat",
            ApiKind::Completions => "completions",
        };
        Ok(OpenAiTeacher {
            shared: Arc::new(Shared {
                client,
                fleet: Arc::new(Fleet::new(urls)),
                model: model.clone(),
                api: config.api,
                key,
                token_ids: config.token_ids,
                tokenizer,
                max_retries: config.max_retries,
                backoff: Duration::from_millis(config.backoff_ms),
                backoff_max: Duration::from_millis(config.backoff_max_ms.max(config.backoff_ms)),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                score_shape: AtomicU8::new(SHAPE_UNKNOWN),
            }),
            runtime,
            concurrency: config.concurrency.max(1),
            id: format!("openai:{model}"),
            cache_id: format!("openai:{api}:{model}"),
        })
    }
}

impl OpenAiTeacher {
    /// The run's `[teacher]`, with `teacher.tokenizer` (relative to the config file) to map
    /// token strings when the server returns no ids.
    pub fn for_run(loaded: &datasets::config::LoadedConfig) -> Result<OpenAiTeacher> {
        let t = &loaded.config.teacher;
        let tokenizer = t
            .tokenizer
            .as_ref()
            .map(|p| Tokenizer::from_dir(&loaded.resolve(p)))
            .transpose()?;
        OpenAiTeacher::new(t, tokenizer)
    }

    /// Has the server score `requests`: for each, a [`Response`] whose `ids` are the tokens
    /// after the prompt, with the teacher's logprob of each and its top-k there, passed to
    /// `done(i, response)` as each arrives. Fails, naming both, when the server answers neither
    /// `prompt_logprobs` nor `echo` with `logprobs`.
    pub fn score(
        &mut self,
        requests: &[ScoreRequest],
        done: &mut dyn FnMut(usize, Response) -> Result<()>,
    ) -> Result<()> {
        if let Some(bad) = requests
            .iter()
            .find(|r| r.prompt_len == 0 || r.prompt_len > r.ids.len())
        {
            return Err(Error::invalid(format!(
                "A score request has a prompt of {} tokens in a sequence of {}; the prompt must \
                 hold at least 1 token and no more than the sequence",
                bad.prompt_len,
                bad.ids.len()
            )));
        }
        self.fan_out(
            requests,
            |s, r| async move { score_call(&s, &r).await },
            done,
            &|failed, of, e| format!("The teacher failed to score {failed} of {of} samples: {e}"),
        )
    }

    /// Sends every request through `call`, at most `concurrency` at a time, passing each answer
    /// to `done(i, response)` as it arrives; stops at the first error of `done` (recording failed:
    /// the disk), and after all have ended reports the failures with `failed(count, of, first)`.
    fn fan_out<R, F, Fut>(
        &self,
        requests: &[R],
        call: F,
        done: &mut dyn FnMut(usize, Response) -> Result<()>,
        failed: &dyn Fn(usize, usize, String) -> String,
    ) -> Result<()>
    where
        R: Clone + Send + 'static,
        F: Fn(Arc<Shared>, R) -> Fut + Copy + Send + 'static,
        Fut: std::future::Future<Output = std::result::Result<Response, String>> + Send,
    {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, std::result::Result<Response, String>)>();
        let slots = Arc::new(Semaphore::new(self.concurrency));
        for (i, request) in requests.iter().enumerate() {
            let shared = self.shared.clone();
            let slots = slots.clone();
            let tx = tx.clone();
            let request = request.clone();
            self.runtime.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let result = call(shared, request).await;
                let _ = tx.send((i, result));
            });
        }
        drop(tx);
        let mut first_error: Option<String> = None;
        let mut count = 0usize;
        for (i, result) in rx {
            match result {
                Ok(r) => done(i, r)?,
                Err(e) => {
                    count += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(Error::teacher(failed(count, requests.len(), e))),
        }
    }
}

/// Scores one sequence in the shape the servers answer, finding it on the first call.
async fn score_call(s: &Shared, r: &ScoreRequest) -> std::result::Result<Response, String> {
    let shape = s.score_shape.load(Ordering::Relaxed);
    let mut refused = None;
    if shape != SHAPE_ECHO {
        let body = json!({
            "model": s.model,
            "prompt": r.ids,
            "max_tokens": 0,
            "temperature": 0.0,
            "prompt_logprobs": r.top_logprobs,
        });
        match call_with(s, "completions", &body, &|v| read_prompt_logprobs(v, r)).await {
            Ok(mut x) => {
                s.score_shape
                    .store(SHAPE_PROMPT_LOGPROBS, Ordering::Relaxed);
                x.prompt_tokens = r.ids.len() as u64;
                return Ok(x);
            }
            // A server that does not know the field refuses the request or ignores it: try
            // the other shape.
            Err(f) if shape == SHAPE_UNKNOWN && !f.retry => refused = Some(f.message),
            Err(f) => return Err(f.message),
        }
    }
    let mut body = json!({
        "model": s.model,
        "prompt": r.ids,
        "max_tokens": 0,
        "temperature": 0.0,
        "echo": true,
        "logprobs": r.top_logprobs,
    });
    if s.token_ids {
        body["return_tokens_as_token_ids"] = json!(true);
    }
    match call_with(s, "completions", &body, &|v| read_echo(s, v, r)).await {
        Ok(mut x) => {
            s.score_shape.store(SHAPE_ECHO, Ordering::Relaxed);
            x.prompt_tokens = r.ids.len() as u64;
            Ok(x)
        }
        Err(f) => Err(match refused {
            // Refused alike in both shapes: the request itself is at fault, not the shape.
            Some(first) if first == f.message => first,
            Some(first) if !f.retry => format!(
                "the server scores tokens neither with `prompt_logprobs` ({first}) nor with \
                 `echo` and `logprobs` ({})\n\nhint: serve the teacher with vLLM or `workbench \
                 serve`, which answer both, or distil off-policy (`distill.on_policy = 0`)",
                f.message
            ),
            _ => f.message,
        }),
    }
}

/// A scored sequence's completion as a [`Response`]: the tokens after the prompt, each with its
/// logprob and the top-k.
fn scored(
    r: &ScoreRequest,
    logprobs: Vec<f32>,
    top: Vec<Vec<TopLogprob>>,
    exact: bool,
) -> Response {
    let entropy_mean = (!top.is_empty() && top.iter().all(|t| !t.is_empty()))
        .then(|| top.iter().map(|t| entropy_from_topk(t)).sum::<f32>() / top.len() as f32);
    Response {
        text: String::new(),
        ids: r.ids[r.prompt_len..].to_vec(),
        ids_exact: exact,
        logprobs,
        top,
        entropy_mean,
        finish: "length".into(),
        prompt_tokens: r.ids.len() as u64,
        completion_tokens: 0,
        host: None,
        received_at: now_micros(),
    }
}

/// The `k` best of a position's (id, logprob) pairs, most likely first (ties to the lower id).
fn best_of(mut pairs: Vec<TopLogprob>, k: usize) -> Vec<TopLogprob> {
    pairs.sort_by(|a, b| b.logprob.total_cmp(&a.logprob).then(a.id.cmp(&b.id)));
    pairs.dedup_by_key(|t| t.id);
    pairs.truncate(k);
    pairs
}

/// Reads vLLM's `prompt_logprobs`: per prompt token (the first is `null`) a map from token id to
/// `{logprob, rank, decoded_token}` holding the top-k and the token itself.
fn read_prompt_logprobs(v: &Value, r: &ScoreRequest) -> std::result::Result<Response, Failure> {
    let choice = v.get("choices").and_then(|c| c.get(0));
    let list = choice
        .and_then(|c| c.get("prompt_logprobs"))
        .or_else(|| v.get("prompt_logprobs"))
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::fatal("the answer has no `prompt_logprobs`"))?;
    if list.len() != r.ids.len() {
        return Err(Failure::fatal(format!(
            "`prompt_logprobs` has {} entries for a prompt of {} tokens",
            list.len(),
            r.ids.len()
        )));
    }
    let (mut logprobs, mut top) = (Vec::new(), Vec::new());
    for (at, (entry, &id)) in list.iter().zip(&r.ids).enumerate().skip(r.prompt_len) {
        let map = entry.as_object().ok_or_else(|| {
            Failure::fatal(format!("`prompt_logprobs` has no scores at token {at}"))
        })?;
        let mut pairs = Vec::with_capacity(map.len());
        for (key, x) in map {
            let tid = key.parse::<u32>().map_err(|_| {
                Failure::fatal(format!(
                    "`prompt_logprobs` names the token `{}`, not an id",
                    datasets::text::inert(key)
                ))
            })?;
            let lp = x
                .get("logprob")
                .and_then(Value::as_f64)
                .ok_or_else(|| Failure::fatal(format!("token {tid} at {at} has no `logprob`")))?;
            pairs.push(TopLogprob {
                id: tid,
                logprob: lp as f32,
            });
        }
        let own = pairs.iter().find(|t| t.id == id).ok_or_else(|| {
            Failure::fatal(format!(
                "`prompt_logprobs` at token {at} does not score the token there ({id})"
            ))
        })?;
        logprobs.push(own.logprob);
        top.push(best_of(pairs, r.top_logprobs));
    }
    Ok(scored(r, logprobs, top, true))
}

/// Reads an `echo` answer's `logprobs`: the prompt's tokens (the first with `null` logprobs),
/// each with its logprob and a map from token to logprob.
fn read_echo(s: &Shared, v: &Value, r: &ScoreRequest) -> std::result::Result<Response, Failure> {
    let lp = v
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("logprobs"))
        .filter(|l| !l.is_null())
        .ok_or_else(|| Failure::fatal("the answer to `echo` has no `logprobs`"))?;
    let field = |k: &str| {
        lp.get(k)
            .and_then(Value::as_array)
            .filter(|a| a.len() >= r.ids.len())
            .ok_or_else(|| {
                Failure::fatal(format!(
                    "the answer to `echo` has no `logprobs.{k}` for the {} prompt tokens",
                    r.ids.len()
                ))
            })
    };
    let (tokens, lps, tops) = (
        field("tokens")?,
        field("token_logprobs")?,
        field("top_logprobs")?,
    );
    let mut exact = true;
    let (mut logprobs, mut top) = (Vec::new(), Vec::new());
    for at in r.prompt_len..r.ids.len() {
        let (id, e) =
            map_token(s, tokens[at].as_str().unwrap_or(""), None).map_err(Failure::fatal)?;
        exact &= e;
        if e && id != r.ids[at] {
            return Err(Failure::fatal(format!(
                "the echoed token {at} is {id}, but {} was sent; the server changed the prompt",
                r.ids[at]
            )));
        }
        let own = lps[at]
            .as_f64()
            .ok_or_else(|| Failure::fatal(format!("the echoed token {at} has no logprob")))?;
        let mut pairs = Vec::new();
        if let Some(map) = tops[at].as_object() {
            for (k, x) in map {
                let (tid, e) = map_token(s, k, None).map_err(Failure::fatal)?;
                exact &= e;
                pairs.push(TopLogprob {
                    id: tid,
                    logprob: x.as_f64().unwrap_or(f64::NEG_INFINITY) as f32,
                });
            }
        }
        if pairs.is_empty() && r.top_logprobs > 0 {
            return Err(Failure::fatal(format!(
                "the echoed token {at} has no `top_logprobs`"
            )));
        }
        logprobs.push(own as f32);
        top.push(best_of(pairs, r.top_logprobs));
    }
    Ok(scored(r, logprobs, top, exact))
}

impl Teacher for OpenAiTeacher {
    fn id(&self) -> &str {
        &self.id
    }

    fn cache_id(&self) -> &str {
        &self.cache_id
    }

    fn batch_size(&self) -> usize {
        // Enough to keep every slot busy while answers are recorded.
        self.concurrency * 4
    }

    fn answer(
        &mut self,
        requests: &[Request],
        done: &mut dyn FnMut(usize, Response) -> Result<()>,
    ) -> Result<()> {
        self.fan_out(
            requests,
            |s, r| async move { call(&s, &r).await },
            done,
            &|failed, of, e| format!("The teacher failed on {failed} of {of} prompts: {e}"),
        )
    }

    fn stats(&self) -> TeacherStats {
        let servers = self.shared.fleet.stats();
        TeacherStats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            retries: self.shared.retries.load(Ordering::Relaxed),
            // Hosts that received prompts: the fleet counts what each was sent.
            hosts: servers
                .iter()
                .filter(|s| s.requests > 0)
                .map(|s| s.host.clone())
                .collect(),
            servers,
        }
    }
}

/// One failed attempt: whether to try again, after how long the server asked, and why.
struct Failure {
    retry: bool,
    after: Option<Duration>,
    /// The server is alive but asks for time (408, 409, 429): not a failure of the server's
    /// making, so it does not count towards taking it out of the fleet.
    busy: bool,
    message: String,
}

impl Failure {
    /// An answer that trying again would not change.
    fn fatal(message: impl Into<String>) -> Failure {
        Failure {
            retry: false,
            after: None,
            busy: false,
            message: message.into(),
        }
    }
}

async fn call(s: &Shared, r: &Request) -> std::result::Result<Response, String> {
    let path = match s.api {
        ApiKind::Chat => "chat/completions",
        ApiKind::Completions => "completions",
    };
    call_with(s, path, &body(s, r), &|v| parse(s, v))
        .await
        .map_err(|f| f.message)
}

/// Posts `body` to `path` under the next server, retrying what can be retried, and reads the
/// answer with `read`; the failure it gives up on names the host.
async fn call_with(
    s: &Shared,
    path: &str,
    body: &Value,
    read: &(dyn Fn(&Value) -> std::result::Result<Response, Failure> + Sync),
) -> std::result::Result<Response, Failure> {
    let mut attempt = 0u32;
    loop {
        start_health_checks(s);
        let lease = s.fleet.lease();
        let (url, host) = (lease.server().url.clone(), lease.server().host.clone());
        s.requests.fetch_add(1, Ordering::Relaxed);
        let failure = match attempt_once(s, &url, path, body, read).await {
            Ok(mut response) => {
                lease.answered(response.completion_tokens);
                response.host = Some(host);
                return Ok(response);
            }
            Err(f) => {
                if lease.failed(f.retry && !f.busy) {
                    tracing::warn!(
                        "teacher {host}: taken out of the fleet after {TAKE_OUT_AFTER} failures in a row; a health check (GET models) brings it back"
                    );
                }
                f
            }
        };
        if !failure.retry || attempt >= s.max_retries {
            let tries = attempt + 1;
            let note = if failure.retry {
                format!(
                    " (gave up after {tries} attempts; raise `teacher.max_retries` or check the server)"
                )
            } else {
                String::new()
            };
            return Err(Failure {
                message: format!("{host}: {}{note}", failure.message),
                ..failure
            });
        }
        let backoff = backoff(s, attempt);
        let wait = failure
            .after
            .map(|a| a.min(Duration::from_secs(600)))
            .unwrap_or(backoff);
        tracing::warn!(
            "teacher {host}: {} (attempt {} of {}); retrying in {:.1} s",
            failure.message,
            attempt + 1,
            s.max_retries + 1,
            wait.as_secs_f64()
        );
        s.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Runs the health checks that are due, in the background: `GET {base}models`, which every
/// OpenAI-compatible server answers.
fn start_health_checks(s: &Shared) {
    for i in s.fleet.due_checks() {
        let fleet = s.fleet.clone();
        let client = s.client.clone();
        let key = s.key.clone();
        let Ok(url) = fleet.servers()[i].url.join("models") else {
            fleet.checked(i, false);
            continue;
        };
        tokio::spawn(async move {
            let mut req = client.get(url).timeout(Duration::from_secs(5));
            if let Some(key) = &key {
                req = req.bearer_auth(&key.0);
            }
            let healthy = req.send().await.is_ok_and(|r| r.status().is_success());
            if fleet.checked(i, healthy) {
                tracing::info!(
                    "teacher {}: back in the fleet (its health check passed)",
                    fleet.servers()[i].host
                );
            }
        });
    }
}

/// Exponential backoff with equal jitter: half the step, plus a random part of the other half.
fn backoff(s: &Shared, attempt: u32) -> Duration {
    let step = s
        .backoff
        .saturating_mul(1u32 << attempt.min(20))
        .min(s.backoff_max);
    let half = step / 2;
    let jitter = rand::rng().random_range(0.0..=1.0);
    half + half.mul_f64(jitter)
}

fn body(s: &Shared, r: &Request) -> Value {
    let mut body = match s.api {
        ApiKind::Chat => json!({
            "model": s.model,
            "messages": r.messages,
            "max_tokens": r.max_tokens,
            "logprobs": true,
            "top_logprobs": r.top_logprobs,
        }),
        ApiKind::Completions => json!({
            "model": s.model,
            "prompt": r.prompt,
            "max_tokens": r.max_tokens,
            "logprobs": r.top_logprobs,
        }),
    };
    let map = body.as_object_mut().expect("an object");
    map.insert("temperature".into(), json!(r.temperature));
    map.insert("top_p".into(), json!(r.top_p));
    map.insert("seed".into(), json!(r.seed));
    map.insert("n".into(), json!(1));
    if !r.stop.is_empty() {
        map.insert("stop".into(), json!(r.stop));
    }
    if s.token_ids {
        map.insert("return_tokens_as_token_ids".into(), json!(true));
    }
    body
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::Utc::now();
    Some(
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The message and code of an error body, in any of the shapes servers use: `{"error":
/// {"message", "type", "code"}}` with `code` a string or an integer, `{"error": "..."}`,
/// `{"message": ..., "code": ...}`, `{"detail": ...}`.
pub fn error_text(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return if text.is_empty() {
            "no error body".into()
        } else {
            format!("`{}`", datasets::text::inert(&truncate(text, 200)))
        };
    };
    let e = v.get("error").unwrap_or(&v);
    let message = e
        .get("message")
        .or_else(|| e.get("detail"))
        .and_then(Value::as_str)
        .or_else(|| e.as_str())
        .unwrap_or("no message");
    let code = match e.get("code").or_else(|| v.get("code")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let message = datasets::text::inert(&truncate(message, 300));
    match code {
        Some(c) => format!("{message} (code {})", datasets::text::inert(&c)),
        None => message,
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

async fn attempt_once(
    s: &Shared,
    base: &reqwest::Url,
    path: &str,
    body: &Value,
    read: &(dyn Fn(&Value) -> std::result::Result<Response, Failure> + Sync),
) -> std::result::Result<Response, Failure> {
    let url = base.join(path).map_err(|e| Failure {
        retry: false,
        after: None,
        busy: false,
        message: format!("bad URL: {e}"),
    })?;
    let mut req = s.client.post(url).json(body);
    if let Some(key) = &s.key {
        req = req.bearer_auth(&key.0);
    }
    let transport = |e: reqwest::Error| Failure {
        retry: true,
        after: None,
        busy: false,
        message: if e.is_timeout() {
            "no answer within `teacher.timeout_secs`".to_string()
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            format!("the connection failed ({})", without_url(&e))
        },
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let after = retry_after(resp.headers());
    let bytes = resp.bytes().await.map_err(transport)?;
    if !status.is_success() {
        let code = status.as_u16();
        let retry = matches!(code, 408 | 409 | 429) || status.is_server_error();
        let mut message = format!("HTTP {code}: {}", error_text(&bytes));
        if code == 400 && s.token_ids && message.contains("return_tokens_as_token_ids") {
            message.push_str(
                "\n\nhint: if the server does not know `return_tokens_as_token_ids`, set \
                 `teacher.token_ids = false` (token strings are then mapped through \
                 `teacher.tokenizer`)",
            );
        }
        if code == 401 || code == 403 {
            message.push_str("\n\nhint: check the key in the variable `teacher.api_key_env` names");
        }
        return Err(Failure {
            retry,
            after,
            busy: matches!(code, 408 | 409 | 429),
            message,
        });
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| Failure {
        retry: true,
        after: None,
        busy: false,
        message: format!("the answer is not valid JSON ({e})"),
    })?;
    read(&v)
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One token as the server returned it.
struct RawToken {
    token: String,
    bytes: Option<Vec<u8>>,
    logprob: f32,
    top: Vec<(String, Option<Vec<u8>>, f32)>,
}

fn parse(s: &Shared, v: &Value) -> std::result::Result<Response, Failure> {
    parse_answer(s, v).map_err(|message| Failure {
        retry: true,
        after: None,
        busy: false,
        message,
    })
}

fn parse_answer(s: &Shared, v: &Value) -> std::result::Result<Response, String> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("the answer has no `choices`")?;
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop")
        .to_string();
    let (text, tokens) = match s.api {
        ApiKind::Chat => {
            let text = choice
                .get("message")
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut tokens = Vec::new();
            if let Some(content) = choice
                .get("logprobs")
                .and_then(|l| l.get("content"))
                .and_then(Value::as_array)
            {
                for t in content {
                    tokens.push(RawToken {
                        token: t.get("token").and_then(Value::as_str).unwrap_or("").into(),
                        bytes: bytes_of(t),
                        logprob: t.get("logprob").and_then(Value::as_f64).unwrap_or(0.0) as f32,
                        top: t
                            .get("top_logprobs")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .map(|x| {
                                        (
                                            x.get("token")
                                                .and_then(Value::as_str)
                                                .unwrap_or("")
                                                .to_string(),
                                            bytes_of(x),
                                            x.get("logprob").and_then(Value::as_f64).unwrap_or(0.0)
                                                as f32,
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
            }
            (text, tokens)
        }
        ApiKind::Completions => {
            let text = choice
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut tokens = Vec::new();
            if let Some(lp) = choice.get("logprobs").filter(|l| !l.is_null()) {
                let toks = lp.get("tokens").and_then(Value::as_array);
                let lps = lp.get("token_logprobs").and_then(Value::as_array);
                let tops = lp.get("top_logprobs").and_then(Value::as_array);
                if let (Some(toks), Some(lps)) = (toks, lps) {
                    for (i, t) in toks.iter().enumerate() {
                        let top = tops
                            .and_then(|a| a.get(i))
                            .and_then(Value::as_object)
                            .map(|m| {
                                let mut v: Vec<_> = m
                                    .iter()
                                    .map(|(k, x)| {
                                        (k.clone(), None, x.as_f64().unwrap_or(0.0) as f32)
                                    })
                                    .collect();
                                v.sort_by(|a, b| b.2.total_cmp(&a.2));
                                v
                            })
                            .unwrap_or_default();
                        tokens.push(RawToken {
                            token: t.as_str().unwrap_or("").to_string(),
                            bytes: None,
                            logprob: lps.get(i).and_then(Value::as_f64).unwrap_or(0.0) as f32,
                            top,
                        });
                    }
                }
            }
            (text, tokens)
        }
    };
    let usage = v.get("usage");
    let count = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let mut exact = true;
    let mut ids = Vec::with_capacity(tokens.len());
    let mut logprobs = Vec::with_capacity(tokens.len());
    let mut top = Vec::with_capacity(tokens.len());
    if tokens.is_empty() && !text.is_empty() {
        // The server ignored `logprobs`: ids from the tokenizer, no teacher distribution.
        let tok = s.tokenizer.as_ref().ok_or(
            "the server returned no logprobs and no token ids; set `teacher.tokenizer` to map \
             the text to ids, or use a server that returns logprobs",
        )?;
        ids = tok.encode(&text, false).map_err(|e| e.to_string())?;
        exact = false;
    }
    for t in &tokens {
        let (id, e) = map_token(s, &t.token, t.bytes.as_deref())?;
        exact &= e;
        ids.push(id);
        logprobs.push(t.logprob);
        let mut row = Vec::with_capacity(t.top.len());
        for (tok, bytes, lp) in &t.top {
            let (id, e) = map_token(s, tok, bytes.as_deref())?;
            exact &= e;
            if !row.iter().any(|x: &TopLogprob| x.id == id) {
                row.push(TopLogprob { id, logprob: *lp });
            }
        }
        top.push(row);
    }
    let entropy_mean = (!top.is_empty() && top.iter().all(|t| !t.is_empty()))
        .then(|| top.iter().map(|t| entropy_from_topk(t)).sum::<f32>() / top.len() as f32);
    Ok(Response {
        text,
        completion_tokens: count("completion_tokens").unwrap_or(ids.len() as u64),
        prompt_tokens: count("prompt_tokens").unwrap_or(0),
        ids,
        ids_exact: exact,
        logprobs,
        top,
        entropy_mean,
        finish,
        host: None,
        received_at: now_micros(),
    })
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    v.get("bytes")?
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}

/// A returned token as an id: exact from `token_id:N`, else through the tokenizer.
fn map_token(
    s: &Shared,
    token: &str,
    bytes: Option<&[u8]>,
) -> std::result::Result<(u32, bool), String> {
    if let Some(n) = token.strip_prefix("token_id:") {
        return n.parse::<u32>().map(|id| (id, true)).map_err(|_| {
            format!(
                "the token `{}` is not `token_id:N`",
                datasets::text::inert(token)
            )
        });
    }
    let Some(tok) = &s.tokenizer else {
        return Err(
            "the server returned token strings, not ids, and `teacher.tokenizer` is not set; \
             set it to the served model's tokenizer directory to map them (approximate), or start \
             vLLM with `--return-tokens-as-token-ids`"
                .into(),
        );
    };
    if let Some(id) = tok.token_to_id(token) {
        return Ok((id, false));
    }
    // Byte-level BPE vocabularies spell bytes with GPT-2's printable alphabet.
    let raw = bytes.unwrap_or(token.as_bytes());
    let spelled: String = raw.iter().map(|&b| byte_char(b)).collect();
    if let Some(id) = tok.token_to_id(&spelled) {
        return Ok((id, false));
    }
    let ids = tok.encode(token, false).map_err(|e| e.to_string())?;
    ids.first()
        .copied()
        .map(|id| (id, false))
        .ok_or_else(|| format!("the token `{}` maps to no id", datasets::text::inert(token)))
}

/// GPT-2's byte → printable character table.
fn byte_char(b: u8) -> char {
    let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable {
        return char::from(b);
    }
    let mut n = 0u32;
    for x in 0..=255u8 {
        let p = (b'!'..=b'~').contains(&x) || (0xA1..=0xAC).contains(&x) || x >= 0xAE;
        if !p {
            if x == b {
                return char::from_u32(256 + n).unwrap_or('?');
            }
            n += 1;
        }
    }
    '?'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_in_every_shape_give_a_message_and_code() {
        assert_eq!(
            error_text(
                br#"{"error": {"message": "slow down", "type": "rate", "code": "rate_limit"}}"#
            ),
            "slow down (code rate_limit)"
        );
        assert_eq!(
            error_text(br#"{"error": {"message": "bad", "code": 400}}"#),
            "bad (code 400)"
        );
        assert_eq!(error_text(br#"{"error": "plain"}"#), "plain");
        assert_eq!(
            error_text(br#"{"object": "error", "message": "m", "code": 503}"#),
            "m (code 503)"
        );
        assert_eq!(error_text(b"<html>oops</html>"), "`<html>oops</html>`");
        assert_eq!(error_text(b""), "no error body");
    }

    /// vLLM's `prompt_logprobs` holds the top k and the token itself (k + 1 entries when the
    /// token is not among them): the grade is the token's logprob and the k best, best first.
    #[test]
    fn prompt_logprobs_give_the_tokens_logprob_and_the_top_k() {
        let r = ScoreRequest {
            ids: vec![5, 7, 9],
            prompt_len: 1,
            top_logprobs: 2,
        };
        let v = json!({"choices": [{"text": "", "prompt_logprobs": [
            null,
            {"7": {"logprob": -0.1, "rank": 1}, "3": {"logprob": -2.5, "rank": 2}},
            {"4": {"logprob": -0.2, "rank": 1}, "1": {"logprob": -1.5, "rank": 2},
             "9": {"logprob": -4.0, "rank": 7}},
        ]}]});
        let got = read_prompt_logprobs(&v, &r).ok().unwrap();
        assert_eq!(got.ids, [7, 9]);
        assert_eq!(got.logprobs, [-0.1, -4.0]);
        let ids: Vec<Vec<u32>> = got
            .top
            .iter()
            .map(|t| t.iter().map(|x| x.id).collect())
            .collect();
        assert_eq!(ids, [vec![7, 3], vec![4, 1]]);

        // Entries missing or not covering the sequence are refused, never guessed.
        let short = json!({"choices": [{"prompt_logprobs": [null, {"7": {"logprob": -0.1}}]}]});
        assert!(
            read_prompt_logprobs(&short, &r)
                .err()
                .unwrap()
                .message
                .contains("2 entries")
        );
        let none = json!({"choices": [{"text": "x"}]});
        assert!(!read_prompt_logprobs(&none, &r).err().unwrap().retry);
        let own_missing = json!({"choices": [{"prompt_logprobs": [
            null, {"3": {"logprob": -0.1}}, {"9": {"logprob": -0.2}}]}]});
        let e = read_prompt_logprobs(&own_missing, &r)
            .err()
            .unwrap()
            .message;
        assert!(e.contains("does not score the token there (7)"), "{e}");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for (u, want) in [
            ("http://127.0.0.1:8000/v1/", true),
            ("http://localhost:1/", true),
            ("http://[::1]:9/", true),
            ("http://127.9.9.9/", true),
            ("https://api.openai.com/v1/", false),
            ("http://10.0.0.1/", false),
        ] {
            assert_eq!(is_loopback(&reqwest::Url::parse(u).unwrap()), want, "{u}");
        }
    }

    #[test]
    fn gpt2_byte_alphabet() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
