//! Micro-benchmarks of what a run adds on top of the provider: request building and template
//! rendering, key decryption (v1 cold and cached, v2), output validation, SSE assembly.
//!
//! Run: `cargo bench -p ai-runner --bench core` (or `bash bench/run` for everything).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use ai_runner::Secret;
use ai_runner::config::ValidationSettings;
use ai_runner::crypto::{Keyring, derive_v1_key};
use ai_runner::model::{ConnectionInfo, PromptInfo, ResolvedConfig};
use ai_runner::provider::sse::SseAssembler;
use ai_runner::request::{OutputSpec, build};
use ai_runner::template::render;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

fn config() -> ResolvedConfig {
    ResolvedConfig {
        config_id: 1,
        config_key: "summarise_call".into(),
        model: "gpt-4o-mini".into(),
        connection: ConnectionInfo {
            id: 1,
            name: "openai-main".into(),
            provider: String::new(),
            base_url: "https://api.openai.com/v1/chat/completions".into(),
            key_blob: String::new(),
        },
        prompt: Some(PromptInfo {
            name: "call-summary".into(),
            version: "3".into(),
            messages: json!([
                {"role": "system", "content": "你是客服质检助手。只输出 JSON：{\"摘要\": 字符串, \"情绪\": 字符串, \"要点\": 字符串数组}。客户：{{CUSTOMER}}，坐席：{{AGENT}}。"},
                {"role": "user", "content": [
                    {"type": "text", "text": "通话编号 {{CALL_ID}}，时长 {{DURATION}} 秒。请总结以下转写：\n{{TRANSCRIPT}}"},
                    {"type": "image_url", "image_url": {"url": "{{MEDIA_URL}}"}}
                ]}
            ]),
            response_format: Some(
                json!({"type": "json_schema", "json_schema": {"name": "summary", "schema": schema()}}),
            ),
            variables: Some(json!({"AGENT": "王小明", "DURATION": 300})),
        }),
        params: Some(
            json!({"TEMPERATURE": 0.2, "TOP_P": 0.9, "MAX_TOKENS": 800, "PRESENCE_PENALTY": 0.1, "CUSTOMER": "默认客户"}),
        ),
    }
}

fn schema() -> Value {
    json!({"type": "object", "required": ["摘要", "情绪", "要点"], "properties": {
        "摘要": {"type": "string", "maxLength": 500},
        "情绪": {"type": "string", "enum": ["积极", "中性", "消极"]},
        "要点": {"type": "array", "items": {"type": "string"}, "maxItems": 20}
    }})
}

fn answer() -> String {
    json!({
        "摘要": "客户反映账单金额与套餐不符，坐席核实后确认系统重复扣费，已提交退款申请并承诺三个工作日内到账。".repeat(3),
        "情绪": "中性",
        "要点": ["重复扣费", "已提交退款", "三个工作日内到账", "客户同意等待", "坐席致歉"]
    })
    .to_string()
}

fn runtime_vars() -> Map<String, Value> {
    json!({"CUSTOMER": "李女士", "CALL_ID": "C-20261126-0042", "TRANSCRIPT": "客户：你好，我的账单不对。坐席：请稍等，我帮您查一下。".repeat(20), "MEDIA_URL": "https://bucket.example/x.png"})
        .as_object()
        .cloned()
        .unwrap()
}

fn bench_request(c: &mut Criterion) {
    let cfg = config();
    let vars = runtime_vars();
    let defaults = ValidationSettings::default();
    c.bench_function(
        "request/build (2 messages, 6 variables, 4 params, json_schema)",
        |b| b.iter(|| build(black_box(&cfg), None, black_box(&vars), &defaults).unwrap()),
    );
    let template = "通话编号 {{CALL_ID}}，时长 {{DURATION}} 秒。客户 {{CUSTOMER}}，坐席 {{AGENT}}。{{TRANSCRIPT}}";
    let mut all = vars.clone();
    all.insert("AGENT".into(), json!("王小明"));
    all.insert("DURATION".into(), json!(300));
    c.bench_function("request/render one template string (4 placeholders)", |b| {
        b.iter(|| render(black_box(template), black_box(&all)))
    });
}

fn bench_crypto(c: &mut Criterion) {
    let vectors: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/spec/crypto-test-vectors.json"
    ))
    .unwrap();
    let v = &vectors[0];
    let pepper = Secret::new(v["pepper"].as_str().unwrap());
    let stored = v["stored_string"].as_str().unwrap();
    let mut g = c.benchmark_group("crypto");
    g.sample_size(10);
    g.bench_function(
        "v1 key derivation, cold (PBKDF2 200k rounds, what the predecessor paid per call)",
        |b| b.iter(|| derive_v1_key(black_box(&pepper), b"0123456789abcdef", 200_000)),
    );
    g.finish();
    let ring = Keyring::new(Some(pepper.clone()), None);
    ring.decrypt(stored, "x").unwrap();
    c.bench_function("crypto/v1 decrypt with the process key cache", |b| {
        b.iter(|| ring.decrypt(black_box(stored), "x").unwrap())
    });
    let v2 = ring
        .encrypt(
            "sk-live-0123456789abcdef0123456789",
            "ai_connection:openai-main",
        )
        .unwrap();
    c.bench_function(
        "crypto/v2 decrypt (HKDF key, AES-256-GCM, row-bound AAD)",
        |b| {
            b.iter(|| {
                ring.decrypt(black_box(&v2), "ai_connection:openai-main")
                    .unwrap()
            })
        },
    );
}

fn bench_validate(c: &mut Criterion) {
    let content = answer();
    let json_only = OutputSpec {
        expects_json: true,
        schema: None,
        enforce_json: true,
        no_english: true,
    };
    let with_schema = OutputSpec {
        schema: Some(schema()),
        ..json_only.clone()
    };
    c.bench_function("validate/JSON + no-English (~1 KB answer)", |b| {
        b.iter(|| ai_runner::validate::check(black_box(&content), &json_only).unwrap())
    });
    c.bench_function("validate/JSON + schema + no-English (~1 KB answer)", |b| {
        b.iter(|| ai_runner::validate::check(black_box(&content), &with_schema).unwrap())
    });
}

fn bench_sse(c: &mut Criterion) {
    let sse = include_bytes!(
        "../../tests/fixtures/openai/chat-completions-stream-text-with-usage.recorded.sse"
    );
    c.bench_function("sse/assemble the recorded stream (33 chunks)", |b| {
        b.iter(|| {
            let mut a = SseAssembler::new();
            a.push(black_box(sse)).unwrap();
            a.finish().unwrap()
        })
    });
    // A hostile stream: one line that never ends, in small pieces. Linear splitting makes the
    // 1 MiB case about 4x the 256 KiB one (a rescan per piece would make it about 16x).
    for kib in [256usize, 1024] {
        let piece = vec![b'a'; 1024];
        c.bench_function(&format!("sse/one {kib} KiB line in 1 KiB pieces"), |b| {
            b.iter(|| {
                let mut a = SseAssembler::new();
                a.push(b"data: \"").unwrap();
                for _ in 0..kib {
                    a.push(black_box(&piece)).unwrap();
                }
                a
            })
        });
    }
}

criterion_group!(
    benches,
    bench_request,
    bench_crypto,
    bench_validate,
    bench_sse
);
criterion_main!(benches);
