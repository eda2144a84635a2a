//! Tokenizers: text to ids and back, as the checkpoint's model saw them.
//!
//! A [`Tokenizer`] is Hugging Face's `tokenizer.json` (run by the `tokenizers` crate, the same
//! code transformers runs) plus what `tokenizer_config.json` adds to it: the named special tokens
//! and the chat template. It loads from a checkpoint directory, trains a byte-level BPE for the
//! embedded default (where nothing can be downloaded), and saves back in the layout
//! `AutoTokenizer.from_pretrained` reads, so a student the workbench trains is served with the
//! usual tools.
//!
//! Teacher and student must agree on ids for logit distillation, so the ids here are exactly the
//! ids transformers gives: the parity fixtures in `tests/fixtures/tokenizer/` are encoded by
//! `AutoTokenizer` itself (`tests/fixtures/make_chat_fixtures.py`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datasets::Message;
use serde_json::{Map, Value};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::ModelWrapper;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, TokenizerImpl};

use crate::data::chat::{ChatTemplate, TemplateContext};
use crate::error::{Error, Result};

/// The file a checkpoint directory keeps the tokenizer in.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The file with the special tokens and (before transformers 5) the chat template.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The file transformers 5 writes the chat template to; it wins over `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Where the merges of [`Tokenizer::train_bpe`] may not cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpeSplit {
    /// GPT-2's split regex: words, runs of digits, punctuation and spaces apart. The usual choice
    /// for general text.
    Words,
    /// Only between digits: every digit is its own token and merges cross spaces and punctuation.
    /// For small task models: a constant instruction becomes a few tokens, and numbers are
    /// copied digit by digit, which a tiny model learns far faster than multi-digit tokens.
    Digits,
    /// Every digit apart, then GPT-2's split: SmolLM's pre-tokenizer, which llama.cpp runs
    /// (`smollm`), so a model on it goes into GGUF.
    DigitsThenWords,
}

/// The named special tokens of `tokenizer_config.json`, as text.
///
/// A token named here need not be in the vocabulary (transformers tolerates that too); its id is
/// then `None`, but templates still see its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (`bos_token`).
    pub bos: Option<String>,
    /// End of sequence, where generation stops (`eos_token`).
    pub eos: Option<String>,
    /// Padding (`pad_token`).
    pub pad: Option<String>,
    /// Unknown (`unk_token`); byte-level tokenizers have none.
    pub unk: Option<String>,
}

/// A tokenizer with its special tokens and, optionally, its chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    chat_template: Option<ChatTemplate>,
    model_max_length: Option<u64>,
    /// The file or directory it was loaded from, for error messages.
    path: Option<PathBuf>,
    /// One more than the largest id (model vocabulary and added tokens).
    vocab_size: usize,
}

