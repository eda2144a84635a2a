//! JSON Lines and JSON arrays, read one row at a time, and JSON values turned into [`RowFields`].
//!
//! Neither format is ever parsed whole: JSONL goes line by line, a JSON array element by element
//! (a streaming serde visitor), so a multi-gigabyte export imports in flat memory. Errors carry
//! the line (JSONL) or the element index (JSON array) and the key.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{ColumnError, Error, Result};
use crate::record::{Message, RowFields, TextOrConv, TopLogprob};

/// A JSON object and where it was found, for messages.
pub type JsonRow = Map<String, Value>;

/// Where a row came from: `line N` or `element N`.
#[derive(Debug, Clone, Copy)]
pub enum RowAt {
    /// 1-based line of a JSONL or CSV file.
    Line(u64),
    /// 0-based element of a JSON array.
    Element(u64),
}

/// The error for a row: the file, where in it, and the message.
pub fn row_error(path: &Path, at: RowAt, message: String) -> Error {
    match at {
        RowAt::Line(line) => Error::Line {
            path: path.to_path_buf(),
            line,
            message,
        },
        RowAt::Element(index) => Error::Element {
            path: path.to_path_buf(),
            index,
            message,
        },
    }
}

/// Calls `f` with every object of a JSONL file, skipping blank lines.
pub fn read_lines(path: &Path, mut f: impl FnMut(RowAt, JsonRow) -> Result<()>) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut rows = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::read(path, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        let mut bytes = buf.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            row_error(
                path,
                RowAt::Line(line),
                format!(
                    "not valid UTF-8 (at byte {} of the line); re-encode the file as UTF-8",
                    e.valid_up_to()
                ),
            )
        })?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let value: TopLevel = serde_json::from_str(text).map_err(|e| {
            row_error(
                path,
                RowAt::Line(line),
                format!("not valid JSON (column {}): {e}", e.column()),
            )
        })?;
        let obj = match value {
            TopLevel::Row(obj) => obj,
            TopLevel::Duplicate(key) => {
                return Err(row_error(path, RowAt::Line(line), duplicate_key(&key)));
            }
            TopLevel::Other(kind) => {
                return Err(row_error(
                    path,
                    RowAt::Line(line),
                    format!("is {kind}; expected a JSON object per line"),
                ));
            }
        };
        f(RowAt::Line(line), obj)?;
        rows += 1;
    }
    Ok(rows)
}

/// Whether a `.json` file holds an array (as opposed to JSON Lines under a `.json` name).
pub fn is_array(path: &Path) -> Result<bool> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let mut head = [0u8; 4096];
    let n = file.read(&mut head).map_err(|e| Error::read(path, e))?;
    let head = head[..n]
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&head[..n]);
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['))
}

/// Calls `f` with every object of a JSON array, streaming.
pub fn read_array(path: &Path, mut f: impl FnMut(RowAt, JsonRow) -> Result<()>) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut state = ArrayState {
        path,
        f: &mut f,
        failed: None,
        rows: 0,
    };
    let result = (&mut state).deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = state.failed.take() {
        return Err(e);
    }
    result.map_err(|e| {
        let message = if e.is_eof() {
            "the file ends before the JSON array is closed (truncated?)".to_string()
        } else {
            format!("not valid JSON (column {}): {e}", e.column())
        };
        row_error(path, RowAt::Line(e.line() as u64), message)
    })?;
    Ok(state.rows)
}

struct ArrayState<'a, F> {
    path: &'a Path,
    f: &'a mut F,
    failed: Option<Error>,
    rows: u64,
}

impl<'de, F: FnMut(RowAt, JsonRow) -> Result<()>> DeserializeSeed<'de> for &mut ArrayState<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(RowAt, JsonRow) -> Result<()>> Visitor<'de> for &mut ArrayState<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut i = 0u64;
        while let Some(value) = seq.next_element::<TopLevel>()? {
            let at = RowAt::Element(i);
            let result = match value {
                TopLevel::Row(obj) => (self.f)(at, obj),
                TopLevel::Duplicate(key) => Err(row_error(self.path, at, duplicate_key(&key))),
                TopLevel::Other(kind) => Err(row_error(
                    self.path,
                    at,
                    format!("is {kind}; expected a JSON object"),
                )),
            };
            if let Err(e) = result {
                self.failed = Some(e);
                return Err(A::Error::custom("stopped"));
            }
            self.rows += 1;
            i += 1;
        }
        Ok(())
    }
}

