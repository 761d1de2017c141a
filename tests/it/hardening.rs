//! Hostile and malformed input against every public input of the real app: generated JSON
//! bodies for the actions and the REST API, query strings, form values and entity names.
//! Whatever comes in, paved answers without a 5xx, and every refusal is in Backstage's error
//! shape with the status it claims.

use crate::common;

use common::{Engine as DbEngine, TestApp, TestDb, settings};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{Map, Value, json};

/// Field names paved reads, mixed with random ones, so generated objects reach deep code.
const KEYS: &[&str] = &[
    "offering",
    "values",
    "name",
    "environment",
    "size",
    "owner",
    "cost_center",
    "input",
    "secrets",
    "idempotencyKey",
    "idempotency_key",
    "monthlyLimit",
    "reason",
    "ttl_hours",
    "access",
    "extensions",
    "backup_days",
    "instance_class",
    "requestId",
    "resourceId",
    "timeoutSeconds",
    "template",
    "parameters",
    "spec",
    "__proto__",
    "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        // Names that look almost right, template syntax, huge and odd strings.
        prop_oneof![
            "[a-z][a-z0-9-]{0,70}",
            ".{0,80}",
            Just("${{ parameters.name }}".to_owned()),
            Just("{{ 7*7 }}".to_owned()),
            Just("group:default/team-a".to_owned()),
            Just("user:default/../../etc/passwd".to_owned()),
            Just("'; DROP TABLE requests; --".to_owned()),
            Just("postgres-database".to_owned()),
            Just("redis-cache".to_owned()),
            Just("prod".to_owned()),
            // PostgreSQL cannot store NUL (it answered 500 on 17 endpoints).
            Just("orders\u{0}".to_owned()),
            "\\PC{0,300}",
        ]
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS).prop_map(str::to_owned),
                        "[a-zA-Z_]{1,12}"
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An order with realistic structure but hostile values in the form.
fn order_body() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(
            &[
                "postgres-database",
                "redis-cache",
                "preview-environment",
                "nope",
            ][..],
        ),
        prop::collection::btree_map(
            prop::sample::select(KEYS).prop_map(str::to_owned),
            scalar(),
            0..8,
        ),
    )
        .prop_map(|(offering, values)| json!({"offering": offering, "values": values}))
}

fn query_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(
                    &[
                        "limit",
                        "cursor",
                        "owner",
                        "status",
                        "offering",
                        "actor",
                        "target",
                        "type",
                        "since",
                        "until",
                        "override",
                        "window",
                        "windowHours"
                    ][..]
                )
                .prop_map(str::to_owned),
                "[a-z]{1,8}",
            ],
            prop_oneof![
                "[0-9]{1,25}",
                "-[0-9]{1,5}",
                "\\PC{0,30}",
                Just("a\u{0}b".to_owned()),
                Just("2026-13-45T99:99:99Z".to_owned())
            ],
        ),
        0..4,
    )
    .prop_map(|pairs| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(&k, &v);
        }
        s.finish()
    })
}

struct Target {
    method: &'static str,
    path: String,
}

