//! Chat templates: the Jinja program a checkpoint ships to turn a conversation into the one string
//! its model was trained on.
//!
//! Every prompt the teacher answers and every example the student trains on goes through here, so
//! the text must be the one transformers' `tokenizer.apply_chat_template(messages, tokenize=False)`
//! makes, byte for byte: a stray newline is a different token sequence, and a student trained on
//! it would answer prompts it never sees when served. We render with minijinja set up as
//! transformers sets up jinja2 (`utils/chat_template_utils.py`): `trim_blocks` and
//! `lstrip_blocks` on, the trailing newline of the source dropped, lenient undefined values,
//! Python's string methods, `raise_exception`, `strftime_now`, its own `tojson`, and the
//! `{% generation %}` block. Values are printed the way Python prints them (`True`, `None`,
//! `['a']`), since templates print booleans and lists more often than one would hope.
//!
//! The parity fixtures in `tests/fixtures/chat/` are rendered by transformers itself
//! (`tests/fixtures/make_chat_fixtures.py`).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datasets::Message;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Rest, ValueKind, ValueOrKwargs, from_args};
use minijinja::{AutoEscape, Environment, ErrorKind, State, Value};

use crate::error::{Error, Result};

/// The name the template is stored under in its environment.
const NAME: &str = "chat_template";

/// A context variable a template cannot name (`$` is not an identifier character), through which
/// `strftime_now` learns the render's clock.
const NOW_VAR: &str = "$now";

/// A compiled chat template.
///
/// Compiling happens once, in [`ChatTemplate::new`]; rendering is cheap and may run on many
/// threads at once (clones share the compiled program).
#[derive(Clone)]
pub struct ChatTemplate {
    source: Arc<str>,
    origin: Option<String>,
    env: Arc<Environment<'static>>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl PartialEq for ChatTemplate {
    /// Two templates are equal when their sources are: they render the same.
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// What a template sees besides the conversation: the tokenizer's special tokens and any extra
/// variables (transformers' `**kwargs` to `apply_chat_template`, such as Qwen3's
/// `enable_thinking`).
///
/// A `None` token is not passed at all, as transformers leaves unset tokens out, so the template
/// sees it as undefined (`{{ bos_token }}` prints nothing). `tools` and `documents` are always
/// passed as `none`, as transformers does when it is given none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateContext {
    /// `bos_token`: the beginning-of-sequence token, as text.
    pub bos_token: Option<String>,
    /// `eos_token`: the end-of-sequence token, as text.
    pub eos_token: Option<String>,
    /// `unk_token`: the unknown token, as text.
    pub unk_token: Option<String>,
    /// `pad_token`: the padding token, as text.
    pub pad_token: Option<String>,
    /// Further variables, by name; they override the special tokens above, as in transformers.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The clock `strftime_now` reads; `None` is the system clock. Pin it where the rendered text
    /// must not change from one day to the next (Llama 3.2 writes today's date into its prompt).
    pub now: Option<SystemTime>,
}

/// Variables the renderer sets itself; `extra` may not set them (Python would refuse the call
/// with "got multiple values for keyword argument").
const RESERVED: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

impl ChatTemplate {
    /// Compiles `source`. `origin` names where it came from (a file, a config key) in errors.
    ///
    /// A syntax error is an [`Error::Template`] naming the origin and the line.
    pub fn new(source: impl Into<String>, origin: Option<String>) -> Result<ChatTemplate> {
        let source: String = source.into();
        let mut env = environment().map_err(|e| template_error(&origin, &e))?;
        env.add_template_owned(NAME, replace_generation_tags(&source))
            .map_err(|e| template_error(&origin, &e))?;
        Ok(ChatTemplate {
            source: source.into(),
            origin,
            env: Arc::new(env),
        })
    }

    /// The Jinja source, as given (before the `{% generation %}` rewrite).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from, if known.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// Renders `messages` as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does, with the variables in `ctx`.
    ///
    /// Fails with [`Error::Template`] when the conversation is empty, when the template calls
    /// `raise_exception` (the error carries its message; Mistral's templates refuse roles that
    /// do not alternate this way) or when it does something Jinja refuses.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        ctx: &TemplateContext,
    ) -> Result<String> {
        if messages.is_empty() {
            return Err(self.error(
                "cannot apply a chat template to an empty conversation; give at least one message",
            ));
        }
        if let Some(key) = RESERVED.iter().find(|k| ctx.extra.contains_key(**k)) {
            return Err(self.error(format!(
                "the extra variable `{key}` is set by the renderer and cannot be overridden"
            )));
        }
        let now = ctx.now.unwrap_or_else(SystemTime::now);
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };

        let mut vars: Vec<(String, Value)> = Vec::with_capacity(ctx.extra.len() + 9);
        for (name, token) in [
            ("bos_token", &ctx.bos_token),
            ("eos_token", &ctx.eos_token),
            ("unk_token", &ctx.unk_token),
            ("pad_token", &ctx.pad_token),
        ] {
            if let Some(token) = token
                && !ctx.extra.contains_key(name)
            {
                vars.push((name.to_owned(), Value::from(token.as_str())));
            }
        }
        for (name, value) in &ctx.extra {
            vars.push((name.clone(), json_to_value(value)));
        }
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        vars.push(("messages".into(), Value::from(messages)));
        vars.push(("tools".into(), Value::from(())));
        vars.push(("documents".into(), Value::from(())));
        vars.push((
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        ));
        vars.push((NOW_VAR.into(), Value::from(now)));

        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&self.origin, &e))?;
        template
            .render(Value::from_pairs(vars))
            .map_err(|e| template_error(&self.origin, &e))
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Template {
            origin: self.origin.clone(),
            message: message.into(),
        }
    }
}

