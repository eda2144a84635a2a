//! The response cache: every teacher answer, keyed by a hash of the teacher and the full request.
//!
//! One append-only JSON Lines file. Each answer is written (one `write`) as soon as it arrives,
//! so a process killed at any moment loses at most the answers still in flight; the file is
//! fsynced after every batch. A line cut short by a kill is detected on open and cut off. The
//! file holds answers and request hashes only: never a request's headers, never an API key.
//!
//! The index (key → offset) is in memory; answers are read back from the file when needed, so
//! memory does not grow with the top-k of every row.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Request, Response};
use crate::{Error, Result};

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    key: String,
    /// Whether the answer's token ids are the teacher's own (kept beside the answer so the set's
    /// metadata can say so before any answer is read back).
    #[serde(default = "yes")]
    exact: bool,
    #[serde(borrow)]
    response: std::borrow::Cow<'a, serde_json::value::RawValue>,
}

fn yes() -> bool {
    true
}

/// An open response cache (locked against a second process).
pub struct ResponseCache {
    path: PathBuf,
    file: File,
    index: HashMap<String, (u64, usize, bool)>,
    end: u64,
    dropped_tail: u64,
}

/// The key of a request to a teacher.
pub fn key(cache_id: &str, request: &Request) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"workbench-teacher-cache-v1\0");
    h.update(cache_id.as_bytes());
    h.update(b"\0");
    h.update(&serde_json::to_vec(request).expect("requests serialise"));
    h.finalize().to_hex()[..32].to_string()
}

