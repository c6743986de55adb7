//! Human-readable renderings of plans and reports for the CLI.

use std::fmt::Write;

use crate::domain::OutlineUserId;
use crate::sinks::outline::account_plan::OutlineRole;
use crate::sinks::outline::plan::GroupRef;
use crate::sinks::ReconcileReport;

fn who(report: &ReconcileReport, user: &OutlineUserId) -> String {
    match report.emails.get(user) {
        Some(email) => format!("{email} ({user})"),
        None => format!("user {user}"),
    }
}

/// "1 add", "2 adds".
pub use crate::reason::count;

pub fn render_reconcile(report: &ReconcileReport) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let verb = if report.dry_run { "would" } else { "did" };
    let _ = writeln!(
        out,
        "reconcile{}: {}, {} ms",
        if report.dry_run { " (dry run)" } else { "" },
        count(report.managed_groups, "managed group", "managed groups"),
        report.duration_ms
    );
    for c in &plan.creates {
        let _ = writeln!(
            out,
            "  {verb} create group {:?} (externalId {})",
            c.name.as_str(),
            c.authentik_group
        );
    }
    for l in &plan.links {
        let _ = writeln!(
            out,
            "  {verb} link group {:?} (write externalId {})",
            l.name.as_str(),
            l.authentik_group
        );
    }
    for r in &plan.renames {
        let _ = writeln!(
            out,
            "  {verb} rename group {:?} -> {:?}",
            r.from.as_str(),
            r.to.as_str()
        );
    }
    for a in &plan.adds {
        let group = match &a.group {
            GroupRef::Existing(id) => id.to_string(),
            GroupRef::ToCreate(_) => "new".to_string(),
        };
        let _ = writeln!(
            out,
            "  {verb} add    {} to {:?} ({group})",
            who(report, &a.user),
            a.group_name.as_str()
        );
    }
    let held = &report.held_back;
    // What a guard held back was not done, whatever the run: "would", and marked.
    let (held_verb, mark) = ("would", " (held back)");
    for r in &plan.removes {
        let (verb, held) = if held.removals {
            (held_verb, mark)
        } else {
            (verb, "")
        };
        let _ = writeln!(
            out,
            "  {verb} remove {} from {:?} ({}){held}",
            who(report, &r.user),
            r.group_name.as_str(),
            r.group
        );
    }
    for s in &plan.skipped {
        let _ = writeln!(out, "  skipped {:?}: {}", s.name.as_str(), s.reason);
    }
    if let Some(accounts) = &report.accounts {
        for r in &accounts.roles {
            let demotion = r.from == OutlineRole::Admin && r.to != OutlineRole::Admin;
            let (verb, held) = if demotion && held.demotions.is_some() {
                (held_verb, mark)
            } else {
                (verb, "")
            };
            let _ = writeln!(
                out,
                "  {verb} set role {} -> {} for {}{held}",
                r.from.as_str(),
                r.to.as_str(),
                who(report, &r.user)
            );
        }
        for a in &accounts.suspend {
            let (verb, held) = if held.suspensions.contains(&a.user) {
                (held_verb, mark)
            } else {
                (verb, "")
            };
            let _ = writeln!(out, "  {verb} suspend {}{held}", who(report, &a.user));
        }
        for a in &accounts.activate {
            let _ = writeln!(out, "  {verb} activate {}", who(report, &a.user));
        }
        for r in &accounts.refused {
            let _ = writeln!(
                out,
                "  refused to {} {} ({})",
                r.change,
                who(report, &r.user),
                r.reason.replace('_', " ")
            );
        }
    }
    if let Some(inv) = &report.invites {
        for email in &inv.emails {
            let _ = writeln!(out, "  {verb} invite {email}");
        }
        if inv.pending > 0 {
            let _ = writeln!(
                out,
                "  invitations: {} waiting, {} can go now ({} of Outline's 50 requests left this hour, {} people each)",
                inv.pending, inv.sendable_now, inv.requests_left_this_hour, inv.per_request
            );
        }
    }
    report.render_other_sinks(&mut out, verb);
    if !report.sinks.contains(&"outline") {
        return out;
    }
    // What was done (a run), or what would be (a dry run): never what a guard held back.
    let done = &report.summary;
    let _ = writeln!(
        out,
        "total{}: {}, {}, {}, {}, {}; {} no Outline account yet",
        if report.dry_run {
            " (would)"
        } else {
            " (done)"
        },
        count(done.adds, "add", "adds"),
        count(done.removes, "remove", "removes"),
        count(done.creates, "create", "creates"),
        count(done.links, "link", "links"),
        count(done.renames, "rename", "renames"),
        match done.unmatched_members {
            1 => "1 Authentik member has".to_string(),
            n => format!("{n} Authentik members have"),
        }
    );
    out
}
