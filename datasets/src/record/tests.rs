//! Round trips: record → RecordBatch → Parquet → RecordBatch → record, for every schema, with
//! arbitrary Unicode, empty strings, nulls, 0 to 64 top-k entries per token and 0 to 2,000 tokens.

use proptest::prelude::*;

use super::*;
use crate::parquet::{ParquetFile, WriteOptions, read_records, write_records};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{0,40}",
        any::<String>(),
        Just("emoji 👩‍🔬 combining é ́ RTL مرحبا \u{0} nul".to_string()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), text().prop_map(Some)]
}

fn messages() -> impl Strategy<Value = Vec<Message>> {
    prop::collection::vec(
        (
            prop_oneof![Just("system"), Just("user"), Just("assistant")],
            text(),
        )
            .prop_map(|(r, c)| Message::new(r, c)),
        0..4,
    )
}

/// `tokens` positions with `k` entries each, values derived from `seed` (cheap to generate,
/// shrinks on the sizes).
fn topk(tokens: usize, k: usize, seed: u64) -> (Vec<u32>, Vec<Vec<TopLogprob>>) {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 33
    };
    let ids: Vec<u32> = (0..tokens).map(|_| next() as u32).collect();
    let topk = (0..tokens)
        .map(|_| {
            (0..k)
                .map(|_| TopLogprob {
                    id: next() as u32,
                    logprob: -((next() % 100_000) as f32) / 1000.0,
                })
                .collect()
        })
        .collect();
    (ids, topk)
}

prop_compose! {
    fn sample()(
        prompt in text(),
        messages in messages(),
        completion in opt_text(),
        tokens in prop_oneof![0usize..8, 0usize..2001],
        k in 0usize..=64,
        seed in any::<u64>(),
        teacher in opt_text(),
        logprob_mean in prop::option::of(-50.0f32..0.0),
        entropy_mean in prop::option::of(0.0f32..12.0),
        disagreement in prop::option::of(0.0f32..30.0),
        reference in opt_text(),
        template in opt_text(),
        slice in opt_text(),
        sampling_seed in prop::option::of(any::<u64>()),
        created_at in 0i64..4_102_444_800_000_000,
    ) -> Sample {
        let (completion_ids, teacher_topk) = topk(tokens, k, seed);
        let mut s = Sample {
            id: String::new(),
            prompt,
            messages,
            completion,
            completion_ids,
            teacher_topk,
            teacher,
            logprob_mean,
            entropy_mean,
            disagreement,
            reference,
            template,
            slice,
            seed: sampling_seed,
            created_at,
        };
        s.id = s.content_id();
        s
    }
}

prop_compose! {
    fn annotation()(
        item_id in text(),
        annotator in text(),
        decision in prop_oneof![Just(Decision::Accept), Just(Decision::Reject), Just(Decision::Edit), Just(Decision::Skip)],
        rating in prop::option::of(1u8..=5),
        corrected in opt_text(),
        preference in prop::option::of(prop_oneof![Just(Preference::A), Just(Preference::B), Just(Preference::Tie)]),
        labels in prop::collection::vec(text(), 0..4),
        comment in opt_text(),
        duration_ms in any::<u64>(),
        created_at in 0i64..4_102_444_800_000_000,
    ) -> Annotation {
        Annotation { item_id, annotator, decision, rating, corrected, preference, labels, comment, duration_ms, created_at }
    }
}

fn through_parquet<R: Record + Clone>(rows: &[R]) -> Vec<R> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    let options = WriteOptions {
        max_row_group_rows: 3,
        ..Default::default()
    };
    write_records(&path, rows, &options).unwrap();
    read_records(&path).unwrap()
}