impl ResponseCache {
    /// Opens (creating) the cache at `path`, takes its lock, and indexes what it holds.
    pub fn open(path: &Path) -> Result<ResponseCache> {
        let new_folder = path.parent().is_some_and(|p| !p.exists());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::Write {
                path: parent.to_path_buf(),
                source: e,
            })?;
        }
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::Write {
                path: path.to_path_buf(),
                source: e,
            })?;
        if created {
            // The new file's name (and its new folder's) survives a power cut along with the
            // answers synced into it.
            let absolute = std::path::absolute(path).map_err(|e| Error::Write {
                path: path.to_path_buf(),
                source: e,
            })?;
            let folders = absolute
                .ancestors()
                .skip(1)
                .take(if new_folder { 2 } else { 1 });
            for folder in folders {
                datasets::atomic::sync_dir(folder)?;
            }
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::invalid(format!(
                    "The response cache `{}` is in use by another workbench process\n\nhint: \
                     wait for it to finish, or stop it; two generators on one run would ask \
                     the teacher twice",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Write {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        }
        let len = file
            .metadata()
            .map_err(|e| Error::Read {
                path: path.to_path_buf(),
                source: e,
            })?
            .len();
        let mut index = HashMap::new();
        let mut reader = BufReader::new(&file);
        let mut offset = 0u64;
        let mut line = Vec::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::Read {
                    path: path.to_path_buf(),
                    source: e,
                })?;
            if n == 0 {
                break;
            }
            number += 1;
            let complete = line.last() == Some(&b'\n');
            let parsed = complete
                .then(|| serde_json::from_slice::<Line<'_>>(&line).ok())
                .flatten();
            // Where the response's JSON sits inside the line: we write lines that end `}\n`.
            let entry = parsed.and_then(|parsed| {
                let raw = parsed.response.get();
                let start = n
                    .checked_sub(2 + raw.len())
                    .filter(|&s| &line[s..s + raw.len()] == raw.as_bytes())?;
                Some((parsed.key, (offset + start as u64, raw.len(), parsed.exact)))
            });
            let Some((key, at)) = entry else {
                // The last line, unfinished or unreadable, is the tail of a write a stop cut
                // short: it is dropped below. One with answers after it is damage, and those
                // answers were paid for: nothing is dropped.
                if offset + n as u64 == len {
                    break;
                }
                return Err(Error::invalid(format!(
                    "The response cache `{}` has a damaged line {number} (at byte {offset}), \
                     with answers after it; nothing was changed\n\nhint: delete that line (its \
                     answer is asked again; the others are kept; a power cut can join a good \
                     answer onto it, which is then asked again too), or move the file away to \
                     ask every prompt again",
                    path.display()
                )));
            };
            index.insert(key, at);
            offset += n as u64;
        }
        drop(reader);
        let dropped_tail = len - offset;
        if dropped_tail > 0 {
            tracing::warn!(
                "response cache `{}`: dropping {dropped_tail} bytes of an answer cut short by an \
                 earlier stop",
                path.display()
            );
            file.set_len(offset).map_err(|e| Error::Write {
                path: path.to_path_buf(),
                source: e,
            })?;
            file.sync_all().map_err(|e| Error::Write {
                path: path.to_path_buf(),
                source: e,
            })?;
        }
        let mut file = file;
        file.seek(SeekFrom::End(0)).map_err(|e| Error::Write {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(ResponseCache {
            path: path.to_path_buf(),
            file,
            index,
            end: offset,
            dropped_tail,
        })
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds no answer.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of a torn last line dropped on open.
    pub fn dropped_tail(&self) -> u64 {
        self.dropped_tail
    }

    /// Whether `key` has an answer.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Whether the answer under `key` has the teacher's own token ids (`None`: no answer).
    pub fn exact(&self, key: &str) -> Option<bool> {
        self.index.get(key).map(|e| e.2)
    }

    /// The answer stored under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Response>> {
        let Some(&(offset, len, _)) = self.index.get(key) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::Read {
                path: self.path.clone(),
                source: e,
            })?;
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| Error::Json {
                path: self.path.clone(),
                message: format!(
                    "a cached answer at byte {offset} does not parse: {e}\n\nhint: the file is \
                     the workbench's own cache of teacher answers; move it aside to ask the \
                     teacher again (a paid API charges again for every answer)"
                ),
            })
    }

    /// Appends an answer (one write; durable against a kill at once, against power loss after
    /// [`ResponseCache::sync`]).
    pub fn put(&mut self, key: &str, response: &Response) -> Result<()> {
        if self.index.contains_key(key) {
            return Ok(());
        }
        // JSON has no NaN or infinity (serde writes them as `null`, which then never reads
        // back), and an answer with them is no answer: refuse it before it poisons the cache.
        let finite = response.logprobs.iter().all(|x| x.is_finite())
            && response.top.iter().flatten().all(|t| t.logprob.is_finite())
            && response.entropy_mean.is_none_or(f32::is_finite);
        if !finite {
            return Err(Error::teacher(format!(
                "The teacher answered with log-probabilities that are not finite numbers (NaN or \
                 infinity), so the answer is not stored in `{}`\n\nhint: a local teacher whose \
                 training diverged gives such answers: train it again with a lower \
                 `teacher.train.lr`",
                self.path.display()
            )));
        }
        let body = serde_json::to_string(response).expect("responses serialise");
        let prefix = format!(
            "{{\"key\":\"{key}\",\"exact\":{},\"response\":",
            response.ids_exact
        );
        let mut line = String::with_capacity(prefix.len() + body.len() + 2);
        line.push_str(&prefix);
        line.push_str(&body);
        line.push_str("}\n");
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::Write {
                path: self.path.clone(),
                source: e,
            })?;
        self.index.insert(
            key.to_string(),
            (
                self.end + prefix.len() as u64,
                body.len(),
                response.ids_exact,
            ),
        );
        self.end += line.len() as u64;
        Ok(())
    }

    /// Flushes the file to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::Write {
            path: self.path.clone(),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(text: &str) -> Response {
        Response {
            text: text.into(),
            ids: vec![1, 2],
            ids_exact: true,
            logprobs: vec![-0.5, -0.25],
            top: vec![
                vec![datasets::TopLogprob {
                    id: 1,
                    logprob: -0.5,
                }],
                vec![],
            ],
            entropy_mean: Some(0.3),
            finish: "stop".into(),
            prompt_tokens: 3,
            completion_tokens: 2,
            host: None,
            received_at: 7,
        }
    }

    #[test]
    fn answers_survive_reopening_and_a_torn_tail_is_cut_off() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c/responses.jsonl");
        {
            let mut c = ResponseCache::open(&path).unwrap();
            c.put("a", &response("first \"quoted\" é")).unwrap();
            c.put("b", &response("second")).unwrap();
            c.sync().unwrap();
            assert_eq!(c.get("a").unwrap().unwrap().text, "first \"quoted\" é");
        }
        // A kill in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"key\":\"c\",\"response\":{\"te").unwrap();
        drop(f);
        let mut c = ResponseCache::open(&path).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.dropped_tail() > 0);
        assert_eq!(c.get("b").unwrap().unwrap(), response("second"));
        assert!(c.get("c").unwrap().is_none());
        c.put("c", &response("third")).unwrap();
        drop(c);
        let c = ResponseCache::open(&path).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("c").unwrap().unwrap().text, "third");
    }

    /// A damaged line with answers after it is not a torn tail: the cache refuses to open and
    /// leaves the file as it was, so no paid answer is dropped.
    #[test]
    fn a_damaged_line_before_good_ones_keeps_the_file_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("responses.jsonl");
        {
            let mut c = ResponseCache::open(&path).unwrap();
            c.put("a", &response("first")).unwrap();
            c.put("b", &response("second")).unwrap();
            c.put("c", &response("third")).unwrap();
            c.sync().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let damaged = format!("{}\n{{not json\n{}\n", lines[0], lines[2]);
        std::fs::write(&path, &damaged).unwrap();
        let err = ResponseCache::open(&path).err().unwrap().to_string();
        assert!(err.contains("damaged line 2"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
        // Deleting the line, as the message says, keeps the rest.
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let c = ResponseCache::open(&path).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("c").unwrap().unwrap().text, "third");
    }

    #[test]
    fn an_answer_with_nan_logprobs_never_reaches_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("responses.jsonl");
        let mut c = ResponseCache::open(&path).unwrap();
        let mut bad = response("x");
        bad.logprobs[1] = f32::NAN;
        let e = c.put("a", &bad).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
        let mut bad = response("x");
        bad.top[0][0].logprob = f32::INFINITY;
        assert!(c.put("b", &bad).is_err());
        let mut bad = response("x");
        bad.entropy_mean = Some(f32::NAN);
        assert!(c.put("c", &bad).is_err());
        c.put("d", &response("fine")).unwrap();
        drop(c);
        let c = ResponseCache::open(&path).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("d").unwrap().unwrap().text, "fine");
    }

    #[test]
    fn a_second_process_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("responses.jsonl");
        let _held = ResponseCache::open(&path).unwrap();
        let err = ResponseCache::open(&path).err().unwrap().to_string();
        assert!(err.contains("in use by another workbench process"), "{err}");
    }

    #[test]
    fn keys_depend_on_the_teacher_and_every_field_of_the_request() {
        let r = Request {
            messages: vec![datasets::Message::new("user", "hi")],
            prompt: "hi".into(),
            max_tokens: 8,
            temperature: 0.0,
            top_p: 1.0,
            seed: 1,
            stop: vec![],
            top_logprobs: 5,
        };
        let mut other = r.clone();
        other.seed = 2;
        assert_eq!(key("t", &r), key("t", &r.clone()));
        assert_ne!(key("t", &r), key("u", &r));
        assert_ne!(key("t", &r), key("t", &other));
    }
}
