//! The Prometheus metrics the bridge exports at `/metrics`. One registry per app instance (not a global),
//! so tests and the demo can run several bridges in one process.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub webhooks: IntCounterVec,
    pub jobs: IntCounterVec,
    pub job_duration: HistogramVec,
    pub queue_depth: IntGauge,
    pub queue_capacity: IntGauge,
    pub upstream_requests: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub outline_throttled: IntCounter,
    pub membership_changes: IntCounterVec,
    pub group_refusals: IntCounterVec,
    pub groups_skipped: IntCounterVec,
    pub removal_guard_tripped: IntCounter,
    pub removal_guard_active: IntGaugeVec,
    pub reconcile: IntCounterVec,
    pub reconcile_last_success: IntGaugeVec,
    pub ids_skipped: IntCounterVec,
    pub account_changes: IntCounterVec,
    pub account_refusals: IntCounterVec,
    pub suspension_guard_tripped: IntCounter,
    pub suspension_guard_active: IntGauge,
    pub webhooks_refused_in_a_row: IntGaugeVec,
    pub invites: IntCounterVec,
    pub invites_pending: IntGauge,
    pub invite_requests_left: IntGauge,
    pub cache_requests: IntCounterVec,
    pub cache_evictions: IntCounterVec,
    pub upstream_up: IntGaugeVec,
    pub webhook_intake_seconds: Histogram,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("register {name}: {e}"));
    c
}

impl Metrics {
    /// A sink's mass-removal guard held removals back: counted, and shown as active until a pass clears it.
    pub fn trip_removal_guard(&self, sink: &str) {
        self.removal_guard_tripped.inc();
        self.removal_guard_active.with_label_values(&[sink]).set(1);
    }

