//! Criterion micro-benchmarks of the bridge's pure hot paths (figure 10 of `docs/src/benchmarks.md`):
//! the planner on a 10,000-user, 500-group reconcile and on one sign-in, the Outline signature check
//! on a typical `users.signin` body, and the parsing of both webhook bodies.
//!
//! `cargo bench --bench planner` (add `-- --quick` for a shorter run).

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use authentik_bridge::configuration::Secret;
use authentik_bridge::domain::{
    AuthentikGroupId, GroupName, OutlineGroup, OutlineGroupId, OutlineUserId,
};
use authentik_bridge::sinks::outline::plan::plan_membership;
use authentik_bridge::sinks::outline::plan::GroupTarget;
use authentik_bridge::sinks::outline::plan::PlanInput;
use authentik_bridge::sinks::outline::signin::{parse_outline_delivery, verify_outline_signature};
use authentik_bridge::source::webhook::{parse_authentik_change, verify_webhook_token};
use upstream_fakes::outline_signature;

const USERS: usize = 10_000;
const GROUPS: usize = 500;
const PER_USER: usize = 3;

/// Outline ids are v4 UUIDs; the planner compares them as strings, so their length matters.
fn outline_user(i: usize) -> OutlineUserId {
    OutlineUserId::new(format!("5a0e{i:04x}-1c2d-4e5f-8a9b-{i:012x}"))
}

fn authentik_group(g: usize) -> AuthentikGroupId {
    AuthentikGroupId::parse(&format!("{:032x}", 0x3b9f_0000_u128 + g as u128))
        .unwrap_or_else(|| unreachable!("32 hex digits parse"))
}

/// The same directory shape as the load tool: each user in `PER_USER` groups spread evenly (60 per group).
/// Outline has every membership except every 100th, plus one stray member per 10th group, so the plan has
/// 300 adds and 50 removes, as a reconcile after some lost webhooks would.
struct ReconcileCase {
    targets: Vec<GroupTarget>,
    outline_groups: Vec<OutlineGroup>,
    current: BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
}

fn reconcile_case() -> ReconcileCase {
    let mut desired: Vec<BTreeSet<OutlineUserId>> = vec![BTreeSet::new(); GROUPS];
    let mut present: Vec<BTreeSet<OutlineUserId>> = vec![BTreeSet::new(); GROUPS];
    let stride = GROUPS / PER_USER;
    let mut n = 0usize;
    for i in 0..USERS {
        for k in 0..PER_USER {
            let g = (i + k * stride) % GROUPS;
            desired[g].insert(outline_user(i));
            n += 1;
            if !n.is_multiple_of(100) {
                present[g].insert(outline_user(i));
            }
        }
    }
    for (g, p) in present.iter_mut().enumerate() {
        if g % 10 == 0 {
            p.insert(outline_user(USERS + g));
        }
    }
    let targets = (0..GROUPS)
        .map(|g| GroupTarget {
            group: authentik_group(g),
            name: GroupName::new(format!("team-{g:05}")),
            desired: std::mem::take(&mut desired[g]),
        })
        .collect();
    let outline_groups: Vec<OutlineGroup> = (0..GROUPS)
        .map(|g| OutlineGroup {
            id: OutlineGroupId::new(format!("9c1d{g:04x}-2e3f-4a5b-9c6d-{g:012x}")),
            name: GroupName::new(format!("team-{g:05}")),
            external_id: Some(authentik_group(g).as_str().to_string()),
        })
        .collect();
    let current = outline_groups
        .iter()
        .zip(present)
        .map(|(og, p)| (og.id.clone(), p))
        .collect();
    ReconcileCase {
        targets,
        outline_groups,
        current,
    }
}

