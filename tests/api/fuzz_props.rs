//! Property tests over every parser that sees outside input, beyond the ones next to the code:
//! configuration from an arbitrary environment and TOML file, durations, booleans, `Retry-After`, both
//! webhook verifiers and both body parsers with structured, hostile and deeply nested input.
//!
//! The promise is "never panics; errors are values". CI runs proptest's default 256 cases per property;
//! docs/src/reliability.md records a long run (`PROPTEST_CASES=… cargo test --test api fuzz_props::`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use authentik_bridge::app::startup::build_engine;
use authentik_bridge::clients::retry::parse_retry_after;
use authentik_bridge::configuration::{parse_bool, parse_seconds, Secret, Settings, SETTINGS};
use authentik_bridge::metrics::Metrics;
use authentik_bridge::runtime::JobQueue;
use authentik_bridge::sinks::outline::limiter::OutlineLimiter;
use authentik_bridge::sinks::outline::signin::{
    parse_outline_delivery, parse_signature_header, verify_outline_signature,
};
use authentik_bridge::source::webhook::{parse_authentik_change, verify_webhook_token};
use upstream_fakes::outline_signature;

/// The settings read as numbers or durations.
const NUMERIC_SETTINGS: [&str; 8] = [
    "OUTLINE_RATE_LIMIT_REQUESTS",
    "OUTLINE_RATE_LIMIT_WINDOW",
    "RECONCILE_INTERVAL",
    "MAX_REMOVALS",
    "QUEUE_CAPACITY",
    "WORKER_CONCURRENCY",
    "UPSTREAM_TIMEOUT",
    "CACHE_TTL",
];

// ----- strategies ------------------------------------------------------------------------------------------

/// A directory of files the `*_FILE` settings and `BRIDGE_CONFIG` can point at, made once per process.
fn fixtures() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fuzz-props-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("a-directory"));
        let files: [(&str, &[u8]); 6] = [
            ("secret", b"s3cret\n"),
            ("empty", b""),
            ("binary", b"\xff\xfe\x00\x01not utf-8"),
            (
                "good.toml",
                b"max_removals = \"7\"\noutline_url = \"https://docs.example.com\"\n",
            ),
            ("bad.toml", b"[[[ this is not toml"),
            (
                "unknown.toml",
                b"no_such_setting = 1\nqueue_capacity = [1, 2]\n",
            ),
        ];
        for (name, bytes) in files {
            let _ = std::fs::write(dir.join(name), bytes);
        }
        dir
    })
}

fn path_value() -> impl Strategy<Value = String> {
    let dir = fixtures().clone();
    prop_oneof![
        prop::sample::select(vec![
            "secret",
            "empty",
            "binary",
            "good.toml",
            "bad.toml",
            "unknown.toml",
            "a-directory",
            "missing",
        ])
        .prop_map(move |f| dir.join(f).to_string_lossy().into_owned()),
        Just("/dev/null".to_string()),
        Just(String::new()),
        ".{0,20}",
    ]
}

/// Values that sit near the edges of what the settings parse: numbers of every shape, units, booleans in
/// every spelling, URLs, regular expressions, addresses, and anything at all.
fn setting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[ \t]*-?[0-9]{0,22}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{1,4})?(ms|s|m|h|d)?[ \t]*",
        prop::sample::select(vec![
            "NaN",
            "inf",
            "-inf",
            "infinity",
            "-0",
            "0",
            "1e9",
            "1e9h",
            "1e-300",
            "0.0000000001",
            "18446744073709551615",
            "18446744073709551616",
            "4294967295",
            "4294967296",
            "2305843009213693951",
            "2305843009213693952",
            "9223372036854775807",
            "True",
            "False",
            "yes",
            "OFF",
            "direct",
            "INHERITED",
            "json",
            "Text",
            "0.0.0.0:8430",
            "[::1]:0",
            "127.0.0.1:99999",
            "(",
            "(?i)",
            "a{1000000}",
            "\\",
            "[",
            "outline-",
        ])
        .prop_map(str::to_string),
        "(https?|ftp|file|)://[a-z0-9.:@\\[\\]/?#%_-]{0,30}",
        "[()\\[\\]{}*+?|^$\\\\.a-z0-9,]{0,24}",
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
    ]
}