fn check(
    rt: &tokio::runtime::Runtime,
    app: &TestApp,
    t: &Target,
    body: Option<&Value>,
    raw: Option<&str>,
) -> Result<(), TestCaseError> {
    let (status, text) = rt.block_on(async {
        let mut req = app
            .client
            .request(t.method.parse().unwrap(), app.url(&t.path))
            .bearer_auth("fuzz-admin-token");
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(r) = raw {
            req = req
                .header("content-type", "application/json")
                .body(r.to_owned());
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    prop_assert!(
        status < 500,
        "{} {} -> {status}: {text}\nbody: {body:?} raw: {raw:?}",
        t.method,
        t.path
    );
    if status >= 400 {
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            TestCaseError::fail(format!(
                "{} {} -> {status}, not JSON ({e}): {text}",
                t.method, t.path
            ))
        })?;
        prop_assert!(
            v["error"]["name"].is_string() && v["error"]["message"].is_string(),
            "{} {}: {v}",
            t.method,
            t.path
        );
        prop_assert_eq!(
            v["response"]["statusCode"].as_u64(),
            Some(status as u64),
            "{}",
            v
        );
    }
    Ok(())
}

#[test]
fn no_input_makes_paved_fail_or_answer_outside_backstages_error_shape_sqlite() {
    no_input_makes_paved_fail_or_answer_outside_backstages_error_shape(DbEngine::Sqlite);
}

/// PostgreSQL refuses more than SQLite does (NUL in text and jsonb).
#[test]
fn no_input_makes_paved_fail_or_answer_outside_backstages_error_shape_postgres() {
    no_input_makes_paved_fail_or_answer_outside_backstages_error_shape(DbEngine::Postgres);
}

fn no_input_makes_paved_fail_or_answer_outside_backstages_error_shape(engine: DbEngine) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDb::new(engine));
    // As a platform-admin, so the input reaches every handler's parsing (not just a 403).
    let mut s = settings(&db.url);
    s.auth.static_tokens = vec![common::static_token(
        "fuzzer",
        "fuzz-admin-token",
        &["platform-admin"],
        &["team-a"],
    )];
    let app = rt.block_on(TestApp::spawn(s));
    // A bounded number of cases per input, reproducible from proptest's seed on failure.
    let cases = std::env::var("PAVED_TEST_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    // A fresh runner per input: one runner counts its successes across `run` calls, so reusing
    // it ran only the first input's cases and none of the rest.
    let runner = || {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    };
    let base = "/api/paved";

    let json_targets = [
        (
            "POST",
            format!("{base}/.backstage/actions/v1/actions/paved:estimate/invoke"),
        ),
        (
            "POST",
            format!("{base}/.backstage/actions/v1/actions/paved:provision/invoke"),
        ),
        (
            "POST",
            format!("{base}/.backstage/actions/v1/actions/paved:wait/invoke"),
        ),
        (
            "POST",
            format!("{base}/.backstage/actions/v2/actions/paved:estimate/invoke"),
        ),
        (
            "POST",
            format!("{base}/.backstage/actions/v1/actions/paved:nope/invoke"),
        ),
        ("POST", format!("{base}/v1/requests")),
        ("POST", format!("{base}/v1/estimates")),
        ("POST", format!("{base}/v1/policies/evaluate")),
        ("PUT", format!("{base}/v1/teams/team-a/budget")),
        (
            "PATCH",
            format!("{base}/v1/resources/00000000-0000-0000-0000-000000000000"),
        ),
        (
            "POST",
            format!("{base}/v1/requests/00000000-0000-0000-0000-000000000000/approve"),
        ),
    ];
    for (method, path) in &json_targets {
        let t = Target {
            method,
            path: path.clone(),
        };
        runner()
            .run(&json_value(), |v| check(&rt, &app, &t, Some(&v), None))
            .unwrap();
    }
    // v2 wraps the input; orders keep their structure with hostile values.
    let v2 = Target {
        method: "POST",
        path: format!("{base}/.backstage/actions/v2/actions/paved:provision/invoke"),
    };
    runner().run(&(order_body(), json_value()), |(o, s)| {
        check(&rt, &app, &v2, Some(&json!({"input": {"offering": o["offering"], "values": o["values"], "idempotencyKey": "k"}, "secrets": s})), None)
    }).unwrap();
    for path in [
        format!("{base}/v1/requests"),
        format!("{base}/v1/estimates"),
        format!("{base}/.backstage/actions/v1/actions/paved:estimate/invoke"),
    ] {
        let t = Target {
            method: "POST",
            path,
        };
        runner()
            .run(&order_body(), |v| check(&rt, &app, &t, Some(&v), None))
            .unwrap();
    }
    // Bodies that are not JSON at all.
    let t = Target {
        method: "POST",
        path: format!("{base}/v1/requests"),
    };
    runner()
        .run(&"\\PC{0,200}", |raw| check(&rt, &app, &t, None, Some(&raw)))
        .unwrap();
    // Query strings and path segments (entity names, ids).
    for path in [
        "/v1/requests",
        "/v1/resources",
        "/v1/audit",
        "/v1/offerings",
        "/v1/metrics/platform",
        "/v1/teams/team-a/unused",
        "/catalog/entities.yaml",
        "/catalog/pages/0.yaml",
    ] {
        runner()
            .run(&query_string(), |q| {
                check(
                    &rt,
                    &app,
                    &Target {
                        method: "GET",
                        path: format!("{base}{path}?{q}"),
                    },
                    None,
                    None,
                )
            })
            .unwrap();
    }
    let segment = prop_oneof![
        "[a-zA-Z0-9:/._-]{0,80}",
        "\\PC{0,40}",
        Just("x\u{0}".to_owned())
    ]
    .prop_map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
    runner()
        .run(&segment, |seg| {
            for p in [
                format!("{base}/v1/offerings/{seg}"),
                format!("{base}/v1/requests/{seg}"),
                format!("{base}/v1/resources/{seg}/credentials"),
                format!("{base}/v1/teams/{seg}/spend"),
                format!("{base}/v1/teams/{seg}/budget"),
                format!("{base}/catalog/resources/{seg}"),
                format!("{base}/catalog/pages/{seg}"),
            ] {
                check(
                    &rt,
                    &app,
                    &Target {
                        method: "GET",
                        path: p,
                    },
                    None,
                    None,
                )?;
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(app.stop());
}