    pub fn new() -> Metrics {
        let r = Registry::new();
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "bridge_job_duration_seconds",
                "How long one sync job took, reads and writes included.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["sink", "kind"],
        )
        .unwrap_or_else(|e| unreachable!("histogram: {e}"));
        r.register(Box::new(job_duration.clone()))
            .unwrap_or_else(|e| unreachable!("register: {e}"));
        let webhook_intake_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "bridge_webhook_intake_seconds",
                "Time from a webhook's first byte to its answer.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("histogram: {e}"));
        r.register(Box::new(webhook_intake_seconds.clone()))
            .unwrap_or_else(|e| unreachable!("register: {e}"));
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "bridge_upstream_up",
                "1 when the upstream answered the last call, else 0.",
            ),
            &["upstream"],
        )
        .unwrap_or_else(|e| unreachable!("gauge: {e}"));
        r.register(Box::new(upstream_up.clone()))
            .unwrap_or_else(|e| unreachable!("register: {e}"));
        Metrics {
            webhooks: counter_vec(
                &r,
                "bridge_webhooks_total",
                "Webhooks received, by source and outcome.",
                &["source", "outcome"],
            ),
            jobs: counter_vec(
                &r,
                "bridge_jobs_total",
                "Sync jobs run, by sink, kind and result.",
                &["sink", "kind", "result"],
            ),
            job_duration,
            queue_depth: gauge(&r, "bridge_queue_depth", "Targets waiting or running."),
            queue_capacity: gauge(
                &r,
                "bridge_queue_capacity",
                "Targets the queue holds before webhooks get 503.",
            ),
            upstream_requests: counter_vec(
                &r,
                "bridge_upstream_requests_total",
                "Upstream HTTP calls, by upstream, call and status.",
                &["upstream", "call", "status"],
            ),
            upstream_errors: counter_vec(
                &r,
                "bridge_upstream_errors_total",
                "Upstream calls that failed after their retries.",
                &["upstream", "call"],
            ),
            outline_throttled: counter(
                &r,
                "bridge_outline_throttled_total",
                "429 answers received from Outline.",
            ),
            membership_changes: counter_vec(
                &r,
                "bridge_membership_changes_total",
                "Memberships written, by sink and kind (each sink counts its own writes and deletes).",
                &["sink", "change"],
            ),
            group_refusals: counter_vec(
                &r,
                "bridge_group_refusals_total",
                "Writes a sink refused for good (a 4xx no retry fixes), by call (Outline's method, or <sink>.write); the group's other writes were skipped.",
                &["call"],
            ),
            groups_skipped: counter_vec(
                &r,
                "bridge_groups_skipped_total",
                "Managed groups left alone by a plan because they cannot be linked to an Outline group, by reason.",
                &["reason"],
            ),
            removal_guard_tripped: counter(
                &r,
                "bridge_removal_guard_tripped_total",
                "Passes whose removals the MAX_REMOVALS guard held back.",
            ),
            removal_guard_active: gauge_vec(
                &r,
                "bridge_removal_guard_active",
                "1 from the moment the removal guard holds a sink's removals back until a pass of that sink is let through, by sink.",
                &["sink"],
            ),
            reconcile: counter_vec(
                &r,
                "bridge_reconcile_total",
                "Full reconcile passes, by sink and result.",
                &["sink", "result"],
            ),
            reconcile_last_success: gauge_vec(
                &r,
                "bridge_reconcile_last_success_timestamp_seconds",
                "Unix time of the last successful reconcile, by sink.",
                &["sink"],
            ),
            account_changes: counter_vec(
                &r,
                "bridge_account_changes_total",
                "Outline accounts changed to follow Authentik, by change: role, suspend, activate.",
                &["change"],
            ),
            account_refusals: counter_vec(
                &r,
                "bridge_account_refusals_total",
                "Demotions or suspensions refused because they would hit the API key's owner or the last admin, by change and reason.",
                &["change", "reason"],
            ),
            suspension_guard_tripped: counter(
                &r,
                "bridge_suspension_guard_tripped_total",
                "Runs whose suspensions the MAX_SUSPENSIONS guard held back.",
            ),
            invites: counter_vec(
                &r,
                "bridge_invites_total",
                "People handled by users.invite, by result: sent, already_there (Outline had the address), dropped (no longer a member, or no email), throttled (Outline's 50 requests an hour was spent; they stay queued).",
                &["result"],
            ),
            invites_pending: gauge(
                &r,
                "bridge_invites_pending",
                "Members of managed groups waiting for an Outline invitation (INVITE_MEMBERS).",
            ),
            invite_requests_left: gauge(
                &r,
                "bridge_invite_requests_left",
                "users.invite requests the bridge may still send in the current hour (of 50, each with up to 20 people).",
            ),
            suspension_guard_active: gauge(
                &r,
                "bridge_suspension_guard_active",
                "1 while the last run was held back by the suspension guard.",
            ),
            webhooks_refused_in_a_row: gauge_vec(
                &r,
                "bridge_webhooks_refused_in_a_row",
                "Webhooks refused for a wrong token or signature since the last one accepted, by source: a wrong AUTHENTIK_WEBHOOK_TOKEN or OUTLINE_WEBHOOK_SECRET shows here (and in /readyz) from the first push.",
                &["source"],
            ),
            ids_skipped: counter_vec(
                &r,
                "bridge_ids_skipped_total",
                "People or groups a sink skipped because their Authentik value cannot be an id there (some refuse ':', '#' or spaces), by sink and kind.",
                &["sink", "kind"],
            ),
            cache_requests: counter_vec(
                &r,
                "bridge_cache_requests_total",
                "Cache look-ups, by cache and result.",
                &["cache", "result"],
            ),
            cache_evictions: counter_vec(
                &r,
                "bridge_cache_evictions_total",
                "Cache entries evicted or invalidated.",
                &["cache"],
            ),
            upstream_up,
            webhook_intake_seconds,
            registry: r,
        }
    }

    /// Calls made to one upstream so far, whatever their outcome: for progress shown to a person.
    pub fn requests_to(&self, upstream: &str) -> u64 {
        use prometheus::core::Collector;
        let name = self
            .upstream_requests
            .desc()
            .first()
            .map(|d| d.fq_name.clone())
            .unwrap_or_default();
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "upstream" && l.value() == upstream)
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