/// One top-level JSON value of a data file: a row (an object whose keys are its columns), an
/// object that names a key twice, or something else (named for the message).
///
/// `serde_json` keeps the last of two equal keys; a row that says `prompt` twice is ambiguous,
/// so it is refused rather than read as either.
enum TopLevel {
    Row(JsonRow),
    Duplicate(String),
    Other(&'static str),
}

/// The message for a row that names a key twice.
pub(crate) fn duplicate_key(key: &str) -> String {
    format!(
        "the key `{key}` appears twice in one object, so the column's value is ambiguous; keep \
         one `{key}` per row (rename the other)"
    )
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<TopLevel, A::Error> {
        let mut row = JsonRow::new();
        while let Some(key) = map.next_key::<String>()? {
            if row.contains_key(&key) {
                // Read the rest, so the parser stays in step, and report the key.
                map.next_value::<serde::de::IgnoredAny>()?;
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                return Ok(TopLevel::Duplicate(key));
            }
            let value: Value = map.next_value()?;
            row.insert(key, value);
        }
        Ok(TopLevel::Row(row))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<TopLevel, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other("a list"))
    }

    fn visit_unit<E>(self) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other("null"))
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other("a string"))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Target column → source key.
pub type Mapping = BTreeMap<String, String>;

fn source<'a>(map: &'a Mapping, target: &'a str) -> &'a str {
    map.get(target).map(String::as_str).unwrap_or(target)
}

/// A CSV cell holding JSON (a list written into a cell) is parsed; anything else is kept.
fn unpack(v: &Value) -> std::borrow::Cow<'_, Value> {
    if let Value::String(s) = v {
        let t = s.trim_start();
        if (t.starts_with('[') || t.starts_with('{'))
            && let Ok(parsed) = serde_json::from_str::<Value>(s)
        {
            return std::borrow::Cow::Owned(parsed);
        }
    }
    std::borrow::Cow::Borrowed(v)
}

fn get<'a>(row: &'a JsonRow, map: &Mapping, target: &str) -> Option<&'a Value> {
    row.get(source(map, target)).filter(|v| !v.is_null())
}

fn err(map: &Mapping, target: &str, message: String) -> ColumnError {
    ColumnError::new(source(map, target), message)
}

fn text(row: &JsonRow, map: &Mapping, target: &str) -> Result<Option<String>, ColumnError> {
    match get(row, map, target) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(err(
            map,
            target,
            format!("is {}; expected text", kind_of(other)),
        )),
    }
}

fn messages_of(v: &Value, map: &Mapping, target: &str) -> Result<Vec<Message>, ColumnError> {
    let Value::Array(items) = v else {
        return Err(err(
            map,
            target,
            format!(
                "is {}; expected a list of {{role, content}} messages",
                kind_of(v)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str);
            let content = m.get("content").and_then(Value::as_str);
            match (role, content) {
                (Some(role), Some(content)) => Ok(Message::new(role, content)),
                _ => Err(err(
                    map,
                    target,
                    format!("message {i} is not an object with text `role` and `content`"),
                )),
            }
        })
        .collect()
}

fn messages(
    row: &JsonRow,
    map: &Mapping,
    target: &str,
) -> Result<Option<Vec<Message>>, ColumnError> {
    get(row, map, target)
        .map(|v| messages_of(&unpack(v), map, target))
        .transpose()
}

fn text_or_conv(
    row: &JsonRow,
    map: &Mapping,
    target: &str,
) -> Result<Option<TextOrConv>, ColumnError> {
    let Some(v) = get(row, map, target) else {
        return Ok(None);
    };
    match &*unpack(v) {
        Value::Array(_) => Ok(Some(TextOrConv::Conv(messages_of(
            &unpack(v),
            map,
            target,
        )?))),
        _ => Ok(text(row, map, target)?.map(TextOrConv::Text)),
    }
}

fn number<T: TryFrom<u64> + std::str::FromStr>(
    row: &JsonRow,
    map: &Mapping,
    target: &str,
    what: &str,
) -> Result<Option<T>, ColumnError> {
    match get(row, map, target) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| T::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| err(map, target, format!("is {n}; expected {what}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| err(map, target, format!("is `{s}`; expected {what}"))),
        Some(other) => Err(err(
            map,
            target,
            format!("is {}; expected {what}", kind_of(other)),
        )),
    }
}

fn float(row: &JsonRow, map: &Mapping, target: &str) -> Result<Option<f32>, ColumnError> {
    match get(row, map, target) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|v| v as f32)),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| err(map, target, format!("is `{s}`; expected a number"))),
        Some(other) => Err(err(
            map,
            target,
            format!("is {}; expected a number", kind_of(other)),
        )),
    }
}

