//! Parquet write and read of the sample schema, the workbench's own I/O path end to end.
//!
//! `cargo bench --bench parquet_io -- write FILE --rows N` then `... -- read FILE`: one phase per
//! process, so each reports its own peak memory. Prints one JSON object per phase. Rows have a
//! 64-token completion with the teacher's top-20 per token, as a real synthetic set does; data
//! generation is not timed. `benches/run.sh` runs this beside `benches/parquet_io.py` (pyarrow)
//! and prints the ratios.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use datasets::parquet::{ParquetFile, ParquetWriter, WriteOptions};
use datasets::{Message, Record, Sample, TopLogprob};

const TOKENS: usize = 64;
const TOPK: usize = 20;
/// Rows per row group, the same on both sides of the comparison.
const ROW_GROUP: usize = 10_000;
const BATCH: usize = 2_000;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const WORDS: [&str; 16] = [
    "the", "date", "of", "invoice", "was", "March", "third", "twenty", "one", "please", "rewrite",
    "as", "ISO", "format", "thanks", "received",
];

fn text(rng: &mut Lcg, words: usize) -> String {
    let mut s = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[(rng.next() % 16) as usize]);
    }
    s
}

fn sample(rng: &mut Lcg, i: u64) -> Sample {
    let prompt = format!("{} #{i}", text(rng, 18));
    // Token ids are skewed towards frequent tokens, as real text is (u³ over a 50k vocabulary);
    // logprobs are continuous and decreasing down the top-k, as a teacher's are.
    let token = |rng: &mut Lcg| {
        let u = rng.next() as f64 / (1u64 << 31) as f64;
        (u * u * u * 50_000.0) as u32
    };
    let completion_ids: Vec<u32> = (0..TOKENS).map(|_| token(rng)).collect();
    let teacher_topk = (0..TOKENS)
        .map(|_| {
            let mut lp = 0.0f32;
            (0..TOPK)
                .map(|_| {
                    lp -= (rng.next() as f64 / (1u64 << 31) as f64) as f32 * 1.5;
                    TopLogprob {
                        id: token(rng),
                        logprob: lp,
                    }
                })
                .collect()
        })
        .collect();
    Sample {
        id: format!("{:032x}", rng.next() as u128 * 0x9E37_79B9_7F4A_7C15),
        messages: vec![Message::new("user", prompt.clone())],
        prompt,
        completion: Some(text(rng, 48)),
        completion_ids,
        teacher_topk,
        teacher: Some("teacher-local".into()),
        logprob_mean: Some(-0.5),
        entropy_mean: Some(1.25),
        disagreement: None,
        reference: Some("2021-03-03".into()),
        template: Some("dates-v1".into()),
        slice: None,
        seed: Some(i),
        created_at: 1_700_000_000_000_000 + i as i64,
    }
}

fn write(path: PathBuf, rows: usize) {
    let options = WriteOptions {
        max_row_group_rows: ROW_GROUP,
        max_row_group_bytes: usize::MAX / 2,
        threads: std::env::var("BENCH_THREADS")
            .ok()
            .and_then(|t| t.parse().ok()),
        ..Default::default()
    };
    let mut rng = Lcg(42);
    let mut writer = ParquetWriter::create(&path, Sample::schema(), &options).expect("create");
    let mut timed = Duration::ZERO;
    let mut done = 0;
    while done < rows {
        let n = BATCH.min(rows - done);
        let batch: Vec<Sample> = (0..n)
            .map(|i| sample(&mut rng, (done + i) as u64))
            .collect();
        let t = Instant::now();
        writer.write_records(&batch).expect("write");
        timed += t.elapsed();
        done += n;
    }
    let t = Instant::now();
    let summary = writer.finish().expect("finish");
    timed += t.elapsed();
    let secs = timed.as_secs_f64();
    println!(
        "{{\"impl\": \"workbench\", \"phase\": \"write\", \"rows\": {rows}, \"seconds\": {secs:.3}, \"rows_per_s\": {:.0}, \"bytes\": {}, \"row_groups\": {}, \"peak_rss_mib\": {:.1}}}",
        rows as f64 / secs,
        summary.bytes,
        summary.row_groups,
        peak_rss_mib()
    );
}

fn read(path: PathBuf, typed: bool, threads: usize) {
    let t = Instant::now();
    let file = ParquetFile::open(&path).expect("open");
    let mut rows = 0usize;
    let mut entries = 0usize;
    if typed {
        for batch in file.records::<Sample>(8192) {
            let batch = batch.expect("read");
            rows += batch.len();
            entries += batch.iter().map(|s| s.teacher_topk.len()).sum::<usize>();
        }
    } else {
        for b in file.batches_parallel(8192, threads) {
            let (_, batch) = b.expect("read");
            rows += batch.num_rows();
            entries += batch.get_array_memory_size();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert!(entries > 0);
    println!(
        "{{\"impl\": \"workbench\", \"phase\": \"{}\", \"threads\": {threads}, \"rows\": {rows}, \"seconds\": {secs:.3}, \"rows_per_s\": {:.0}, \"peak_rss_mib\": {:.1}}}",
        if typed { "read_records" } else { "read" },
        rows as f64 / secs,
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = "usage: parquet_io (write FILE [--rows N] | read FILE | read-1thread FILE | read-records FILE)";
    let (Some(phase), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let rows = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    match phase.as_str() {
        "write" => write(PathBuf::from(path), rows),
        "read" => read(PathBuf::from(path), false, 2),
        "read-1thread" => read(PathBuf::from(path), false, 1),
        "read-records" => read(PathBuf::from(path), true, 2),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