/// A minijinja environment configured as transformers configures jinja2 for chat templates.
fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_debug(false);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            // jinja2's default, which transformers keeps: one trailing newline of the source goes.
            .keep_trailing_newline(false)
            .build()?,
    );
    // jinja2's default `Undefined`: prints as nothing, iterates as empty, is false; only
    // attribute access on it fails. minijinja's `Lenient` is exactly that.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(python_method);
    env.set_formatter(python_formatter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    Ok(env)
}

/// Python's methods on strings, lists and dicts (`.strip()`, `.startswith()`, `.items()`, ...),
/// from `minijinja_contrib::pycompat`, except `str.title`, which there follows jinja2's `title`
/// filter ("It's") rather than Python ("It'S").
fn python_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    if method == "title"
        && let Some(s) = value.as_str()
        && value.kind() == ValueKind::String
    {
        let () = from_args(args)?;
        return Ok(Value::from(python_title(s)));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.title()`: a cased character after a cased one is lowered, any other is raised.
fn python_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_is_cased = false;
    for c in s.chars() {
        let cased = c.is_uppercase() || c.is_lowercase();
        if previous_is_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        previous_is_cased = cased;
    }
    out
}

/// The error `raise_exception` puts under minijinja's, so that we can tell the template's own
/// refusal from a failure of the engine and report only the template's words.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// `raise_exception(message)`: makes rendering fail with `message`.
fn raise_exception(message: Value) -> Result<Value, minijinja::Error> {
    let message = match message.as_str() {
        Some(s) => s.to_owned(),
        None => python_str(&message),
    };
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(Raised(message)),
    )
}

/// `strftime_now(format)`: the render's clock formatted as Python's `datetime.now().strftime`.
fn strftime_now(state: &State, format: &str) -> Result<Value, minijinja::Error> {
    let now = state
        .lookup(NOW_VAR)
        .and_then(|v| v.as_i64())
        .ok_or_else(|| {
            minijinja::Error::new(ErrorKind::InvalidOperation, "strftime_now has no clock")
        })?;
    Ok(Value::from(strftime(format, now)))
}

/// Turns a minijinja error into ours, with the line and the template's own message when it
/// called `raise_exception`.
fn template_error(origin: &Option<String>, e: &minijinja::Error) -> Error {
    let mut raised = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Raised>() {
            raised = Some(r.0.clone());
            break;
        }
        source = err.source();
    }
    let line = e
        .line()
        .map(|l| format!(" on line {l}"))
        .unwrap_or_default();
    let message = match raised {
        Some(m) => format!("{m} (raised by the template{line})"),
        None => {
            let mut message = match e.detail() {
                Some(detail) => format!("{}{line}: {detail}", e.kind()),
                None => format!("{}{line}", e.kind()),
            };
            // Errors from filters and functions chain their cause underneath.
            let mut source = std::error::Error::source(e);
            while let Some(err) = source {
                let _ = write!(message, ": {err}");
                source = err.source();
            }
            message
        }
    };
    Error::Template {
        origin: origin.clone(),
        message,
    }
}

/// Rewrites transformers' `{% generation %}` ... `{% endgeneration %}` (a jinja2 extension that
/// marks assistant text for loss masks) as `{% if true %}` ... `{% endif %}`: the same output,
/// the same whitespace control and the same line numbers, in a syntax minijinja knows.
fn replace_generation_tags(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let close = match bytes[i + 1] {
            b'{' => "}}",
            b'%' => "%}",
            b'#' => "#}",
            _ => {
                i += 1;
                continue;
            }
        };
        let Some(end) = tag_end(source, i + 2, close) else {
            break;
        };
        if close == "%}"
            && let Some(replaced) = rewrite_generation_tag(&source[i..end])
        {
            out.push_str(&source[copied..i]);
            out.push_str(&replaced);
            copied = end;
        }
        i = end;
    }
    out.push_str(&source[copied..]);
    out
}

/// Where the tag opened before `from` ends (just past `close`), skipping quoted strings.
fn tag_end(source: &str, from: usize, close: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut quote = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if close != "#}" && (b == b'\'' || b == b'"') => quote = Some(b),
            None if bytes[i..].starts_with(close.as_bytes()) => return Some(i + close.len()),
            None => {}
        }
        i += 1;
    }
    None
}

/// `{%- generation +%}` becomes `{%- if true +%}`; anything else is left alone.
fn rewrite_generation_tag(tag: &str) -> Option<String> {
    let inner = &tag[2..tag.len() - 2];
    let (open, inner) = match inner.as_bytes().first() {
        Some(b'-' | b'+') => inner.split_at(1),
        _ => ("", inner),
    };
    let (inner, close) = match inner.as_bytes().last() {
        Some(b'-' | b'+') => inner.split_at(inner.len() - 1),
        _ => (inner, ""),
    };
    let replacement = match inner.trim() {
        "generation" => "if true",
        "endgeneration" => "endif",
        _ => return None,
    };
    Some(format!("{{%{open} {replacement} {close}%}}"))
}

/// Prints a value as Python's `str()` does, where that differs from minijinja's default.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Seq | ValueKind::Map => {
            out.write_str(&python_str(value))?;
            Ok(())
        }
        ValueKind::Number if !value.is_integer() => {
            out.write_str(&python_str(value))?;
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str(value)`: strings as they are, everything else as `repr`.
fn python_str(value: &Value) -> String {
    match value.as_str() {
        Some(s) if value.kind() == ValueKind::String => s.to_owned(),
        _ => {
            let mut out = String::new();
            python_repr(value, &mut out);
            out
        }
    }
}

/// Python's `repr(value)` for the types a template sees (str, int, float, bool, None, list,
/// dict); other objects print as minijinja prints them.
fn python_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => {
            let _ = write!(out, "{value}");
        }
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(f) => python_float(f, false, out),
            Err(_) => {
                let _ = write!(out, "{value}");
            }
        },
        ValueKind::String => python_str_repr(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_repr(&key, out);
                    out.push_str(": ");
                    python_repr(&value.get_item(&key).unwrap_or_default(), out);
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double one.
fn python_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !python_printable(c) => {
                let n = u32::from(c);
                let _ = match n {
                    0..=0xff => write!(out, "\\x{n:02x}"),
                    0x100..=0xffff => write!(out, "\\u{n:04x}"),
                    _ => write!(out, "\\U{n:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for one character, for the categories that occur in text: control
/// and format characters, separators other than the space, private use and surrogates are not
/// printable. (Unassigned code points, which Python also escapes, are printed as they are.)
fn python_printable(c: char) -> bool {
    let n = u32::from(c);
    !(c.is_control()
        || matches!(
            n,
            0xa0 | 0xad
                | 0x600..=0x605
                | 0x61c
                | 0x6dd
                | 0x70f
                | 0x1680
                | 0x180e
                | 0x2000..=0x200f
                | 0x2028..=0x202f
                | 0x205f..=0x2064
                | 0x2066..=0x206f
                | 0x3000
                | 0xd800..=0xf8ff
                | 0xfeff
                | 0xfff9..=0xfffb
                | 0xf0000..
        ))
}

/// Python's `repr(float)`: the shortest text that reads back as the same float, in scientific
/// notation below 1e-4 and from 1e16 on. `json` writes `NaN`/`Infinity` as `json.dumps` does.
fn python_float(f: f64, json: bool, out: &mut String) {
    if f.is_nan() {
        out.push_str(if json { "NaN" } else { "nan" });
        return;
    }
    if f.is_infinite() {
        if f < 0.0 {
            out.push('-');
        }
        out.push_str(if json { "Infinity" } else { "inf" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7", "1e16", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() > point {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            } else {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, with those four as positional or keyword arguments.
/// Unlike jinja2's own, it does not escape `<`, `>`, `&` and `'`.
fn tojson(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, minijinja::Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    if positional.len() > 4 {
        return Err(minijinja::Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments: ensure_ascii, indent, separators, sort_keys",
        ));
    }
    let arg = |i: usize, name: &str| -> Result<Option<Value>, minijinja::Error> {
        let kw: Option<Value> = kwargs.get(name)?;
        Ok(kw.or_else(|| positional.get(i).cloned()))
    };
    let ensure_ascii = arg(0, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let indent = match arg(1, "indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_owned()),
        Some(v) => match i64::try_from(v.clone()) {
            // Python treats a negative or zero indent as "newlines, no spaces".
            Ok(n) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            Err(_) => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent must be an integer or a string, not {v}"),
                ));
            }
        },
    };
    let (item_sep, key_sep) = match arg(2, "separators")? {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => (
                    a.as_str().unwrap_or_default().to_owned(),
                    b.as_str().unwrap_or_default().to_owned(),
                ),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ));
                }
            }
        }
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    let sort_keys = arg(3, "sort_keys")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    let json = PyJson {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    json.write(value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Python's `json.dumps` with its options.
struct PyJson {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl PyJson {
    fn write(&self, value: &Value, level: usize, out: &mut String) -> Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number if value.is_integer() => {
                let _ = write!(out, "{value}");
            }
            ValueKind::Number => python_float(f64::try_from(value.clone())?, true, out),
            ValueKind::String => self.write_str(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.write_container(('[', ']'), items.len(), level, out, |i, out| {
                    self.write(&items[i], level + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut items = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    items.push((json_key(&key)?, item));
                }
                if self.sort_keys {
                    items.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(('{', '}'), items.len(), level, out, |i, out| {
                    self.write_str(&items[i].0, out);
                    out.push_str(&self.key_sep);
                    self.write(&items[i].1, level + 1, out)
                })?;
            }
            kind => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("Object of type {kind} is not JSON serializable"),
                ));
            }
        }
        Ok(())
    }

    fn write_container(
        &self,
        (open, close): (char, char),
        len: usize,
        level: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), minijinja::Error>,
    ) -> Result<(), minijinja::Error> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                for _ in 0..level {
                    out.push_str(indent);
                }
            }
        };
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(out, level + 1);
            item(i, out)?;
        }
        newline(out, level);
        out.push(close);
        Ok(())
    }

    /// A JSON string as Python writes it: `\n`-style escapes for the usual five and `\u00XX` for
    /// the other control characters. With `ensure_ascii`, every character outside printable ASCII
    /// becomes a `\uXXXX` escape; a character above the Basic Multilingual Plane becomes two of
    /// them (a surrogate pair).
    fn write_str(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c if self.ensure_ascii && !(' '..='~').contains(&c) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A dict key as `json.dumps` writes it: strings as they are, numbers, booleans and None as text.
fn json_key(key: &Value) -> Result<String, minijinja::Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::Number if key.is_integer() => Ok(key.to_string()),
        ValueKind::Number => {
            let mut out = String::new();
            python_float(f64::try_from(key.clone())?, true, &mut out);
            Ok(out)
        }
        kind => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("keys must be str, int, float, bool or None, not {kind}"),
        )),
    }
}