impl Tokenizer {
    /// Loads a `tokenizer.json`. Special tokens and chat template stay unset: they live in
    /// `tokenizer_config.json`, which [`Tokenizer::from_dir`] reads.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| Error::Tokenizer {
            path: Some(path.to_path_buf()),
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok(Tokenizer::from_parts(
            inner,
            SpecialTokens::default(),
            Some(path.to_path_buf()),
        ))
    }

    /// A tokenizer from the text of a `tokenizer.json` and its special tokens; `path` is where it
    /// came from, for messages.
    pub fn from_json(text: &str, special: SpecialTokens, path: &Path) -> Result<Tokenizer> {
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| Error::Tokenizer {
            path: Some(path.to_path_buf()),
            message: format!("the rebuilt tokenizer is not valid: {e}"),
        })?;
        Ok(Tokenizer::from_parts(
            inner,
            special,
            Some(path.to_path_buf()),
        ))
    }

    /// Loads the tokenizer of a Hugging Face checkpoint directory (or of a GGUF file, rebuilt
    /// from its metadata): `tokenizer.json`, then
    /// `tokenizer_config.json` if there is one (special tokens as strings or `{"content": ...}`
    /// objects, `added_tokens_decoder`, `model_max_length`, `chat_template` as a string or a
    /// list of `{name, template}`), then `chat_template.jinja`, which wins over the config's
    /// template as it does in transformers 5.
    ///
    /// A token of `added_tokens_decoder` that `tokenizer.json` lacks is added, as transformers
    /// adds it; one whose id differs from the file's is an error, since the ids would then not
    /// be the checkpoint's.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        if crate::model::from_gguf::is_gguf(dir) {
            return crate::model::from_gguf::tokenizer(dir);
        }
        let file = dir.join(TOKENIZER_FILE);
        if !file.is_file() {
            let mut message = format!("no `{TOKENIZER_FILE}` in `{}`", dir.display());
            if !dir.is_dir() {
                message = format!("`{}` is not a directory", dir.display());
            } else if ["tokenizer.model", "vocab.json"]
                .iter()
                .any(|f| dir.join(f).is_file())
            {
                message.push_str(
                    "; only the fast-tokenizer format is read\n\nhint: convert it with \
                     transformers: `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`",
                );
            }
            return Err(Error::Tokenizer {
                path: Some(dir.to_path_buf()),
                message,
            });
        }
        let mut tokenizer = Tokenizer::from_file(&file)?;
        tokenizer.path = Some(dir.to_path_buf());

        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let mut template = None;
        if config_path.is_file() {
            let config = read_json_object(&config_path)?;
            tokenizer.apply_config(&config, &config_path)?;
            template = config_template(&config, &config_path)?;
        }
        let jinja = dir.join(CHAT_TEMPLATE_FILE);
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|source| Error::Read {
                path: jinja.clone(),
                source,
            })?;
            // Python reads it in text mode: `\r\n` and `\r` become `\n`.
            let source = source.replace("\r\n", "\n").replace('\r', "\n");
            template = Some(ChatTemplate::new(
                source,
                Some(jinja.display().to_string()),
            )?);
        }
        tokenizer.chat_template = template;
        Ok(tokenizer)
    }

    /// Trains a byte-level BPE of at most `vocab_size` tokens on `texts`, byte-level decoder, no
    /// prefix space; `split` says where merges may not cross (see [`BpeSplit`]).
    ///
    /// `special_tokens` get ids `0..n` in the order given and are never split; all 256 bytes
    /// follow, so any text encodes and decodes back to itself; merges fill the rest (fewer when
    /// the texts run out of pairs). The result is the same for the same texts, on any number of
    /// threads, and the same as Python's `tokenizers` trains with those settings. Special tokens
    /// are not given roles here: see [`Tokenizer::set_special_tokens`].
    pub fn train_bpe<I, S>(
        texts: I,
        vocab_size: usize,
        special_tokens: &[&str],
        split: BpeSplit,
    ) -> Result<Tokenizer>
    where
        I: IntoIterator<Item = S>,
        I::IntoIter: Send,
        S: AsRef<str> + Send,
    {
        let fail = |message: String| Error::Tokenizer {
            path: None,
            message,
        };
        let mut seen = HashSet::new();
        for token in special_tokens {
            if token.is_empty() {
                return Err(fail("a special token is empty".into()));
            }
            if !seen.insert(*token) {
                return Err(fail(format!("special token `{token}` is listed twice")));
            }
        }
        let minimum = 256 + special_tokens.len();
        if vocab_size < minimum {
            return Err(fail(format!(
                "a vocabulary of {vocab_size} tokens is too small: the 256 bytes and {} special \
                 tokens need {minimum}",
                special_tokens.len()
            )));
        }

        let mut inner: TokenizerImpl<
            ModelWrapper,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = TokenizerImpl::new(ModelWrapper::from(BPE::default()));
        let byte_level = ByteLevel::default().add_prefix_space(false);
        let pre = match split {
            BpeSplit::Words => PreTokenizerWrapper::ByteLevel(byte_level),
            BpeSplit::Digits => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level.use_regex(false)),
            ])),
            BpeSplit::DigitsThenWords => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ])),
        };
        inner
            .with_pre_tokenizer(Some(pre))
            .with_post_processor(Some(PostProcessorWrapper::ByteLevel(
                ByteLevel::default().trim_offsets(false),
            )))
            .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let mut trainer = TrainerWrapper::BpeTrainer(
            BpeTrainerBuilder::new()
                .vocab_size(vocab_size)
                .show_progress(false)
                .special_tokens(
                    special_tokens
                        .iter()
                        .map(|t| AddedToken::from(*t, true))
                        .collect(),
                )
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                .build(),
        );
        inner
            .train(&mut trainer, texts.into_iter())
            .map_err(|e| fail(format!("training failed: {e}")))?;
        Ok(Tokenizer::from_parts(
            tokenizers::Tokenizer::from(inner),
            SpecialTokens::default(),
            None,
        ))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (created if missing),
    /// each atomically, so that transformers' `AutoTokenizer.from_pretrained(dir)` loads the
    /// same tokenizer with the same special tokens and chat template.
    ///
    /// A `chat_template.jinja` already in `dir` would win over the config's template when the
    /// directory is loaded, so it is rewritten with this template, or removed when there is none.
    pub fn save_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = self.inner.to_string(true).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            message: format!("cannot serialize: {e}"),
        })?;
        datasets::atomic::write_file(dir.join(TOKENIZER_FILE), json.as_bytes())?;

        let config = self.config_json();
        let mut text = serde_json::to_string_pretty(&config).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            message: format!("cannot serialize {TOKENIZER_CONFIG_FILE}: {e}"),
        })?;
        text.push('\n');
        datasets::atomic::write_file(dir.join(TOKENIZER_CONFIG_FILE), text.as_bytes())?;

        let jinja = dir.join(CHAT_TEMPLATE_FILE);
        if jinja.exists() {
            match &self.chat_template {
                Some(t) => datasets::atomic::write_file(&jinja, t.source().as_bytes())?,
                None => std::fs::remove_file(&jinja).map_err(|source| Error::Write {
                    path: jinja.clone(),
                    source,
                })?,
            }
        }
        Ok(())
    }

    /// The `tokenizer_config.json` that [`Tokenizer::save_dir`] writes, keys in the order
    /// transformers writes them (sorted).
    fn config_json(&self) -> Map<String, Value> {
        let mut added: Vec<(u32, AddedToken)> =
            self.inner.get_added_tokens_decoder().into_iter().collect();
        added.sort_by_key(|(id, _)| *id);
        let added: Map<String, Value> = added
            .into_iter()
            .map(|(id, t)| {
                let entry = serde_json::json!({
                    "content": t.content,
                    "lstrip": t.lstrip,
                    "normalized": t.normalized,
                    "rstrip": t.rstrip,
                    "single_word": t.single_word,
                    "special": t.special,
                });
                (id.to_string(), entry)
            })
            .collect();
        let token = |t: &Option<String>| t.clone().map_or(Value::Null, Value::String);
        let mut config = Map::new();
        config.insert("added_tokens_decoder".into(), Value::Object(added));
        config.insert("bos_token".into(), token(&self.special.bos));
        if let Some(t) = &self.chat_template {
            config.insert("chat_template".into(), Value::String(t.source().to_owned()));
        }
        // Our decode never cleans up spaces; transformers must not either.
        config.insert("clean_up_tokenization_spaces".into(), Value::Bool(false));
        config.insert("eos_token".into(), token(&self.special.eos));
        if let Some(n) = self.model_max_length {
            config.insert("model_max_length".into(), Value::from(n));
        }
        config.insert("pad_token".into(), token(&self.special.pad));
        config.insert(
            "tokenizer_class".into(),
            Value::String("PreTrainedTokenizerFast".into()),
        );
        config.insert("unk_token".into(), token(&self.special.unk));
        config
    }

    /// The ids of `text`. With `add_special_tokens`, the tokenizer's post-processor adds what
    /// the model expects around a sequence (Llama's BOS, for one); special tokens written in the
    /// text are matched either way, as in transformers.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.error(format!("cannot encode text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// [`Tokenizer::encode`] for many texts at once, in parallel.
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), add_special_tokens)
            .map_err(|e| self.error(format!("cannot encode texts: {e}")))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The text of `ids`; with `skip_special_tokens`, special tokens are left out. Ids the
    /// vocabulary lacks decode to nothing, as in transformers (a model's embedding table may be
    /// padded beyond the tokenizer).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.error(format!("cannot decode ids: {e}")))
    }

    /// The text of `ids` that follow other text (a completion after its prompt). A
    /// SentencePiece decoder drops the space the first piece starts with (`▁`), since at the
    /// start of a text it is the space the encoder put there; after other text it is a real one,
    /// and is kept.
    pub fn decode_continuation(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self.decode(ids, skip_special_tokens)?;
        let added = self.inner.get_added_vocabulary();
        let first = ids
            .iter()
            .filter_map(|&id| self.id_to_token(id))
            .find(|piece| {
                !(piece.is_empty() || skip_special_tokens && added.is_special_token(piece))
            });
        Ok(match first {
            Some(piece) if piece.starts_with('\u{2581}') && !text.starts_with(' ') => {
                format!(" {text}")
            }
            _ => text,
        })
    }

    /// One more than the largest id, added tokens included: the rows an embedding table needs.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Refuses a tokenizer whose ids run past the `model_vocab` rows of the checkpoint in `dir`
    /// (a model may have more rows than its tokenizer uses, never fewer).
    pub fn check_fits(&self, model_vocab: usize, dir: &Path) -> Result<()> {
        if self.vocab_size > model_vocab {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "`tokenizer.json` has {} tokens but the model's vocabulary (`vocab_size` in \
                     `config.json`) has {model_vocab} rows, so they do not belong together\n\n\
                     hint: put the tokenizer the checkpoint was trained with beside it",
                    self.vocab_size
                ),
            });
        }
        Ok(())
    }

    /// The id of a token (as it appears in `tokenizer.json`, so byte-level tokens spell a space
    /// `Ġ`), or of an added token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id, as it appears in `tokenizer.json`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The named special tokens.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Names the special tokens (for a tokenizer from [`Tokenizer::train_bpe`] or
    /// [`Tokenizer::from_file`]). A name the vocabulary lacks is kept as text (its id is `None`).
    pub fn set_special_tokens(&mut self, tokens: SpecialTokens) {
        self.special = tokens;
    }

    /// Makes `encode(text, true)` start with the BOS token, as Llama tokenizers do (a
    /// `TemplateProcessing` post-processor after the byte-level one), so this code, transformers
    /// and any server encode prompts alike.
    pub fn add_bos_on_encode(&mut self) -> Result<()> {
        let fail = |message: String| Error::Tokenizer {
            path: self.path.clone(),
            message,
        };
        let (Some(bos), Some(id)) = (self.special.bos.clone(), self.bos_id()) else {
            return Err(fail("there is no BOS token to add".into()));
        };
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos} $A"))
            .and_then(|b| b.try_pair(format!("{bos} $A {bos} $B")))
            .map_err(|e| fail(format!("cannot build the BOS template: {e}")))?
            .special_tokens(vec![(bos.clone(), id)])
            .build()
            .map_err(|e| fail(format!("cannot build the BOS template: {e}")))?;
        self.inner
            .with_post_processor(Some(PostProcessorWrapper::Sequence(
                tokenizers::processors::sequence::Sequence::new(vec![
                    PostProcessorWrapper::ByteLevel(ByteLevel::default().trim_offsets(false)),
                    PostProcessorWrapper::Template(template),
                ]),
            )));
        Ok(())
    }

    /// Whether `other` maps every token to the same id (what logit distillation needs).
    pub fn same_vocabulary(&self, other: &Tokenizer) -> bool {
        self.vocab_size == other.vocab_size
            && self.inner.get_vocab(true) == other.inner.get_vocab(true)
    }

    /// The id of the beginning-of-sequence token.
    pub fn bos_id(&self) -> Option<u32> {
        self.special
            .bos
            .as_deref()
            .and_then(|t| self.token_to_id(t))
    }

    /// The id of the end-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.special
            .eos
            .as_deref()
            .and_then(|t| self.token_to_id(t))
    }

    /// The id of the padding token.
    pub fn pad_id(&self) -> Option<u32> {
        self.special
            .pad
            .as_deref()
            .and_then(|t| self.token_to_id(t))
    }

    /// The beginning-of-sequence token.
    pub fn bos_token(&self) -> Option<&str> {
        self.special.bos.as_deref()
    }

    /// The end-of-sequence token.
    pub fn eos_token(&self) -> Option<&str> {
        self.special.eos.as_deref()
    }

    /// The longest input the model was trained on, from `tokenizer_config.json`'s
    /// `model_max_length` (absent, or transformers' "no limit" placeholder, is `None`).
    pub fn model_max_length(&self) -> Option<u64> {
        self.model_max_length
    }

    /// Sets `model_max_length`, written by [`Tokenizer::save_dir`].
    pub fn set_model_max_length(&mut self, length: Option<u64>) {
        self.model_max_length = length;
    }

    /// Sets or removes the chat template.
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.chat_template = template;
    }

    /// The chat template, if the checkpoint has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The variables the chat template sees: this tokenizer's special tokens.
    pub fn template_context(&self) -> TemplateContext {
        TemplateContext {
            bos_token: self.special.bos.clone(),
            eos_token: self.special.eos.clone(),
            unk_token: self.special.unk.clone(),
            pad_token: self.special.pad.clone(),
            ..TemplateContext::default()
        }
    }

    /// Renders `messages` with the chat template and this tokenizer's special tokens, as
    /// transformers' `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let Some(template) = &self.chat_template else {
            let from = self
                .path
                .as_ref()
                .map(|p| format!(" from `{}`", p.display()))
                .unwrap_or_default();
            return Err(Error::Template {
                origin: None,
                message: format!(
                    "the tokenizer{from} has no chat template\n\nhint: put one in \
                     `{CHAT_TEMPLATE_FILE}` or under `chat_template` in \
                     `{TOKENIZER_CONFIG_FILE}` next to `{TOKENIZER_FILE}`, or use a plain \
                     prompt format"
                ),
            });
        };
        template.render(messages, add_generation_prompt, &self.template_context())
    }

    /// The `tokenizers` tokenizer underneath, for what this type does not wrap (offsets,
    /// truncation, padding).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn from_parts(
        inner: tokenizers::Tokenizer,
        special: SpecialTokens,
        path: Option<PathBuf>,
    ) -> Tokenizer {
        let mut tokenizer = Tokenizer {
            inner,
            special,
            chat_template: None,
            model_max_length: None,
            path,
            vocab_size: 0,
        };
        tokenizer.count_vocab();
        tokenizer
    }

    fn count_vocab(&mut self) {
        self.vocab_size = self
            .inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
    }

    fn error(&self, message: String) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            message,
        }
    }

    /// Applies the special tokens, added tokens and `model_max_length` of a
    /// `tokenizer_config.json`.
    fn apply_config(&mut self, config: &Map<String, Value>, path: &Path) -> Result<()> {
        let token = |key: &str| special_token(config, key, path);
        self.special = SpecialTokens {
            bos: token("bos_token")?,
            eos: token("eos_token")?,
            pad: token("pad_token")?,
            unk: token("unk_token")?,
        };

        if let Some(added) = config.get("added_tokens_decoder") {
            let Some(added) = added.as_object() else {
                return Err(json_error(path, "`added_tokens_decoder` must be an object"));
            };
            let mut entries = Vec::with_capacity(added.len());
            for (id, entry) in added {
                let id: u32 = id.parse().map_err(|_| {
                    json_error(
                        path,
                        format!("`added_tokens_decoder` key `{id}` is not an id"),
                    )
                })?;
                entries.push((id, added_token(entry, id, path)?));
            }
            // In id order, so that tokens the file lacks get the ids they are declared with.
            entries.sort_by_key(|(id, _)| *id);
            for (id, token) in entries {
                if self.inner.token_to_id(&token.content).is_none() {
                    if token.special {
                        self.inner.add_special_tokens(std::slice::from_ref(&token));
                    } else {
                        self.inner.add_tokens(std::slice::from_ref(&token));
                    }
                }
                let actual = self.inner.token_to_id(&token.content);
                if actual != Some(id) {
                    return Err(Error::Tokenizer {
                        path: Some(path.to_path_buf()),
                        message: format!(
                            "`added_tokens_decoder` gives `{}` id {id}, but `{TOKENIZER_FILE}` \
                             gives it {}",
                            token.content,
                            actual.map_or("no id".to_owned(), |a| format!("id {a}"))
                        ),
                    });
                }
            }
            self.count_vocab();
        }

        self.model_max_length = match config.get("model_max_length") {
            // transformers writes int(1e30) for "no limit"; anything past 2^53 is that.
            Some(Value::Number(n)) => n.as_u64().filter(|&n| n < 1 << 53),
            _ => None,
        };

        for (key, token) in [
            ("bos_token", &self.special.bos),
            ("eos_token", &self.special.eos),
            ("pad_token", &self.special.pad),
            ("unk_token", &self.special.unk),
        ] {
            if let Some(token) = token
                && self.inner.token_to_id(token).is_none()
            {
                tracing::warn!(
                    "`{key}` `{token}` of `{}` is not in the vocabulary; it has no id",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// Reads a JSON file that must hold an object.
fn read_json_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(json_error(path, "expected a JSON object")),
        Err(e) => Err(json_error(path, e.to_string())),
    }
}

fn json_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Json {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A special token of `tokenizer_config.json`: a string, `null`, or an AddedToken object with
/// `content`.
fn special_token(config: &Map<String, Value>, key: &str, path: &Path) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(json_error(
                path,
                format!("`{key}` is an object without a string `content`"),
            )),
        },
        Some(other) => Err(json_error(
            path,
            format!("`{key}` must be a string, null or an object with `content`, not {other}"),
        )),
    }
}

