//! What each stage depends on, as a hash of those settings: a stage whose hash is unchanged is
//! skipped, one whose hash changed is redone.

use datasets::config::Config;
use datasets::{PreferenceRow, SftRow};

/// The hash of `sections` of the config and `extra` keys: what a stage depends on.
pub(crate) fn hash_with(c: &Config, sections: &[&str], extra: &serde_json::Value) -> String {
    let mut h = blake3::Hasher::new();
    h.update(c.stage_hash(sections).as_bytes());
    h.update(extra.to_string().as_bytes());
    h.finalize().to_hex()[..16].to_string()
}

/// Hash of what the teacher depends on: the data, the seed, and the teacher's training keys (not
/// how it is later asked, so changing `teacher.batch_size` keeps it).
pub fn teacher_hash(c: &Config) -> String {
    let t = &c.teacher;
    let mut keys = serde_json::json!({
        "vocab_size": t.vocab_size,
        "architecture": t.architecture,
        "train": t.train,
    });
    // Only when not the default, so a config without it keeps its hash.
    if let Some(split @ datasets::config::TokenizerSplit::Words) = t.tokenizer_split {
        keys["tokenizer_split"] = serde_json::json!(split);
    }
    hash_with(c, &["run", "data"], &keys)
}

/// Hash of what the distilled student depends on (not the `[[distill.compare]]` students beside
/// it: each of those is hashed as its own config, [`Config::distill_variant`]).
pub fn student_hash(c: &Config) -> String {
    let mut c = c.clone();
    c.distill.compare.clear();
    hash_with(
        &c,
        &["run", "data", "teacher", "generate", "student", "distill"],
        &serde_json::Value::Null,
    )
}

/// Hash of what the gold-only baseline depends on: not the synthetic set, nor the KD settings.
pub fn baseline_hash(c: &Config) -> String {
    let mut keys = serde_json::json!({ "train": c.distill.train, "teacher": teacher_hash(c) });
    if let Some(n) = c.distill.gold_rows {
        keys["gold_rows"] = n.into();
    }
    hash_with(c, &["run", "data", "student"], &keys)
}

/// Hash of what the fine-tuned student depends on: the distilled student, `[finetune]`, and the
/// feedback itself (`feedback` is a digest of the rows' ids, so a new expert decision retrains).
pub fn finetune_hash(c: &Config, feedback: &str) -> String {
    let keys = serde_json::json!({
        "student": student_hash(c),
        "finetune": c.finetune,
        "feedback": feedback,
    });
    hash_with(c, &["run", "data"], &keys)
}

/// [`finetune_hash`] of a fine-tune on these feedback rows.
pub fn finetune_hash_on(c: &Config, sft: &[SftRow], preference: &[PreferenceRow]) -> String {
    finetune_hash(c, &feedback_digest(sft, preference))
}

/// A digest of the feedback rows (their content ids), for [`finetune_hash`].
pub fn feedback_digest(sft: &[SftRow], preference: &[PreferenceRow]) -> String {
    let mut h = blake3::Hasher::new();
    for id in sft
        .iter()
        .map(|r| &r.id)
        .chain(preference.iter().map(|r| &r.id))
    {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}