fn planner(c: &mut Criterion) {
    let case = reconcile_case();
    let input = PlanInput {
        targets: &case.targets,
        outline_groups: &case.outline_groups,
        current: &case.current,
        auto_create: false,
        existing_groups: None,
    };
    let plan = plan_membership(&input);
    assert_eq!((plan.adds.len(), plan.removes.len()), (300, 50));

    let mut group = c.benchmark_group("planner");
    group.throughput(Throughput::Elements((USERS * PER_USER) as u64));
    group.bench_function(
        "reconcile plan, 10k users x 500 groups (30k memberships)",
        |b| b.iter(|| plan_membership(black_box(&input))),
    );

    // A sign-in: one user, every managed group a target, current from `groups.list {userId}`.
    let user = outline_user(42);
    let signin_targets: Vec<GroupTarget> = case
        .targets
        .iter()
        .map(|t| GroupTarget {
            group: t.group.clone(),
            name: t.name.clone(),
            desired: if t.desired.contains(&user) {
                BTreeSet::from([user.clone()])
            } else {
                BTreeSet::new()
            },
        })
        .collect();
    let signin_current: BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>> = case
        .current
        .iter()
        .filter(|(_, members)| members.contains(&user))
        .map(|(g, _)| (g.clone(), BTreeSet::from([user.clone()])))
        .collect();
    let signin_input = PlanInput {
        targets: &signin_targets,
        outline_groups: &case.outline_groups,
        current: &signin_current,
        auto_create: false,
        existing_groups: None,
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign-in plan, 1 user x 500 groups", |b| {
        b.iter(|| plan_membership(black_box(&signin_input)))
    });
    group.finish();
}

/// A `users.signin` delivery as Outline v1.9.2 sends it (docs/src/upstream/outline.md §2.2, §2.3): compact JSON, about 560 bytes.
const SIGNIN_BODY: &str = r##"{"id":"0b6f3c1e-4d2a-4f8b-9c3d-5e6f7a8b9c0d","actorId":"5a0e002a-1c2d-4e5f-8a9b-00000000002a","webhookSubscriptionId":"7d8e9fa0-b1c2-4d3e-8f4a-5b6c7d8e9f0a","createdAt":"2026-10-21T12:34:56.789Z","event":"users.signin","payload":{"id":"5a0e002a-1c2d-4e5f-8a9b-00000000002a","model":{"id":"5a0e002a-1c2d-4e5f-8a9b-00000000002a","name":"Jane Doe","avatarUrl":null,"color":"#3633FF","role":"member","isSuspended":false,"createdAt":"2026-01-02T03:04:05.678Z","updatedAt":"2026-10-21T12:34:56.789Z","deletedAt":null,"lastActiveAt":"2026-10-21T12:34:56.789Z","timezone":null}}}"##;

/// The blueprint's v1 body for a group membership change, as Authentik's `json.dumps` writes it.
const AUTHENTIK_BODY: &str = r#"{"schema": "authentik-bridge/v1", "event_pk": "0e9e0c2b-5a1f-4c3e-9a77-2f0d9c1e4b21", "action": "model_updated", "app": "authentik.events.middleware", "created": "2026-10-21T12:34:56.789012Z", "model": {"app": "authentik_core", "model_name": "group", "pk": "3b9f1d6e0c8e4a0f9d7b5c3a1e2f4d6c", "name": "wiki-editors"}, "diff": {"users": {"add": [42]}}}"#;

fn webhooks(c: &mut Criterion) {
    let secret = Secret::new("ol_whs_0123456789abcdefghijklmnopqrstuv");
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let header = outline_signature(secret.expose(), t, SIGNIN_BODY.as_bytes());
    let now = SystemTime::now();
    assert!(verify_outline_signature(&secret, Some(&header), SIGNIN_BODY.as_bytes(), now).is_ok());
    let token = Secret::new("bench-webhook-token-0123456789abcdef");
    let bearer = format!("Bearer {}", token.expose());

    let mut group = c.benchmark_group("webhooks");
    group.throughput(Throughput::Bytes(SIGNIN_BODY.len() as u64));
    group.bench_function("verify Outline signature (users.signin body)", |b| {
        b.iter(|| {
            verify_outline_signature(
                black_box(&secret),
                black_box(Some(header.as_str())),
                black_box(SIGNIN_BODY.as_bytes()),
                now,
            )
        })
    });
    group.bench_function("parse Outline users.signin body", |b| {
        b.iter(|| parse_outline_delivery(black_box(SIGNIN_BODY.as_bytes())))
    });
    group.throughput(Throughput::Bytes(AUTHENTIK_BODY.len() as u64));
    group.bench_function("parse Authentik v1 body", |b| {
        b.iter(|| parse_authentik_change(black_box(AUTHENTIK_BODY.as_bytes())))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify Authentik bearer token", |b| {
        b.iter(|| verify_webhook_token(black_box(&token), black_box(Some(bearer.as_str())), None))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = planner, webhooks
}
criterion_main!(benches);
