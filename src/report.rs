//! Human-readable renderings of plans and reports for the CLI.

use std::fmt::Write;

use crate::domain::accounts::OutlineRole;
use crate::domain::{GroupRef, OutlineUserId};
use crate::sync::ReconcileReport;

fn who(report: &ReconcileReport, user: &OutlineUserId) -> String {
    match report.emails.get(user) {
        Some(email) => format!("{email} ({user})"),
        None => format!("user {user}"),
    }
}

pub fn render_reconcile(report: &ReconcileReport) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let verb = if report.dry_run { "would" } else { "did" };
    let _ = writeln!(
        out,
        "reconcile{}: {} managed groups, {} ms",
        if report.dry_run { " (dry run)" } else { "" },
        report.managed_groups,
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
    for r in &plan.removes {
        let held = if report.guarded {
            " [held back by MAX_REMOVALS]"
        } else {
            ""
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
            let held = if report.guarded && r.from == OutlineRole::Admin {
                " [held back by MAX_REMOVALS]"
            } else {
                ""
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
            let _ = writeln!(out, "  {verb} suspend {}", who(report, &a.user));
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
    if let Some(fga) = &report.openfga {
        let held = if fga.guarded {
            " [held back by MAX_REMOVALS]"
        } else {
            ""
        };
        let _ = writeln!(out, "openfga: {} managed groups", fga.managed_groups);
        for t in &fga.writes {
            let _ = writeln!(
                out,
                "  {verb} write  {} {} {}",
                t.user, fga.relation, t.object
            );
        }
        for t in &fga.deletes {
            let _ = writeln!(
                out,
                "  {verb} delete {} {} {}{held}",
                t.user, fga.relation, t.object
            );
        }
        for s in &fga.skipped_ids {
            let _ = writeln!(out, "  skipped {} {:?}: {}", s.kind, s.value, s.reason);
        }
        let _ = writeln!(
            out,
            "openfga total: {} tuples to write, {} to delete, {} ids skipped",
            fga.writes.len(),
            fga.deletes.len(),
            fga.skipped_ids.len()
        );
    }
    if !report.sinks.contains(&"outline") {
        return out;
    }
    let _ = writeln!(
        out,
        "total: {} adds, {} removes, {} creates, {} links, {} renames; {} Authentik members have no Outline account yet",
        plan.adds.len(),
        plan.removes.len(),
        plan.creates.len(),
        plan.links.len(),
        plan.renames.len(),
        report.summary.unmatched_members
    );
    out
}