/// Samples whose prompt is empty and whose messages have no user turn cannot exist: the reader
/// takes the prompt from the last user message. Give such samples their prompt as a message.
fn canonical(mut s: Sample) -> Sample {
    if s.messages.is_empty() {
        s.messages.push(Message::new("user", s.prompt.clone()));
        s.id = s.content_id();
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn samples_round_trip_through_batches_and_parquet(rows in prop::collection::vec(sample().prop_map(canonical), 0..6)) {
        let batch = Sample::to_batch(&rows).unwrap();
        prop_assert_eq!(batch.schema(), Sample::schema());
        prop_assert_eq!(&Sample::from_batch(&batch).unwrap(), &rows);
        prop_assert_eq!(&through_parquet(&rows), &rows);
    }

    #[test]
    fn annotations_round_trip(rows in prop::collection::vec(annotation(), 0..8)) {
        let batch = Annotation::to_batch(&rows).unwrap();
        prop_assert_eq!(&Annotation::from_batch(&batch).unwrap(), &rows);
        prop_assert_eq!(&through_parquet(&rows), &rows);
    }

    #[test]
    fn sft_rows_round_trip(rows in prop::collection::vec((messages(), text(), text(), opt_text()), 0..8)) {
        let rows: Vec<SftRow> = rows
            .into_iter()
            .map(|(mut m, p, c, s)| {
                // A conversation always has its prompt as a user turn.
                m.retain(|m| m.role != "assistant");
                m.push(Message::new("user", p.clone()));
                SftRow::new(m, p, c, s)
            })
            .collect();
        prop_assert_eq!(&through_parquet(&rows), &rows);
    }

    #[test]
    fn preference_rows_round_trip(rows in prop::collection::vec((text(), text(), text(), opt_text()), 0..8)) {
        let rows: Vec<PreferenceRow> = rows.into_iter().map(|(p, c, r, s)| PreferenceRow::new(p, c, r, s)).collect();
        prop_assert_eq!(&through_parquet(&rows), &rows);
    }
}

#[test]
fn the_longest_sample_round_trips() {
    let (completion_ids, teacher_topk) = topk(2000, 64, 7);
    let mut s = Sample::from_prompt("p");
    s.completion_ids = completion_ids;
    s.teacher_topk = teacher_topk;
    s.id = s.content_id();
    let rows = vec![s.clone(), s];
    assert_eq!(through_parquet(&rows), rows);
}

#[test]
fn the_content_id_ignores_metadata_but_not_text() {
    let a = Sample::from_prompt("What day is it?");
    let mut b = a.clone();
    b.teacher = Some("t".into());
    b.created_at += 1;
    assert_eq!(a.content_id(), b.content_id());
    b.completion = Some(String::new());
    assert_ne!(a.content_id(), b.content_id());
}

#[test]
fn a_sample_from_pyarrow_shaped_columns_reads() {
    use arrow_array::{Int64Array, LargeStringArray, builder::*};
    use std::sync::Arc;
    // pyarrow: large_string, int64 ids in a list named `item`, everything nullable.
    let prompt = LargeStringArray::from(vec![Some("a"), Some("b")]);
    let mut ids = ListBuilder::new(Int64Builder::new());
    ids.values().append_slice(&[1, 2]);
    ids.append(true);
    ids.append(false);
    let reference = LargeStringArray::from(vec![None, Some("r")]);
    let extra = Int64Array::from(vec![1, 2]);
    let batch = RecordBatch::try_from_iter(vec![
        ("prompt", Arc::new(prompt) as ArrayRef),
        ("completion_ids", Arc::new(ids.finish()) as ArrayRef),
        ("reference", Arc::new(reference) as ArrayRef),
        ("extra", Arc::new(extra) as ArrayRef),
    ])
    .unwrap();
    let rows = Sample::from_batch(&batch).unwrap();
    assert_eq!(rows[0].completion_ids, vec![1, 2]);
    assert!(rows[1].completion_ids.is_empty());
    assert_eq!(rows[1].reference.as_deref(), Some("r"));
    assert_eq!(rows[0].messages, vec![Message::new("user", "a")]);
    // A file of schema version 2 has no `slice` column: its rows have none.
    assert_eq!(rows[0].slice, None);
}

#[test]
fn a_wrongly_typed_column_is_named() {
    use arrow_array::Float64Array;
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter(vec![
        ("prompt", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        (
            "completion_ids",
            Arc::new(Float64Array::from(vec![1.5])) as ArrayRef,
        ),
    ])
    .unwrap();
    let e = Sample::from_batch(&batch).unwrap_err();
    assert_eq!(e.column, "completion_ids");
    assert!(
        e.message.contains("expected a list of token ids"),
        "{}",
        e.message
    );
}

#[test]
fn files_carry_schema_version_workbench_version_and_config_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    let options = WriteOptions {
        config_hash: Some("abc123".into()),
        ..Default::default()
    };
    write_records(&path, &[Sample::from_prompt("p")], &options).unwrap();
    let kv = ParquetFile::open(&path).unwrap().key_value_metadata();
    assert_eq!(kv[schema::META_SCHEMA_VERSION], schema::SCHEMA_VERSION);
    assert_eq!(
        kv[schema::META_WORKBENCH_VERSION],
        schema::WORKBENCH_VERSION
    );
    assert_eq!(kv[schema::META_CONFIG_HASH], "abc123");
    assert_eq!(kv[schema::META_KIND], "sample");
}
