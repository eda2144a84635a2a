//! `workbench generate`: a local teacher, `workbench serve` as an OpenAI teacher, a misbehaving
//! server, kill and resume, and the API key kept out of every file and log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::fake_openai::{FakeServer, Fault, State, answer_for};
use crate::common::{Sandbox, root, tiny_config};

fn fixture(name: &str) -> PathBuf {
    root().join("distill/tests/fixtures/models").join(name)
}

/// One row of a synthetic set: (id, prompt, completion, completion_ids, top-k ids).
type Row = (String, String, String, Vec<u32>, Vec<Vec<u32>>);

/// The rows of a run's synthetic set.
fn rows(dir: &Path) -> Vec<Row> {
    let set = datasets::Set::open(dir.join("synthetic")).unwrap();
    set.read_all::<datasets::Sample>(None)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.id,
                s.prompt,
                s.completion.unwrap_or_default(),
                s.completion_ids,
                s.teacher_topk
                    .iter()
                    .map(|t| t.iter().map(|x| x.id).collect())
                    .collect(),
            )
        })
        .collect()
}

fn local_config(sb: &Sandbox, name: &str) -> PathBuf {
    tiny_config(
        sb,
        name,
        &format!(
            "[teacher]\npath = \"{}\"\nbatch_size = 8\n\n[generate]\ntemplate = \"{{{{ prompt[-20:] }}}}\"\nmax_new_tokens = 6\ntop_logprobs = 5\ntemperature = 0.8\nmin_chars = 0\ndedup = \"none\"\n",
            fixture("llama-gqa").display()
        ),
    )
}

/// A GGUF file is a local teacher as it is, and `teacher.weights = "q8_0"` generates with its
/// 8-bit matrices: a set as complete as the f32 one, its logprobs those of 8-bit products, with
/// the teacher's answers cached apart (a rerun in f32 asks again rather than reuse the 8-bit
/// answers). `eval` measures it.
#[test]
fn a_gguf_teacher_generates_with_its_8_bit_weights() {
    let sb = Sandbox::new();
    sb.run(&[
        "model",
        "convert",
        "--model",
        fixture("llama-gqa").to_str().unwrap(),
        "--out",
        "teacher.gguf",
        "--quantize",
        "q8_0",
    ])
    .ok();
    let cfg = tiny_config(
        &sb,
        "gguf",
        "[teacher]\npath = \"teacher.gguf\"\nweights = \"q8_0\"\nbatch_size = 8\n\n[generate]\n\
         template = \"{{ prompt[-20:] }}\"\nmax_new_tokens = 6\ntop_logprobs = 5\nmin_chars = 0\n\
         dedup = \"none\"\n",
    );
    let cfg = cfg.to_str().unwrap();
    // The teacher's top-k at each row's first answer token (the prompt is the same whatever
    // the weights, so the two runs grade the same context there), by token id.
    let logprobs = || -> std::collections::BTreeMap<(String, u32), f32> {
        let set = datasets::Set::open(sb.join("runs/gguf/synthetic")).unwrap();
        let samples = set.read_all::<datasets::Sample>(None).unwrap();
        samples
            .iter()
            .flat_map(|s| {
                s.teacher_topk[0]
                    .iter()
                    .map(|x| ((s.id.clone(), x.id), x.logprob))
            })
            .collect()
    };
    sb.run(&["generate", cfg]).ok();
    let q8 = rows(&sb.join("runs/gguf"));
    assert!(!q8.is_empty());
    let q8_logprobs = logprobs();
    let f32 = sb
        .run(&["generate", cfg, "--set", "teacher.weights=f32", "--force"])
        .ok();
    assert!(
        f32.stderr.contains("0 answered from the cache"),
        "{}",
        f32.stderr
    );
    assert_eq!(rows(&sb.join("runs/gguf")).len(), q8.len());
    // The 8-bit products round the activations to 8 bits too, so the 8-bit teacher's logprobs
    // differ from the f32 decoder's on the same weights (by up to about 0.14 here).
    let f32_logprobs = logprobs();
    let gaps: Vec<f32> = q8_logprobs
        .iter()
        .filter_map(|(k, a)| f32_logprobs.get(k).map(|b| (a - b).abs()))
        .collect();
    assert!(gaps.len() > q8.len(), "{} shared entries", gaps.len());
    let worst = gaps.iter().fold(0.0f32, |a, &g| a.max(g));
    assert!(worst > 0.0, "the teacher ran in f32 both times");
    assert!(worst < 0.5, "8-bit and f32 logprobs differ by {worst}");
    // The file is evaluated as the run's teacher, as a checkpoint directory would be; no eval
    // prompt fits its 128 positions, so it has no loss to show, and that is said.
    let eval = sb.run(&["eval", cfg, "--set", "teacher.weights=f32"]).ok();
    assert!(
        eval.stdout.contains("| teacher | 0.0% | — | — |"),
        "{}",
        eval.stdout
    );
    let said = "`teacher` gave no answer to 12 of the 12 eval prompts: they fill every position";
    assert!(eval.stderr.contains(said), "{}", eval.stderr);
    let md = std::fs::read_to_string(sb.join("runs/gguf/report/report.md")).unwrap();
    assert!(md.contains(said), "{md}");
}