fn timestamp(row: &JsonRow, map: &Mapping, target: &str) -> Result<Option<i64>, ColumnError> {
    match get(row, map, target) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            err(
                map,
                target,
                format!("is {n}; expected microseconds since 1970 or an RFC 3339 time"),
            )
        }),
        Some(Value::String(s)) => {
            let s = s.trim();
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_micros())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                        .map(|t| t.and_utc().timestamp_micros())
                })
                .map(Some)
                .map_err(|_| {
                    err(
                        map,
                        target,
                        format!("is `{s}`; expected an RFC 3339 time such as 2024-05-01T12:00:00Z"),
                    )
                })
        }
        Some(other) => Err(err(
            map,
            target,
            format!("is {}; expected a time", kind_of(other)),
        )),
    }
}

fn ids(row: &JsonRow, map: &Mapping, target: &str) -> Result<Option<Vec<u32>>, ColumnError> {
    let Some(v) = get(row, map, target) else {
        return Ok(None);
    };
    let Value::Array(items) = &*unpack(v) else {
        return Err(err(
            map,
            target,
            format!("is {}; expected a list of token ids", kind_of(v)),
        ));
    };
    items
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    err(
                        map,
                        target,
                        format!("holds {x}; token ids are integers from 0 to 4294967295"),
                    )
                })
        })
        .collect::<Result<Vec<u32>, _>>()
        .map(Some)
}

fn topk(
    row: &JsonRow,
    map: &Mapping,
    target: &str,
) -> Result<Option<Vec<Vec<TopLogprob>>>, ColumnError> {
    let Some(v) = get(row, map, target) else {
        return Ok(None);
    };
    let bad = || {
        err(
            map,
            target,
            "expected a list (one per token) of lists of {\"id\": int, \"logprob\": float} (or [id, logprob] pairs)".into(),
        )
    };
    let Value::Array(tokens) = &*unpack(v) else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        let Value::Array(entries) = token else {
            return Err(bad());
        };
        let mut list = Vec::with_capacity(entries.len());
        for e in entries {
            let (id, lp) = match e {
                Value::Object(o) => (o.get("id"), o.get("logprob")),
                Value::Array(pair) if pair.len() == 2 => (pair.first(), pair.get(1)),
                _ => return Err(bad()),
            };
            let id = id
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(bad)?;
            let logprob = lp.and_then(Value::as_f64).ok_or_else(bad)? as f32;
            list.push(TopLogprob { id, logprob });
        }
        out.push(list);
    }
    Ok(Some(out))
}