/// One entry of `added_tokens_decoder`.
fn added_token(entry: &Value, id: u32, path: &Path) -> Result<AddedToken> {
    let content = entry
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            json_error(
                path,
                format!("`added_tokens_decoder` entry {id} has no string `content`"),
            )
        })?;
    let flag =
        |name: &str, default: bool| entry.get(name).and_then(Value::as_bool).unwrap_or(default);
    let special = flag("special", false);
    Ok(AddedToken::from(content.to_owned(), special)
        .single_word(flag("single_word", false))
        .lstrip(flag("lstrip", false))
        .rstrip(flag("rstrip", false))
        .normalized(flag("normalized", !special)))
}

/// The chat template of `tokenizer_config.json`: a string, or a list of `{name, template}` from
/// which, as in transformers, the one named `default` is used.
fn config_template(config: &Map<String, Value>, path: &Path) -> Result<Option<ChatTemplate>> {
    let origin = |suffix: &str| Some(format!("{}{suffix}", path.display()));
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(source)) => {
            ChatTemplate::new(source.clone(), origin("#chat_template")).map(Some)
        }
        Some(Value::Array(list)) => {
            let mut names = Vec::new();
            for item in list {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                let (Some(name), Some(template)) = (name, template) else {
                    return Err(json_error(
                        path,
                        "each entry of `chat_template` needs a string `name` and `template`",
                    ));
                };
                if name == "default" {
                    return ChatTemplate::new(template, origin("#chat_template/default")).map(Some);
                }
                names.push(name);
            }
            tracing::warn!(
                "`{}` has chat templates named {} but none named `default`; the tokenizer has no \
                 chat template",
                path.display(),
                names.join(", ")
            );
            Ok(None)
        }
        Some(other) => Err(json_error(
            path,
            format!("`chat_template` must be a string or a list, not {other}"),
        )),
    }
}

#[cfg(test)]
#[path = "tests/tokenizer.rs"]
mod tests;