#[test]
fn a_local_teacher_writes_a_deterministic_set_and_a_rerun_asks_nothing() {
    let a = Sandbox::new();
    let cfg = local_config(&a, "gen");
    let run = a.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(run.stderr.contains("generate: "), "{}", run.stderr);
    let first = rows(&a.join("runs/gen"));
    let prompts = datasets::Set::open(a.join("runs/gen/data/prompts"))
        .unwrap()
        .num_rows()
        .unwrap() as usize;
    assert_eq!(
        first.len(),
        prompts,
        "every prompt answered (no filter drops here)"
    );
    for (_, _, _, ids, top) in &first {
        assert!(!ids.is_empty() && ids.len() <= 6);
        assert_eq!(ids.len(), top.len());
        assert!(top.iter().all(|t| t.len() == 5));
    }
    // Same config elsewhere: the same set.
    let b = Sandbox::new();
    let cfg_b = local_config(&b, "gen");
    b.run(&["generate", cfg_b.to_str().unwrap()]).ok();
    assert_eq!(rows(&b.join("runs/gen")), first);

    // Again in place: skipped. Forced with other filters: redone from the cache alone.
    let again = a.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(again.stderr.contains("up to date"), "{}", again.stderr);
    let redo = a
        .run(&[
            "generate",
            cfg.to_str().unwrap(),
            "--set",
            "generate.max_chars=1000",
            "--force",
        ])
        .ok();
    assert!(
        redo.stderr
            .contains(&format!("{prompts} answered from the cache, 0 asked")),
        "{}",
        redo.stderr
    );
    assert_eq!(rows(&a.join("runs/gen")), first);

    // The confidence filter at the median: the answers below it go, counted, and nothing is
    // asked again.
    let means = |dir: &Path| -> Vec<f32> {
        datasets::Set::open(dir.join("synthetic"))
            .unwrap()
            .read_all::<datasets::Sample>(None)
            .unwrap()
            .iter()
            .map(|s| s.logprob_mean.unwrap())
            .collect()
    };
    let mut all = means(&a.join("runs/gen"));
    all.sort_by(f32::total_cmp);
    // As the config will read it: a decimal, parsed to f64.
    let median = all[all.len() / 2].to_string();
    let threshold: f64 = median.parse().unwrap();
    let below = all.iter().filter(|m| f64::from(**m) < threshold).count();
    assert!(below > 0);
    let filtered = a
        .run(&[
            "generate",
            cfg.to_str().unwrap(),
            "--set",
            &format!("generate.min_logprob_mean={median}"),
            "--force",
        ])
        .ok();
    assert!(
        filtered
            .stderr
            .contains(&format!("{prompts} answered from the cache, 0 asked")),
        "{}",
        filtered.stderr
    );
    assert!(
        filtered
            .stderr
            .contains(&format!("low confidence: removed {below}")),
        "{}",
        filtered.stderr
    );
    let kept = means(&a.join("runs/gen"));
    assert_eq!(kept.len(), prompts - below);
    assert!(kept.iter().all(|m| f64::from(*m) >= threshold));
}