/// Reads one JSON row's fields through the column mapping.
pub fn row_fields(row: &JsonRow, map: &Mapping) -> Result<RowFields, ColumnError> {
    Ok(RowFields {
        id: text(row, map, "id")?,
        prompt: text_or_conv(row, map, "prompt")?,
        messages: messages(row, map, "messages")?,
        completion: text_or_conv(row, map, "completion")?,
        has_completion_column: row.contains_key(source(map, "completion")),
        completion_ids: ids(row, map, "completion_ids")?,
        teacher_topk: topk(row, map, "teacher_topk")?,
        teacher: text(row, map, "teacher")?,
        logprob_mean: float(row, map, "logprob_mean")?,
        entropy_mean: float(row, map, "entropy_mean")?,
        disagreement: float(row, map, "disagreement")?,
        reference: text(row, map, "reference")?,
        template: text(row, map, "template")?,
        slice: text(row, map, "slice")?,
        seed: number::<u64>(row, map, "seed", "a non-negative integer")?,
        created_at: timestamp(row, map, "created_at")?,
        chosen: text_or_conv(row, map, "chosen")?,
        rejected: text_or_conv(row, map, "rejected")?,
        source: text(row, map, "source")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> JsonRow {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn a_conversational_row_gives_prompt_messages_and_answer() {
        let row = obj(
            r#"{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#,
        );
        let s = row_fields(&row, &Mapping::new())
            .unwrap()
            .into_sample(0)
            .unwrap();
        assert_eq!(s.prompt, "hi");
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.completion.as_deref(), Some("hello"));
    }

    #[test]
    fn mapping_renames_source_keys() {
        let row = obj(r#"{"question": "2+2?", "answer": 4}"#);
        let map = Mapping::from([
            ("prompt".into(), "question".into()),
            ("reference".into(), "answer".into()),
        ]);
        let s = row_fields(&row, &map).unwrap().into_sample(0).unwrap();
        assert_eq!(
            (s.prompt.as_str(), s.reference.as_deref()),
            ("2+2?", Some("4"))
        );
    }

    #[test]
    fn a_wrong_type_names_the_source_key() {
        let row = obj(r#"{"q": {"x": 1}}"#);
        let map = Mapping::from([("prompt".into(), "q".into())]);
        let e = row_fields(&row, &map).unwrap_err();
        assert_eq!(e.column, "q");
        assert!(e.message.contains("expected text"), "{}", e.message);
    }

    #[test]
    fn topk_accepts_objects_and_pairs() {
        let row = obj(
            r#"{"prompt": "p", "completion_ids": [5, 6], "teacher_topk": [[{"id": 5, "logprob": -0.1}], [[6, -0.2], [7, -3.0]]]}"#,
        );
        let s = row_fields(&row, &Mapping::new())
            .unwrap()
            .into_sample(0)
            .unwrap();
        assert_eq!(
            s.teacher_topk[1][1],
            TopLogprob {
                id: 7,
                logprob: -3.0
            }
        );
    }

    #[test]
    fn a_truncated_array_is_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(&p, r#"[{"prompt": "a"}, {"prompt": "b""#).unwrap();
        let e = read_array(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("a.json"), "{e}");
    }

    #[test]
    fn a_bad_jsonl_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(&p, "{\"prompt\": \"a\"}\n\n{\"prompt\": oops}\n").unwrap();
        let e = read_lines(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    /// A row with two `prompt` keys was read as its last one.
    #[test]
    fn a_key_given_twice_is_refused_in_jsonl_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"x\": {\"y\": 1}, \"prompt\": \"c\", \"z\": [1]}\n",
        )
        .unwrap();
        let e = read_lines(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(
            e.contains("a.jsonl` line 2") && e.contains("`prompt` appears twice"),
            "{e}"
        );
        let p = dir.path().join("a.json");
        std::fs::write(&p, r#"[{"prompt": "a"}, {"prompt": "b", "prompt": "c"}]"#).unwrap();
        let e = read_array(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(
            e.contains("a.json` element 1") && e.contains("`prompt` appears twice"),
            "{e}"
        );
        // Keys repeated in nested objects, and other top-level values, are as before.
        std::fs::write(&p, r#"[{"prompt": "a", "m": {"k": 1}}, 3]"#).unwrap();
        let mut rows = 0;
        let e = read_array(&p, |_, _| {
            rows += 1;
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(rows, 1);
        assert!(e.contains("element 1: is a number"), "{e}");
    }
}