/// An environment: any subset of the settings, their `_FILE` twins and `BRIDGE_CONFIG`, with hostile values.
fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    let mut names: Vec<String> = SETTINGS.iter().map(|s| s.name.to_string()).collect();
    names.extend(
        SETTINGS
            .iter()
            .filter(|s| s.secret)
            .map(|s| format!("{}_FILE", s.name)),
    );
    let plain = prop::collection::btree_map(prop::sample::select(names), setting_value(), 0..24);
    let files = prop::collection::btree_map(
        prop::sample::select(
            SETTINGS
                .iter()
                .filter(|s| s.secret)
                .map(|s| format!("{}_FILE", s.name))
                .chain(["BRIDGE_CONFIG".to_string()])
                .collect::<Vec<_>>(),
        ),
        path_value(),
        0..4,
    );
    (plain, files).prop_map(|(mut env, files)| {
        env.extend(files);
        env
    })
}

/// A valid base, so that the interesting values reach the later parsers instead of failing on the URLs.
fn with_base(mut env: BTreeMap<String, String>, base: bool) -> BTreeMap<String, String> {
    if base {
        for (k, v) in [
            ("AUTHENTIK_URL", "https://auth.example.com"),
            ("AUTHENTIK_TOKEN", "ak"),
            ("OUTLINE_URL", "https://docs.example.com"),
            ("OUTLINE_TOKEN", "ol"),
        ] {
            env.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    env
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)),
        ".{0,30}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "authentik-bridge/v1",
            "model_updated",
            "model_deleted",
            "model_created",
            "custom_notification_test",
            "authentik_core",
            "group",
            "user",
            "users.signin",
            "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c",
            "3b9f1d6e-0c8e-4a0f-9d7b-5c3a1e2f4d6c",
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "schema",
                    "event_pk",
                    "action",
                    "app",
                    "created",
                    "model",
                    "diff",
                    "pk",
                    "name",
                    "model_name",
                    "body",
                    "severity",
                    "event",
                    "payload",
                    "id",
                    "actorId",
                ])
                .prop_map(str::to_string),
                inner,
                0..8,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

// ----- properties ------------------------------------------------------------------------------------------