#[test]
fn workbench_serve_as_an_openai_teacher_gives_the_local_teachers_greedy_answers() {
    let sb = Sandbox::new();
    let server = crate::model::Server::start(&fixture("llama-gqa"));
    let common = "\n[generate]\ntemplate = \"{{ prompt[-20:] }}\"\nmax_new_tokens = 6\ntop_logprobs = 5\nmin_chars = 0\ndedup = \"none\"\nlimit = 12\n";
    let remote = tiny_config(
        &sb,
        "remote",
        &format!(
            "[teacher]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\nmodel = \"llama-gqa\"\nconcurrency = 3\n{common}",
            server.addr
        ),
    );
    let run = sb.run(&["generate", remote.to_str().unwrap()]).ok();
    assert!(
        run.stderr
            .contains(&format!("prompts sent to: {}", server.addr)),
        "{}",
        run.stderr
    );
    let local = tiny_config(
        &sb,
        "local",
        &format!(
            "[teacher]\npath = \"{}\"\n{common}",
            fixture("llama-gqa").display()
        ),
    );
    sb.run(&["generate", local.to_str().unwrap()]).ok();
    let (r, l) = (rows(&sb.join("runs/remote")), rows(&sb.join("runs/local")));
    assert_eq!(r.len(), 12);
    // Greedy through the chat template on both sides: the same tokens, exact ids.
    let ids = |v: &[Row]| {
        v.iter()
            .map(|x| (x.1.clone(), x.3.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&r), ids(&l));
    let stage = std::fs::read_to_string(sb.join("runs/remote/synthetic/STAGE.json")).unwrap();
    assert!(stage.contains("\"token_ids\": \"exact\""), "{stage}");
}

fn fake_config(sb: &Sandbox, name: &str, server: &FakeServer, extra: &str) -> PathBuf {
    tiny_config(
        sb,
        name,
        &format!(
            "[teacher]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake\"\nconcurrency = 2\ntimeout_secs = 2.0\nbackoff_ms = 20\nbackoff_max_ms = 200\nprice_input_per_mtok = 1.0\nprice_output_per_mtok = 2.0\n{extra}\n[generate]\nmin_chars = 0\ndedup = \"none\"\nlimit = 20\ncheck_teacher = false\n",
            server.base_url()
        ),
    )
}

#[test]
fn every_kind_of_server_fault_is_retried_and_answers_stay_right() {
    let sb = Sandbox::new();
    let server = FakeServer::start(State {
        plan: [
            Fault::TooMany,
            Fault::Internal,
            Fault::Slow,
            Fault::Malformed,
            Fault::Drop,
        ]
        .into(),
        ..Default::default()
    });
    let cfg = fake_config(&sb, "faults", &server, "");
    let t = Instant::now();
    let run = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    // Five faults, five retries (more only if this machine is so loaded that a good answer
    // missed the two-second timeout).
    let retried: u64 = run
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_suffix(" failed attempts were retried"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(retried >= 5, "{}", run.stderr);
    assert!(run.stderr.contains("cost 0.00"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 429"), "{}", run.stderr);
    // Retry-After: 1 was honoured.
    assert!(t.elapsed() >= Duration::from_secs(1));
    let rows = rows(&sb.join("runs/faults"));
    assert_eq!(rows.len(), 20);
    for (_, prompt, completion, ids, _) in &rows {
        assert_eq!(completion, &answer_for(prompt));
        assert_eq!(ids, &completion.bytes().map(u32::from).collect::<Vec<_>>());
    }
}

#[test]
fn when_retries_run_out_the_error_is_clear_and_answers_are_kept() {
    let sb = Sandbox::new();
    // Eight good answers, then nothing but 500s.
    let server = FakeServer::start(State {
        plan: std::iter::repeat_n(Fault::Ok, 8).collect(),
        after: Some(Fault::Internal),
        ..Default::default()
    });
    let cfg = fake_config(&sb, "outage", &server, "max_retries = 2");
    let run = sb.run(&["generate", cfg.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("gave up after 3 attempts"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("answers received so far are kept"),
        "{}",
        run.stderr
    );
    assert!(
        !sb.join("runs/outage/synthetic").exists(),
        "no half-written set"
    );
    // The server recovers; the rerun asks only for what was never answered.
    server.with(|s| {
        s.after = None;
        s.per_prompt.clear();
    });
    let again = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(
        again.stderr.contains("8 answered from the cache, 12 asked"),
        "{}",
        again.stderr
    );
    assert_eq!(rows(&sb.join("runs/outage")).len(), 20);
    server.with(|s| assert!(s.per_prompt.values().all(|&n| n == 1), "{:?}", s.per_prompt));
}

/// A set the filters empty is refused where it is made, with what removed the answers; the
/// answers stay in the cache, so the rerun with other filters asks nothing again.
#[test]
fn a_set_the_filters_empty_is_refused_and_its_answers_kept() {
    let sb = Sandbox::new();
    let server = FakeServer::start(State::default());
    let cfg = fake_config(&sb, "emptied", &server, "");
    // The fake server's answers (`ans-N`) are no dates.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[generate]\n", "[generate]\nvalidator = \"iso_date\"\n"),
    )
    .unwrap();
    let r = sb.run(&["generate", cfg.to_str().unwrap()]).bad_input();
    for needle in [
        "synthetic set would be empty",
        "validator 20",
        "teacher-responses.jsonl",
        "--force",
        "generate.template",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert!(
        !sb.join("runs/emptied/synthetic").exists(),
        "no empty set written"
    );
    std::fs::write(&cfg, text).unwrap();
    let again = sb.run(&["generate", cfg.to_str().unwrap(), "--force"]).ok();
    assert!(
        again.stderr.contains("20 answered from the cache, 0 asked"),
        "{}",
        again.stderr
    );
    assert_eq!(rows(&sb.join("runs/emptied")).len(), 20);
}

#[test]
fn a_killed_run_resumes_without_repeats_or_gaps() {
    let make = |sb: &Sandbox, server: &FakeServer| {
        let cfg = fake_config(sb, "kill", server, "");
        std::fs::write(
            &cfg,
            std::fs::read_to_string(&cfg)
                .unwrap()
                .replace("limit = 20", "limit = 60"),
        )
        .unwrap();
        cfg
    };
    // The uninterrupted run.
    let whole = Sandbox::new();
    let server = FakeServer::start(State::default());
    let cfg = make(&whole, &server);
    whole.run(&["generate", cfg.to_str().unwrap()]).ok();
    let expected = rows(&whole.join("runs/kill"));
    let prompts = datasets::Set::open(whole.join("runs/kill/data/prompts"))
        .unwrap()
        .num_rows()
        .unwrap() as usize;
    assert_eq!(expected.len(), prompts);

    // Killed after about 20 answers, then resumed.
    let sb = Sandbox::new();
    let server = FakeServer::start(State {
        delay: Duration::from_millis(25),
        ..Default::default()
    });
    let cfg = make(&sb, &server);
    let mut child = sb.spawn(&["generate", cfg.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.with(|s| s.answered) < 20 {
        assert!(
            Instant::now() < deadline,
            "the server never got 20 requests"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = server.with(|s| s.answered);
    assert!(before < prompts, "killed before the end");
    let again = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(again.stderr.contains("asked"), "{}", again.stderr);
    assert_eq!(rows(&sb.join("runs/kill")), expected);
    // Nothing answered and recorded was asked again: only requests in flight at the kill (at
    // most `concurrency` of them) can repeat.
    server.with(|s| {
        let repeated = s.per_prompt.values().filter(|&&n| n > 1).count();
        assert!(
            repeated <= 2,
            "{repeated} prompts asked twice: {:?}",
            s.per_prompt
        );
        assert_eq!(s.per_prompt.len(), prompts);
    });
}

#[test]
fn the_api_key_is_sent_but_never_written_or_logged() {
    let key = format!("sk-test-{:x}", std::process::id() as u64 * 7919 + 12345);
    let sb = Sandbox::new();
    let server = FakeServer::start(State {
        key: Some(key.clone()),
        plan: [Fault::TooMany, Fault::Internal].into(),
        ..Default::default()
    });
    let cfg = fake_config(&sb, "secret", &server, "api_key_env = \"WB_TEST_KEY\"");
    let run = sb.run_env(
        &["generate", cfg.to_str().unwrap()],
        &[("WB_TEST_KEY", &key), ("RUST_LOG", "trace")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut seen = vec![run.stdout.clone(), run.stderr.clone()];
    // A wrong key: refused by the server; the error must not echo either key.
    let wrong = sb.run_env(
        &[
            "generate",
            cfg.to_str().unwrap(),
            "--force",
            "--set",
            "generate.limit=25",
        ],
        &[("WB_TEST_KEY", "sk-wrong-key-0000"), ("RUST_LOG", "debug")],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("HTTP 401"), "{}", wrong.stderr);
    seen.push(wrong.stdout.clone());
    seen.push(wrong.stderr.clone());
    for text in &seen {
        assert!(
            !text.contains(&key) && !text.contains("sk-wrong-key"),
            "{text}"
        );
    }
    let mut files = 0;
    let mut stack = vec![sb.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                let hit = bytes.windows(key.len()).any(|w| w == key.as_bytes());
                assert!(!hit, "the key is in `{}`", p.display());
            }
        }
    }
    assert!(files > 5, "the run wrote files to look in");

    // Missing variable, and a remote host without `allow_remote`: bad input, named.
    let missing = sb
        .run(&[
            "generate",
            cfg.to_str().unwrap(),
            "--force",
            "--set",
            "generate.limit=26",
        ])
        .bad_input();
    assert!(
        missing.stderr.contains("`WB_TEST_KEY` is not set"),
        "{}",
        missing.stderr
    );
    let remote = sb
        .run(&[
            "generate",
            cfg.to_str().unwrap(),
            "--force",
            "--set",
            "teacher.base_url=https://api.example.com/v1",
        ])
        .bad_input();
    assert!(
        remote.stderr.contains("api.example.com:443"),
        "{}",
        remote.stderr
    );
    assert!(remote.stderr.contains("allow_remote"), "{}", remote.stderr);
}

#[test]
fn self_instruct_few_shot_and_filters_through_an_openai_teacher() {
    let sb = Sandbox::new();
    let server = FakeServer::start(State::default());
    let cfg = fake_config(&sb, "synth", &server, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[generate]\nmin_chars = 0\n",
        "[generate]\nmin_chars = 0\nsynthesize = 4\nshots = 2\ntemplate = \"{% for e in examples %}{{ e.prompt }} => {{ e.completion }}\\n{% endfor %}{{ prompt }} =>\"\nreject = \"ans-1\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let run = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(
        run.stderr.contains("4 new prompts synthesized"),
        "{}",
        run.stderr
    );
    let stage = std::fs::read_to_string(sb.join("runs/synth/synthetic/STAGE.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&stage).unwrap();
    let rows = rows(&sb.join("runs/synth"));
    let removed = v["summary"]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "reject regex")
        .unwrap()["removed"]
        .as_u64()
        .unwrap();
    // 20 prompts + 4 synthesized, minus what the reject regex removed (answers `ans-1...`).
    assert_eq!(rows.len() as u64 + removed, 24, "{stage}");
    assert!(rows.iter().all(|r| !r.2.contains("ans-1")));
    // Each user turn carried two worked examples.
    server.with(|s| {
        let shown = s
            .per_prompt
            .keys()
            .filter(|p| p.ends_with(" =>") && p.matches(" => ").count() == 2)
            .count();
        assert_eq!(
            shown,
            24,
            "{:?}",
            s.per_prompt.keys().take(3).collect::<Vec<_>>()
        );
    });
}

/// A confidence filter needs logprobs: a server that sends none gets one clear message, and no
/// set is written.
#[test]
fn a_confidence_filter_on_a_teacher_without_logprobs_is_refused() {
    let sb = Sandbox::new();
    let server = FakeServer::start(State {
        no_logprobs: true,
        ..State::default()
    });
    // With the teacher's tokenizer the answers' text maps to ids, so the set could be made.
    let tokenizer = format!("tokenizer = \"{}\"", fixture("llama-gqa").display());
    let cfg = fake_config(&sb, "nolp", &server, &tokenizer);
    let r = sb
        .run(&[
            "generate",
            cfg.to_str().unwrap(),
            "--set",
            "generate.min_logprob_mean=-0.5",
        ])
        .bad_input();
    for needle in [
        "`generate.min_logprob_mean`",
        "`openai:fake` returned an answer without any",
        "remove `generate.min_logprob_mean`",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert!(!sb.join("runs/nolp/synthetic").exists());
    // Without the filter the same answers make a set.
    let r = sb.run(&["generate", cfg.to_str().unwrap(), "--force"]).ok();
    assert!(
        r.stderr.contains("20 answered from the cache"),
        "{}",
        r.stderr
    );
    assert_eq!(rows(&sb.join("runs/nolp")).len(), 20);
}

#[test]
fn the_completions_api_without_ids_maps_tokens_and_says_so() {
    let sb = Sandbox::new();
    let server = crate::model::Server::start(&fixture("llama-gqa"));
    let cfg = tiny_config(
        &sb,
        "approx",
        &format!(
            "[teacher]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\nmodel = \"llama-gqa\"\napi = \"completions\"\ntoken_ids = false\ntokenizer = \"{}\"\n\n[generate]\ntemplate = \"{{{{ prompt[-20:] }}}}\"\nmax_new_tokens = 5\ntop_logprobs = 3\nmin_chars = 0\ndedup = \"none\"\nlimit = 5\n",
            server.addr,
            fixture("llama-gqa").display()
        ),
    );
    let run = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(
        run.stderr.contains("token ids are approximate"),
        "{}",
        run.stderr
    );
    let card = std::fs::read_to_string(sb.join("runs/approx/synthetic/README.md")).unwrap();
    assert!(card.contains("approximate"), "{card}");
    let inspect = sb
        .run(&["datasets", "inspect", "runs/approx/synthetic", "--json"])
        .ok();
    assert!(
        inspect
            .stdout
            .contains("\"workbench.token_ids\": \"approximate\"")
            || inspect
                .stdout
                .contains("\"workbench.token_ids\":\"approximate\""),
        "{}",
        inspect.stdout
    );
    let rows = rows(&sb.join("runs/approx"));
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r.3.len() == r.4.len() && r.4.iter().all(|t| !t.is_empty()))
    );
}

#[test]
fn a_student_checkpoint_adds_the_disagreement_score() {
    let sb = Sandbox::new();
    let cfg = |name: &str, student: &str| {
        tiny_config(
            &sb,
            name,
            &format!(
                "[teacher]\npath = \"{}\"\n\n[generate]\ntemplate = \"{{{{ prompt[-20:] }}}}\"\nmax_new_tokens = 5\ntop_logprobs = 5\nmin_chars = 0\ndedup = \"none\"\nlimit = 8\nstudent = \"{}\"\n",
                fixture("llama-gqa").display(),
                fixture(student).display()
            ),
        )
    };
    let mean = |name: &str| {
        let set = datasets::Set::open(sb.join(&format!("runs/{name}/synthetic"))).unwrap();
        let rows = set.read_all::<datasets::Sample>(None).unwrap();
        assert_eq!(rows.len(), 8);
        let d: Vec<f32> = rows.iter().map(|r| r.disagreement.unwrap()).collect();
        assert!(d.iter().all(|x| x.is_finite() && *x >= 0.0), "{d:?}");
        d.iter().sum::<f32>() / d.len() as f32
    };
    let same = cfg("same", "llama-gqa");
    sb.run(&["generate", same.to_str().unwrap()]).ok();
    let other = cfg("other", "llama-head-dim");
    sb.run(&["generate", other.to_str().unwrap()]).ok();
    let (s, o) = (mean("same"), mean("other"));
    // The teacher as its own student agrees with itself; another model does not.
    assert!(s < 1e-3, "{s}");
    assert!(o > 20.0 * s.max(1e-4), "same {s}, other {o}");
}

#[test]
fn prompts_come_from_any_file_with_a_column_mapping() {
    let sb = Sandbox::new();
    let server = FakeServer::start(State::default());
    let lines: String = (0..7)
        .map(|i| {
            format!(
                "{{\"question\": \"What is {i} plus {i}?\", \"answer\": \"{}\"}}\n",
                2 * i
            )
        })
        .collect();
    sb.write("questions.jsonl", lines);
    let cfg = fake_config(&sb, "file", &server, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[generate]\n",
        "[generate]\nprompts = { path = \"questions.jsonl\", map = { prompt = \"question\", reference = \"answer\" } }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    let set = datasets::Set::open(sb.join("runs/file/synthetic")).unwrap();
    let rows = set.read_all::<datasets::Sample>(None).unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[3].prompt, "What is 3 plus 3?");
    assert_eq!(rows[3].reference.as_deref(), Some("6"));
    assert_eq!(
        rows[3].completion.as_deref(),
        Some(answer_for("What is 3 plus 3?").as_str())
    );
    assert_eq!(rows[3].teacher.as_deref(), Some("openai:fake"));
}

#[test]
fn a_fleet_of_servers_shares_the_work() {
    let sb = Sandbox::new();
    let a = FakeServer::start(State::default());
    let b = FakeServer::start(State::default());
    let cfg = fake_config(&sb, "fleet", &a, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("base_url = \"{}\"", a.base_url()),
        &format!("base_url = [\"{}\", \"{}\"]", a.base_url(), b.base_url()),
    );
    std::fs::write(&cfg, text).unwrap();
    let run = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    let (na, nb) = (a.with(|s| s.answered), b.with(|s| s.answered));
    assert_eq!(na + nb, 20);
    assert!(na >= 8 && nb >= 8, "{na} and {nb}");
    for server in [&a, &b] {
        assert!(run.stderr.contains(&server.addr), "{}", run.stderr);
    }
}

/// Three servers, one down and one slow: every prompt is answered once; the one down is taken
/// out after three failures in a row and brought back by a health check once it is up; the slow
/// one gets less work than the fast one (least outstanding requests first); and the summary's
/// per-server figures are what each server saw.
#[test]
fn a_fleet_routes_around_a_failing_server_and_brings_it_back() {
    let sb = Sandbox::new();
    let fast = FakeServer::start(State {
        delay: std::time::Duration::from_millis(80),
        ..Default::default()
    });
    let slow = FakeServer::start(State {
        delay: std::time::Duration::from_millis(400),
        ..Default::default()
    });
    let down = FakeServer::start(State {
        down: true,
        delay: std::time::Duration::from_millis(40),
        ..Default::default()
    });
    let cfg = fake_config(&sb, "fleet3", &fast, "max_retries = 8\n");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &format!("base_url = \"{}\"", fast.base_url()),
            &format!(
                "base_url = [\"{}\", \"{}\", \"{}\"]",
                down.base_url(),
                slow.base_url(),
                fast.base_url()
            ),
        )
        .replace("concurrency = 2", "concurrency = 3")
        .replace("limit = 20", "limit = 50");
    std::fs::write(&cfg, text).unwrap();
    // The server comes up once it has failed three times (and so been taken out).
    let state = down.state.clone();
    let watcher = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(20) {
            {
                let mut s = state.lock().unwrap();
                if s.errors_sent >= 3 {
                    s.down = false;
                    return true;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    });
    let run = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(watcher.join().unwrap(), "the failing server never failed");
    let stage: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.join("runs/fleet3/synthetic/STAGE.json")).unwrap(),
    )
    .unwrap();
    let summary = &stage["summary"];
    let asked = summary["asked"].as_u64().unwrap();
    let answered: Vec<u64> = [&down, &slow, &fast]
        .iter()
        .map(|s| s.with(|s| s.answered as u64))
        .collect();
    assert_eq!(
        answered.iter().sum::<u64>(),
        asked,
        "every prompt answered once"
    );
    let servers = summary["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    for (i, server) in [&down, &slow, &fast].iter().enumerate() {
        let (received, sent_errors, answered) =
            server.with(|s| (s.received as u64, s.errors_sent as u64, s.answered as u64));
        let s = &servers[i];
        assert_eq!(s["host"], server.addr.as_str());
        assert_eq!(s["requests"].as_u64(), Some(received), "{s}");
        assert_eq!(s["answered"].as_u64(), Some(answered), "{s}");
        assert_eq!(s["failed"].as_u64(), Some(sent_errors), "{s}");
        assert!(
            run.stderr
                .contains(&format!("{}: {answered} answered", server.addr)),
            "{}",
            run.stderr
        );
    }
    let d = &servers[0];
    assert!(d["failed"].as_u64().unwrap() >= 3, "{d}");
    assert_eq!(d["taken_out"], 1, "{d}");
    assert_eq!(d["brought_back"], 1, "{d}");
    assert!(
        d["answered"].as_u64().unwrap() > 0,
        "it worked again once back: {d}"
    );
    assert!(down.with(|s| s.health_checks) >= 1);
    assert!(
        answered[2] > answered[1],
        "the fast server did more than the slow one: {answered:?}"
    );
    assert!(run.stderr.contains("taken out 1×"), "{}", run.stderr);
}

#[test]
fn run_goes_on_to_generation_when_the_teacher_exists() {
    let sb = Sandbox::new();
    let cfg = local_config(&sb, "loop");
    let run = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(run.stderr.contains("generate: "), "{}", run.stderr);
    // A checkpoint teacher is used as it is, never trained.
    assert!(!run.stderr.contains("teacher: "), "{}", run.stderr);
    // It is measured on the eval prompts before it answers the pool, against the gold-only
    // student trained before it (a fixture that knows no dates: not clearly better).
    let e = &run.stderr;
    let at = |needle: &str| {
        e.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {e}"))
    };
    assert!(at("gold-only: ") < at("the teacher answered the 12 eval prompts first (12 asked)"));
    assert!(at("prompts first") < at("WARNING: the teacher ("));
    assert!(at("WARNING: the teacher (") < at("rows from 60 prompts"));
    assert!(
        e.contains("on the eval prompts, asked before the pool"),
        "{e}"
    );
    let stage: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.join("runs/loop/synthetic/STAGE.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stage["summary"]["teacher_check"]["rows"], 12, "{stage}");
    let report = std::fs::read_to_string(sb.join("runs/loop/report/report.md")).unwrap();
    assert!(report.contains("**Warning:** the teacher ("), "{report}");
    assert!(sb.join("runs/loop/synthetic/STAGE.json").is_file());
    assert!(sb.join("runs/loop/student/final/config.json").is_file());
    let again = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(
        again.stderr.contains("generate: up to date"),
        "{}",
        again.stderr
    );
}

/// Prompts that overlap the eval set are dropped before the teacher is asked, counted, so no
/// call is paid for a row that would be thrown away: here three eval prompts in a
/// `generate.prompts` file the data stage never saw.
#[test]
fn contaminated_prompts_are_dropped_before_the_teacher_is_asked() {
    // The eval prompts of the fake config's built-in task (the same for the same seed).
    let first = Sandbox::new();
    let server = FakeServer::start(State::default());
    let cfg = fake_config(&first, "d", &server, "");
    first.run(&["generate", cfg.to_str().unwrap()]).ok();
    let eval: Vec<String> = datasets::Set::open(first.join("runs/d/data/eval"))
        .unwrap()
        .read_all::<datasets::Sample>(None)
        .unwrap()
        .into_iter()
        .map(|s| s.prompt)
        .collect();

    let sb = Sandbox::new();
    let server = FakeServer::start(State::default());
    let mut lines: String = eval[..3]
        .iter()
        .map(|p| format!("{}\n", serde_json::json!({ "prompt": p })))
        .collect();
    lines.extend((0..7).map(|i| format!("{{\"prompt\": \"What is {i} plus {i}?\"}}\n")));
    sb.write("mixed.jsonl", lines);
    let cfg = fake_config(&sb, "d", &server, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[generate]\n",
        "[generate]\nprompts = { path = \"mixed.jsonl\" }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let r = sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("7 asked"), "{}", r.stderr);
    assert!(
        r.stderr.contains("decontamination") && r.stderr.contains("removed 3"),
        "{}",
        r.stderr
    );
    server.with(|s| {
        assert_eq!(s.received, 7);
        assert!(eval[..3].iter().all(|p| !s.per_prompt.contains_key(p)));
    });
    assert_eq!(rows(&sb.join("runs/d")).len(), 7);
}

/// A data stage whose decontamination would remove most of the prompt pool stops the run before
/// a single request reaches the teacher's server.
#[test]
fn a_run_stopped_by_a_filter_never_calls_the_server() {
    let sb = Sandbox::new();
    let server = FakeServer::start(State::default());
    let eval: String = (0..10)
        .map(|i| {
            format!(
                "{{\"prompt\": \"What is {i} times three?\", \"answer\": \"{}\"}}\n",
                3 * i
            )
        })
        .collect();
    sb.write("eval.jsonl", &eval);
    sb.write("gold.jsonl", eval.replace("times three", "times two"));
    sb.write("prompts.jsonl", &eval);
    let cfg = sb.write(
        "stop.toml",
        format!(
            "[run]\nname = \"stop\"\n\n[data]\ngold = {{ path = \"gold.jsonl\" }}\n\
             prompts = {{ path = \"prompts.jsonl\" }}\neval = {{ path = \"eval.jsonl\" }}\n\n\
             [teacher]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake\"\n",
            server.base_url()
        ),
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).bad_input();
    for needle in [
        "removed 10 of the 10 prompts rows (100%)",
        "before any teacher is asked",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    server.with(|s| assert_eq!(s.received, 0));
    assert!(!sb.join("runs/stop/data").exists());
    assert!(!sb.join("runs/stop/cache").exists());
}
