//! `cargo bench --bench decision`: time to validate one order against its form, and one full
//! decision (schema + rendering + cost with recommendations + every bundled policy), beside the
//! baseline of an empty function call measured in the same run, and each against its target
//! (issue 16: a decision ≤ 0.2 ms, its cost estimate ≤ 20 µs). Prints figures; asserts none.
//! (The budget lookup is a database read and is not part of the decision measured here:
//! `cargo bench --bench estimate` measures it by team size.)

use std::{
    hint::black_box,
    path::Path,
    time::{Duration, Instant},
};

use paved::{
    cost::{self, PriceBook},
    guardrails::{BudgetView, policy_input},
    policy::PolicySet,
    provisioning::requests::NewRequest,
    templates::{Offering, Renderer},
    vocab::principal::Principal,
};
use serde_json::json;

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        f(); // warm-up
    }
    let mut samples = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    let mean = samples.iter().sum::<Duration>() / iterations;
    println!(
        "{name:<44} mean {:>9.3} µs  p50 {:>9.3} µs  p99 {:>9.3} µs  ({iterations} runs)",
        mean.as_secs_f64() * 1e6,
        p(0.5).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6
    );
    mean
}

#[inline(never)]
fn empty(x: u64) -> u64 {
    x
}

fn main() {
    let renderer = Renderer::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/postgres-database");
    let offering = Offering::load(&dir, &renderer).expect("bundled template loads");
    let values = json!({
        "name": "orders", "environment": "prod", "size": "medium", "owner": "group:default/team-a",
        "component": "component:default/orders-service", "cost_center": "ENG-1234"
    });
    let invalid = json!({"name": "X", "environment": "qa", "storage_gb": 5000, "bogus": 1});

    println!("paved validation benchmark (postgres-database, realistic values)");
    let baseline = measure("baseline: empty function call", 200_000, || {
        black_box(empty(black_box(42)));
    });
    let validate = measure("validate values against the form", 20_000, || {
        black_box(offering.validate(black_box(&values)).unwrap());
    });
    let refuse = measure("validate invalid values (4 errors)", 20_000, || {
        black_box(offering.validate(black_box(&invalid)).unwrap_err());
    });
    let prepare = measure("validate + render + check (NewRequest)", 20_000, || {
        black_box(
            NewRequest::prepare(
                &offering,
                &renderer,
                black_box(&values),
                "user:default/jane".into(),
                None,
            )
            .unwrap(),
        );
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let book = PriceBook::load(&root.join("pricing.yaml")).expect("bundled price book");
    let policies = PolicySet::load(&root.join("policies"), &json!({})).expect("bundled policies");
    let requester = Principal::anonymous();
    let budget = BudgetView {
        team: "group:default/team-a".into(),
        monthly_limit: Some(5000.0),
        current_monthly: 1200.0,
        ordered_monthly: 0.0,
        replaced_monthly: 0.0,
        this_request: 0.0,
        after: 1200.0,
    };
    let prepared = NewRequest::prepare(
        &offering,
        &renderer,
        &values,
        "user:default/jane".into(),
        None,
    )
    .unwrap();
    let cost = measure("  of which: cost estimate + recommendations", 5_000, || {
        black_box(
            cost::estimate(
                &offering,
                &renderer,
                &book,
                &prepared.values,
                &prepared.spec,
            )
            .unwrap(),
        );
    });
    let est = cost::estimate(
        &offering,
        &renderer,
        &book,
        &prepared.values,
        &prepared.spec,
    )
    .unwrap();
    let input = policy_input(&offering, &prepared, &requester, &est, &budget);
    let policy = measure("  of which: every bundled policy", 5_000, || {
        black_box(policies.evaluate(black_box(&input)).unwrap());
    });
    let decision = measure(
        "full decision: schema + render + cost + policy",
        5_000,
        || {
            let req = NewRequest::prepare(
                &offering,
                &renderer,
                black_box(&values),
                "user:default/jane".into(),
                None,
            )
            .unwrap();
            let est = cost::estimate(&offering, &renderer, &book, &req.values, &req.spec).unwrap();
            let input = policy_input(&offering, &req, &requester, &est, &budget);
            black_box(policies.evaluate(&input).unwrap());
        },
    );
    let ratio = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64().max(1e-12);
    println!();
    println!(
        "validate: {:.3} ms per request ({:.0}x the empty call); target well under 1 ms",
        validate.as_secs_f64() * 1e3,
        ratio(validate)
    );
    println!(
        "refuse:   {:.3} ms per request ({:.0}x the empty call)",
        refuse.as_secs_f64() * 1e3,
        ratio(refuse)
    );
    println!(
        "prepare:  {:.3} ms per request ({:.0}x the empty call)",
        prepare.as_secs_f64() * 1e3,
        ratio(prepare)
    );
    println!(
        "policies: {:.3} ms per request ({:.0}x the empty call)",
        policy.as_secs_f64() * 1e3,
        ratio(policy)
    );
    let of_target = |d: Duration, target: Duration| d.as_secs_f64() / target.as_secs_f64();
    println!(
        "cost:     {:.1} µs per estimate (target ≤ 20 µs): {:.2} of target",
        cost.as_secs_f64() * 1e6,
        of_target(cost, Duration::from_micros(20))
    );
    println!(
        "decision: {:.3} ms per request ({:.0}x the empty call; target ≤ 0.2 ms): {:.2} of target",
        decision.as_secs_f64() * 1e3,
        ratio(decision),
        of_target(decision, Duration::from_micros(200))
    );
}
