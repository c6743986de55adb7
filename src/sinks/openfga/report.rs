//! The OpenFGA half of `reconcile`'s report, as a person reads it.

use std::fmt::Write;

use super::sink::OpenFgaPassReport;
use crate::reason::count;

/// `verb` is "would" in a dry run and "did" in a run; what the guard held reads "would … (held back)".
pub fn render(fga: &OpenFgaPassReport, dry_run: bool, verb: &str, out: &mut String) {
    let (held_verb, mark) = ("would", " (held back)");
    let _ = writeln!(
        out,
        "openfga: {}",
        count(fga.managed_groups, "managed group", "managed groups")
    );
    for t in &fga.writes {
        let _ = writeln!(
            out,
            "  {verb} write  {} {} {}",
            t.user, fga.relation, t.object
        );
    }
    for t in &fga.deletes {
        let (verb, held) = if fga.guarded {
            (held_verb, mark)
        } else {
            (verb, "")
        };
        let _ = writeln!(
            out,
            "  {verb} delete {} {} {}{held}",
            t.user, fga.relation, t.object
        );
    }
    for t in &fga.held_deletes {
        let _ = writeln!(
            out,
            "  {held_verb} delete {} {} {}{mark}",
            t.user, fga.relation, t.object
        );
    }
    for s in &fga.skipped_ids {
        let _ = writeln!(out, "  skipped {} {:?}: {}", s.kind, s.value, s.reason);
    }
    let _ = writeln!(
        out,
        "openfga total: {} {}, {} {}, {} skipped",
        count(fga.writes.len(), "tuple", "tuples"),
        if dry_run { "to write" } else { "written" },
        fga.deletes.len(),
        if dry_run { "to delete" } else { "deleted" },
        count(fga.skipped_ids.len(), "id", "ids"),
    );
}