proptest! {
    /// Any environment loads or fails with a message naming a setting, and never prints a secret's value.
    #[test]
    fn settings_from_any_environment_never_panic(env in environment(), base in any::<bool>()) {
        let env = with_base(env, base);
        match Settings::load(None, &env) {
            Ok(s) => {
                prop_assert!(!s.upstream_timeout.is_zero());
                prop_assert!(s.queue_capacity >= 1 && s.worker_concurrency >= 1);
                prop_assert!(s.outline_rate_limit.requests >= 1);
                prop_assert!(!s.outline_rate_limit.window.is_zero());
                prop_assert!(s.reconcile_interval.is_none_or(|d| !d.is_zero()));
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.is_empty());
                // Long values only: a short one ("direct") can be part of any message ("directory"); and
                // not when another variable (a path, an address: printable) holds the same text.
                for spec in SETTINGS.iter().filter(|s| s.secret) {
                    let shared = |v: &str| env.iter().any(|(k, o)| k != spec.name && o.contains(v));
                    let value = env.get(spec.name).map(|v| v.trim());
                    if let Some(v) = value.filter(|v| v.len() >= 12 && !shared(v)) {
                        prop_assert!(!message.contains(v), "{} leaked into: {}", spec.name, message);
                    }
                }
            }
        }
    }

    /// Whatever loads can be built into the engine, the limiter and the queue the server runs on. The
    /// numeric settings get edge values and the rest stay valid, so that most cases do load.
    #[test]
    fn loaded_settings_build_without_panic(
        numbers in prop::collection::btree_map(
            prop::sample::select(NUMERIC_SETTINGS.to_vec()),
            prop_oneof![
                setting_value(),
                any::<u64>().prop_map(|n| n.to_string()),
                (0u32..64).prop_map(|b| (1u64 << b).to_string()),
                (0u32..64).prop_map(|b| ((1u64 << b) - 1).to_string()),
            ],
            0..5,
        ),
    ) {
        let env: BTreeMap<String, String> =
            numbers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let env = with_base(env, true);
        if let Ok(s) = Settings::load(None, &env) {
            let limiter = OutlineLimiter::new(s.outline_rate_limit);
            prop_assert!(limiter.allowed_per_second.is_finite());
            let metrics = Arc::new(Metrics::new());
            // The queue spawns its jobs on the runtime it is built in.
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let engine = runtime.block_on(build_engine(&s, metrics.clone())).expect("upstreams are set");
            let _in_runtime = runtime.enter();
            let _queue = JobQueue::new(engine.registered(), s.queue_capacity, s.worker_concurrency, metrics);
        }
    }

    /// The TOML layer: random text and random `key = value` lines.
    #[test]
    fn any_toml_file_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        lines in prop::collection::vec(
            (prop::sample::select(SETTINGS.iter().map(|s| s.name.to_ascii_lowercase()).collect::<Vec<_>>()),
             prop_oneof![
                 setting_value().prop_map(|v| format!("{:?}", v)),
                 "-?[0-9]{1,20}", Just("true".to_string()), Just("[1, 2]".to_string()),
                 Just("{ a = 1 }".to_string()), Just("1979-05-27T07:32:00Z".to_string()),
                 Just("nan".to_string()), Just("-inf".to_string()),
             ]),
            0..8),
        structured in any::<bool>(),
    ) {
        let text: Vec<u8> = if structured {
            lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>().into_bytes()
        } else {
            raw
        };
        let path = fixtures().join(format!("case-{:?}.toml", std::thread::current().id()));
        std::fs::write(&path, &text).expect("write");
        let _ = Settings::load(Some(&path), &with_base(BTreeMap::new(), true));
    }

    #[test]
    fn durations_never_panic_and_stay_in_range(v in setting_value()) {
        if let Ok(d) = parse_seconds("X", &v) {
            prop_assert!(d <= Duration::from_secs(1_000_000_000));
        }
    }

    #[test]
    fn booleans_accept_exactly_the_documented_spellings(v in setting_value()) {
        let lower = v.to_ascii_lowercase();
        let expected = match lower.as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        };
        prop_assert_eq!(parse_bool("X", Some(&v)).ok(), expected);
    }

    /// `Retry-After` as Outline's fractional seconds, integers, HTTP dates (past and future) or garbage.
    #[test]
    fn retry_after_never_panics_and_is_bounded(
        text in prop_oneof![
            setting_value(),
            (0u64..4_000_000_000).prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s))),
            "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} -?[0-9]{1,6} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        ],
        now in 0u64..4_000_000_000,
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(now);
        if let Some(d) = parse_retry_after(&text, now) {
            if text.trim().parse::<f64>().is_ok() {
                prop_assert!(d <= Duration::from_secs(86_400));
            }
        }
    }

    /// Signature headers built from the right pieces in the wrong shapes.
    #[test]
    fn signature_headers_in_any_shape_never_panic(
        parts in prop::collection::vec(
            prop_oneof![
                any::<u64>().prop_map(|t| format!("t={t}")),
                "t=[-+0-9a-z.]{0,25}",
                "[0-9a-f]{0,70}".prop_map(|h| format!("s={h}")),
                "s=.{0,70}",
                "[ a-z=]{0,6}",
            ],
            0..5,
        ),
        sep in prop::sample::select(vec![",", ", ", ";", ",,", " , "]),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let header = parts.join(sep);
        let _ = parse_signature_header(&header);
        let secret = Secret::new("ol_whs_k");
        let result = verify_outline_signature(&secret, Some(&header), &body, SystemTime::now());
        prop_assert!(result.is_err(), "a guessed signature verified: {}", header);
    }

    /// A signature is bound to its body and its secret: any change of either fails.
    #[test]
    fn a_signature_binds_body_and_secret(
        body in prop::collection::vec(any::<u8>(), 0..300),
        flip in any::<prop::sample::Index>(),
        secret in "[ -~]{1,40}",
        other in "[ -~]{1,40}",
    ) {
        let now = SystemTime::now();
        let t = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let header = outline_signature(&secret, t, &body);
        let key = Secret::new(secret.clone());
        prop_assert!(verify_outline_signature(&key, Some(&header), &body, now).is_ok());
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            prop_assert!(verify_outline_signature(&key, Some(&header), &changed, now).is_err());
        }
        if other != secret {
            let wrong = Secret::new(other);
            prop_assert!(verify_outline_signature(&wrong, Some(&header), &body, now).is_err());
        }
    }

    /// Both body parsers on any JSON document built from the keys and values they look for.
    #[test]
    fn webhook_bodies_of_any_shape_never_panic(doc in json_value()) {
        let bytes = doc.to_string().into_bytes();
        let _ = parse_outline_delivery(&bytes);
        let _ = parse_authentik_change(&bytes);
        if let serde_json::Value::Object(mut m) = doc {
            m.insert("schema".into(), "authentik-bridge/v1".into());
            m.insert("action".into(), "model_updated".into());
            let bytes = serde_json::Value::Object(m).to_string().into_bytes();
            let _ = parse_authentik_change(&bytes);
        }
    }

    /// Tokens in headers of any shape (Unicode spaces, repeated schemes, empty values) and in the query.
    #[test]
    fn webhook_tokens_of_any_shape_never_panic(
        scheme in prop::sample::select(
            vec!["Bearer", "bearer", "BEARER", "Basic", "", "Bearer\u{a0}", "Token"],
        ),
        space in prop::sample::select(vec![" ", "  ", "\t", "\u{3000}", ""]),
        token in ".{0,60}",
        query in prop::option::of(".{0,40}"),
    ) {
        let header = format!("{scheme}{space}{token}");
        let expected = Secret::new("akwh_expected_token");
        let result = verify_webhook_token(&expected, Some(&header), query.as_deref());
        if token.trim() != "akwh_expected_token" && query.as_deref() != Some("akwh_expected_token") {
            prop_assert!(result.is_err(), "{:?} / {:?} accepted", header, query);
        }
    }
}

