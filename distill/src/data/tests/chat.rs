//! Chat template tests: parity with transformers on the fixtures of
//! `tests/fixtures/make_chat_fixtures.py`, and the engine's edges.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use datasets::Message;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Fixture {
    transformers: String,
    templates: BTreeMap<String, FixtureTemplate>,
    conversations: Vec<Vec<Message>>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct FixtureTemplate {
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    kwargs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    conversation: usize,
    add_generation_prompt: bool,
    expected: Option<String>,
    expected_error_contains: Option<String>,
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/cases.json")
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
    pairs.iter().map(|(r, c)| Message::new(*r, *c)).collect()
}

fn render(source: &str, messages: &[Message], ctx: &TemplateContext) -> Result<String> {
    ChatTemplate::new(source, Some("test".into()))?.render(messages, true, ctx)
}

fn template_message(e: Error) -> (Option<String>, String) {
    match e {
        Error::Template { origin, message } => (origin, message),
        other => panic!("expected a template error, got {other:?}"),
    }
}

#[test]
fn renders_like_transformers() {
    let text = std::fs::read_to_string(fixture_path()).unwrap();
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    let templates: BTreeMap<&str, (ChatTemplate, TemplateContext)> = fixture
        .templates
        .iter()
        .map(|(name, t)| {
            let template = ChatTemplate::new(t.source.clone(), Some(name.clone()))
                .unwrap_or_else(|e| panic!("template `{name}` does not compile: {e}"));
            let ctx = TemplateContext {
                bos_token: t.bos_token.clone(),
                eos_token: t.eos_token.clone(),
                extra: t.kwargs.clone(),
                ..TemplateContext::default()
            };
            (name.as_str(), (template, ctx))
        })
        .collect();

    let mut failures = Vec::new();
    for (i, case) in fixture.cases.iter().enumerate() {
        let (template, ctx) = &templates[case.template.as_str()];
        let messages = &fixture.conversations[case.conversation];
        let got = template.render(messages, case.add_generation_prompt, ctx);
        let what = format!(
            "case {i} (`{}`, conversation {}, add_generation_prompt={})",
            case.template, case.conversation, case.add_generation_prompt
        );
        match (&case.expected, &case.expected_error_contains, got) {
            (Some(want), _, Ok(got)) if *want == got => {}
            (Some(want), _, Ok(got)) => {
                failures.push(format!("{what}:\n  want {want:?}\n  got  {got:?}"))
            }
            (Some(_), _, Err(e)) => failures.push(format!("{what}: unexpected error: {e}")),
            (None, Some(want), Err(e)) => {
                let (_, message) = template_message(e);
                if !message.contains(want.as_str()) {
                    failures.push(format!("{what}: error {message:?} lacks {want:?}"));
                }
            }
            (None, Some(want), Ok(got)) => {
                failures.push(format!("{what}: want an error with {want:?}, got {got:?}"))
            }
            (None, None, _) => failures.push(format!("{what}: the fixture has no expectation")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from transformers {}:\n{}",
        failures.len(),
        fixture.cases.len(),
        fixture.transformers,
        failures.join("\n")
    );
    // The fixture covers the error path too.
    assert!(
        fixture
            .cases
            .iter()
            .any(|c| c.expected_error_contains.is_some())
    );
}

#[test]
fn syntax_error_names_origin_and_line() {
    let err = ChatTemplate::new(
        "{% for m in messages %}\n{{ m.content }}\n{% if %}",
        Some("model/chat_template.jinja".into()),
    )
    .unwrap_err();
    assert!(err.is_bad_input());
    let text = err.to_string();
    let (origin, message) = template_message(err);
    assert_eq!(origin.as_deref(), Some("model/chat_template.jinja"));
    assert!(message.contains("syntax error"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(text.contains("`model/chat_template.jinja`"), "{text}");
}

#[test]
fn unclosed_block_is_a_syntax_error() {
    let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}", None).unwrap_err();
    let (origin, message) = template_message(err);
    assert_eq!(origin, None);
    assert!(message.contains("syntax error"), "{message}");
}

#[test]
fn raise_exception_carries_the_template_message() {
    let source = "{% if messages[0].role != 'user' %}\n{{ raise_exception('Only user turns, please') }}\n{% endif %}ok";
    let template = ChatTemplate::new(source, Some("strict".into())).unwrap();
    let ctx = TemplateContext::default();
    assert_eq!(
        template
            .render(&msgs(&[("user", "hi")]), false, &ctx)
            .unwrap(),
        "ok"
    );
    let err = template
        .render(&msgs(&[("system", "hi")]), false, &ctx)
        .unwrap_err();
    let (origin, message) = template_message(err);
    assert_eq!(origin.as_deref(), Some("strict"));
    assert!(message.starts_with("Only user turns, please"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn raise_exception_inside_a_macro_still_carries_the_message() {
    let source = "{% macro check(m) %}{% if m.role == 'tool' %}{{ raise_exception('no tools: ' ~ m.content) }}{% endif %}{% endmacro %}{% for m in messages %}{{ check(m) }}{% endfor %}";
    let err = render(source, &msgs(&[("tool", "x")]), &TemplateContext::default()).unwrap_err();
    let (_, message) = template_message(err);
    assert!(message.starts_with("no tools: x"), "{message}");
}

#[test]
fn runtime_errors_are_template_errors() {
    // Attribute access on an undefined value fails in jinja2 too.
    let err = render(
        "{{ nothing.attr }}",
        &msgs(&[("user", "x")]),
        &TemplateContext::default(),
    )
    .unwrap_err();
    let (_, message) = template_message(err);
    assert!(message.contains("undefined"), "{message}");

    let err = render(
        "{{ messages | tojson(bogus=1) }}",
        &msgs(&[("user", "x")]),
        &TemplateContext::default(),
    )
    .unwrap_err();
    template_message(err);
}

#[test]
fn empty_conversation_is_refused() {
    let template = ChatTemplate::new("{{ messages | length }}", None).unwrap();
    let err = template
        .render(&[], false, &TemplateContext::default())
        .unwrap_err();
    let (_, message) = template_message(err);
    assert!(message.contains("empty conversation"), "{message}");
}

#[test]
fn extra_variables_cannot_replace_the_conversation() {
    let mut ctx = TemplateContext::default();
    ctx.extra.insert("messages".into(), serde_json::json!([]));
    let err = render("{{ messages }}", &msgs(&[("user", "x")]), &ctx).unwrap_err();
    let (_, message) = template_message(err);
    assert!(message.contains("`messages`"), "{message}");
}

#[test]
fn extra_variables_override_special_tokens() {
    let mut ctx = TemplateContext {
        bos_token: Some("<s>".into()),
        ..TemplateContext::default()
    };
    ctx.extra
        .insert("bos_token".into(), serde_json::json!("<B>"));
    ctx.extra.insert(
        "opts".into(),
        serde_json::json!({"n": 2, "f": 0.5, "list": [1, null]}),
    );
    let out = render(
        "{{ bos_token }}|{{ opts.n * 2 }}|{{ opts.f }}|{{ opts.list }}|{{ opts }}",
        &msgs(&[("user", "x")]),
        &ctx,
    )
    .unwrap();
    assert_eq!(
        out,
        "<B>|4|0.5|[1, None]|{'n': 2, 'f': 0.5, 'list': [1, None]}"
    );
}

#[test]
fn missing_special_tokens_are_undefined() {
    let out = render(
        "[{{ bos_token }}]{{ eos_token is defined }}{{ tools is none }}",
        &msgs(&[("user", "x")]),
        &TemplateContext::default(),
    )
    .unwrap();
    assert_eq!(out, "[]FalseTrue");
}

#[test]
fn strftime_now_reads_the_pinned_clock() {
    // 2024-07-26 09:05:03 UTC, a Friday.
    let now = UNIX_EPOCH + Duration::from_secs(1_721_984_703);
    let ctx = TemplateContext {
        now: Some(now),
        ..TemplateContext::default()
    };
    let out = render(
        "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%-d %B %Y, %A %H:%M:%S %p %j %%') }}",
        &msgs(&[("user", "x")]),
        &ctx,
    )
    .unwrap();
    assert_eq!(out, "26 Jul 2024|26 July 2024, Friday 09:05:03 AM 208 %");
}

#[test]
fn strftime_matches_glibc() {
    let t = 951_782_400; // 2000-02-29 00:00:00 UTC, a Tuesday
    assert_eq!(
        strftime("%Y-%m-%d %a %e %I%p %y %C %u %w", t),
        "2000-02-29 Tue 29 12AM 00 20 2 2"
    );
    assert_eq!(
        strftime("%F %T|%D|%c|%z%Z|%Q|%-m/%-d", t),
        "2000-02-29 00:00:00|02/29/00|Tue Feb 29 00:00:00 2000||%Q|2/29"
    );
    assert_eq!(strftime("%Y-%m-%d %H:%M", -1), "1969-12-31 23:59");
    assert_eq!(strftime("%Y %j", 1_704_067_199), "2023 365");
    for days in [-800_000, -1, 0, 59, 365, 11_016, 20_000, 2_000_000] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

#[test]
fn python_floats() {
    let cases = [
        (1.0, "1.0"),
        (0.5, "0.5"),
        (-0.0, "-0.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e300, "1e+300"),
        (f64::INFINITY, "inf"),
    ];
    for (f, want) in cases {
        let mut out = String::new();
        python_float(f, false, &mut out);
        assert_eq!(out, want, "repr({f:e})");
    }
    let mut out = String::new();
    python_float(f64::NEG_INFINITY, true, &mut out);
    assert_eq!(out, "-Infinity");
}

#[test]
fn python_reprs() {
    let out = render(
        "{{ ['a', \"it's\", 'q\"', 1, 2.5, true, none, {'k': [\"\\n\\t\\u00a0\"]}] }}",
        &msgs(&[("user", "x")]),
        &TemplateContext::default(),
    )
    .unwrap();
    assert_eq!(
        out,
        r#"['a', "it's", 'q"', 1, 2.5, True, None, {'k': ['\n\t\xa0']}]"#
    );
}

#[test]
fn tojson_is_python_json_dumps() {
    let ctx = TemplateContext::default();
    let m = msgs(&[("user", "é \"q\" \\ 🎉\u{1}")]);
    let out = render("{{ messages[0] | tojson }}", &m, &ctx).unwrap();
    assert_eq!(out, r#"{"role": "user", "content": "é \"q\" \\ 🎉\u0001"}"#);
    let out = render("{{ messages[0].content | tojson(true) }}", &m, &ctx).unwrap();
    assert_eq!(out, r#""\u00e9 \"q\" \\ \ud83c\udf89\u0001""#);
    let out = render("{{ [] | tojson(indent=2) }}{{ {} | tojson(indent=2) }}{{ [1, [2]] | tojson(indent='\t') }}", &m, &ctx).unwrap();
    assert_eq!(out, "[]{}[\n\t1,\n\t[\n\t\t2\n\t]\n]");
    let out = render(
        "{{ {'b': 1, 'a': 1.0e20} | tojson(sort_keys=true, separators=[',', '=']) }}{{ {2: none, true: 0.5} | tojson }}",
        &m,
        &ctx,
    )
    .unwrap();
    assert_eq!(out, r#"{"a"=1e+20,"b"=1}{"2": null, "true": 0.5}"#);
    let err = render("{{ nothing | tojson }}", &m, &ctx).unwrap_err();
    let (_, message) = template_message(err);
    assert!(message.contains("not JSON serializable"), "{message}");
}

#[test]
fn generation_tags_keep_output_and_lines() {
    let source = "{%- generation -%}\n a \n{%- endgeneration %}\n{{ '{% generation %}' }}{# {% generation %} #}\n{% generation %}b{% endgeneration %}";
    let rewritten = replace_generation_tags(source);
    assert_eq!(
        rewritten,
        "{%- if true -%}\n a \n{%- endif %}\n{{ '{% generation %}' }}{# {% generation %} #}\n{% if true %}b{% endif %}"
    );
    assert_eq!(rewritten.lines().count(), source.lines().count());
    let out = render(source, &msgs(&[("user", "x")]), &TemplateContext::default()).unwrap();
    // jinja2 drops the newline after a comment too (trim_blocks).
    assert_eq!(out, "a{% generation %}b");
}

/// Text that is not ASCII inside a tag, a comment or an unclosed tag is read as text: no
/// panic on a byte inside a character.
#[test]
fn tags_around_text_that_is_not_ascii_are_found() {
    for source in [
        "{# café — 日本 #}{% generation %}b{% endgeneration %}",
        "{{ 'é' }}{% if x == «y» %}",
        "{# never closed é",
        "{% é",
    ] {
        let _ = replace_generation_tags(source);
    }
    assert_eq!(
        replace_generation_tags("{# café #}{% generation %}b{% endgeneration %}"),
        "{# café #}{% if true %}b{% endif %}"
    );
}

#[test]
fn trailing_newline_is_dropped_like_jinja2() {
    let out = render("x\n", &msgs(&[("user", "x")]), &TemplateContext::default()).unwrap();
    assert_eq!(out, "x");
    let out = render(
        "x\n\n",
        &msgs(&[("user", "x")]),
        &TemplateContext::default(),
    )
    .unwrap();
    assert_eq!(out, "x\n");
}

#[test]
fn templates_render_on_many_threads() {
    let template =
        ChatTemplate::new("{% for m in messages %}{{ m.content }}{% endfor %}", None).unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let template = template.clone();
            s.spawn(move || {
                let m = msgs(&[("user", &i.to_string())]);
                assert_eq!(
                    template
                        .render(&m, false, &TemplateContext::default())
                        .unwrap(),
                    i.to_string()
                );
            });
        }
    });
}