/// A JSON value as a template value (objects keep their key order).
fn json_to_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

/// Python's `datetime.now().strftime(format)` on glibc for a naive UTC time `unix` seconds after
/// the epoch (transformers calls it on a naive local time; on a server that is UTC). `%z` and
/// `%Z` are empty for a naive time; a `-` after `%` drops the padding, as glibc does; unknown
/// directives are kept as they are.
fn strftime(format: &str, unix: i64) -> String {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[weekday];

    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let num = |out: &mut String, n: i64, width: usize, pad: char| {
            if unpadded {
                let _ = write!(out, "{n}");
            } else if pad == ' ' {
                let _ = write!(out, "{n:>width$}");
            } else {
                let _ = write!(out, "{n:0width$}");
            }
        };
        match chars.next() {
            Some('Y') => num(&mut out, year, 1, '0'),
            Some('y') => num(&mut out, year.rem_euclid(100), 2, '0'),
            Some('C') => num(&mut out, year.div_euclid(100), 2, '0'),
            Some('m') => num(&mut out, month, 2, '0'),
            Some('d') => num(&mut out, day, 2, '0'),
            Some('e') => num(&mut out, day, 2, ' '),
            Some('j') => num(&mut out, yday, 3, '0'),
            Some('H') => num(&mut out, hour, 2, '0'),
            Some('I') => num(&mut out, hour12, 2, '0'),
            Some('M') => num(&mut out, minute, 2, '0'),
            Some('S') => num(&mut out, second, 2, '0'),
            Some('u') => num(
                &mut out,
                if weekday == 0 { 7 } else { weekday as i64 },
                1,
                '0',
            ),
            Some('w') => num(&mut out, weekday as i64, 1, '0'),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b' | 'h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('F') => out.push_str(&strftime("%Y-%m-%d", unix)),
            Some('D' | 'x') => out.push_str(&strftime("%m/%d/%y", unix)),
            Some('T' | 'X') => out.push_str(&strftime("%H:%M:%S", unix)),
            Some('R') => out.push_str(&strftime("%H:%M", unix)),
            Some('c') => out.push_str(&strftime("%a %b %e %H:%M:%S %Y", unix)),
            Some('z' | 'Z') => {}
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "tests/chat.rs"]
mod tests;