/// Nesting far past serde_json's recursion limit is an error, not a stack overflow.
#[test]
fn deeply_nested_bodies_are_refused_not_overflowed() {
    for depth in [200, 10_000, 100_000] {
        let open = "[".repeat(depth);
        let close = "]".repeat(depth);
        let array = format!("{open}{close}");
        let object = format!("{}1{}", "{\"model\":".repeat(depth), "}".repeat(depth));
        for body in [array, object] {
            assert!(parse_outline_delivery(body.as_bytes()).is_err());
            assert!(parse_authentik_change(body.as_bytes()).is_err());
        }
    }
}

/// Bug B2: `WORKER_CONCURRENCY` above tokio's semaphore maximum (2^61 - 1) loads, then panics when the queue
/// is built, instead of failing with a configuration error that names the setting.
#[test]
fn a_huge_worker_concurrency_is_a_configuration_error_not_a_panic() {
    let env = with_base(
        BTreeMap::from([(
            "WORKER_CONCURRENCY".to_string(),
            "2305843009213693952".to_string(),
        )]),
        true,
    );
    match Settings::load(None, &env) {
        Err(e) => assert!(e.to_string().starts_with("WORKER_CONCURRENCY"), "{e}"),
        Ok(s) => {
            let built = std::panic::catch_unwind(|| {
                let metrics = Arc::new(Metrics::new());
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                let engine = runtime
                    .block_on(build_engine(&s, metrics.clone()))
                    .expect("upstreams are set");
                let _in_runtime = runtime.enter();
                JobQueue::new(
                    engine.registered(),
                    s.queue_capacity,
                    s.worker_concurrency,
                    metrics,
                );
            });
            assert!(
                built.is_ok(),
                "WORKER_CONCURRENCY=2^61 loaded, then building the queue panicked"
            );
        }
    }
}

/// The largest values each numeric setting accepts still make a bridge that starts, answers and runs its
/// start-up reconcile (against an unreachable upstream, which fails as an upstream error, not a panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_but_valid_settings_start_and_serve() {
    let env = with_base(
        BTreeMap::from(
            [
                ("OUTLINE_RATE_LIMIT_REQUESTS", "4294967295"),
                ("OUTLINE_RATE_LIMIT_WINDOW", "0.000001"),
                ("RECONCILE_INTERVAL", "1e9"),
                ("MAX_REMOVALS", "18446744073709551615"),
                ("QUEUE_CAPACITY", "1000000"),
                ("WORKER_CONCURRENCY", "1024"),
                ("UPSTREAM_TIMEOUT", "0.000000001"),
                ("CACHE_TTL", "1e9"),
                ("AUTHENTIK_URL", "http://127.0.0.1:9"),
                ("OUTLINE_URL", "http://127.0.0.1:9"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        ),
        true,
    );
    let settings = Settings::load(None, &env).expect("valid, if extreme");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port 0");
    let app = authentik_bridge::app::startup::Application::build_with_listener(settings, listener)
        .await
        .expect("builds");
    let url = format!("http://127.0.0.1:{}/healthz", app.port());
    let engine = app.engine();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let status = reqwest::get(&url).await.expect("answers").status();
    assert_eq!(status.as_u16(), 200);
    // The start-up reconcile meets the unreachable upstream and retries; the process is still serving.
    let start = std::time::Instant::now();
    while engine.metrics.render().lines().all(|l| {
        !l.starts_with("bridge_jobs_total{kind=\"reconcile\",result=\"retry\",sink=\"outline\"}")
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the start-up reconcile never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        reqwest::get(&url).await.expect("answers").status().as_u16(),
        200
    );
    assert!(!server.is_finished());
}
