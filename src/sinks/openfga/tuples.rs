//! OpenFGA `member` tuples: how an Authentik person and group become OpenFGA identifiers, and the pure diff
//! that turns the tuples a group or person should have into the writes and deletes that make OpenFGA match.
//! No I/O here, so every rule is tested directly.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

pub use crate::configuration::{GroupIdForm, TupleNaming, UserIdForm};
use crate::domain::snapshot::GroupSummary;
pub use crate::domain::snapshot::Person;

/// One `member` tuple the sink manages. The relation is the same for all of them (`OPENFGA_RELATION`), so it
/// is not repeated here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MemberTuple {
    /// `user:<id>`
    pub user: Arc<str>,
    /// `group:<id>`
    pub object: Arc<str>,
}

/// Why an identifier cannot be written; OpenFGA would refuse the whole Write that carried it
/// (docs/src/upstream/openfga.md §4), so it is skipped before it gets there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidId {
    /// `user` or `group`, for the metric label.
    pub kind: &'static str,
    /// The Authentik value it was made from.
    pub value: String,
    pub reason: &'static str,
}

/// OpenFGA's `\s` is RE2's: tab, newline, form feed, carriage return and space (docs/src/upstream/openfga.md §5).
/// A no-break space is allowed.
fn is_re2_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ')
}

/// Checks the id part of `type:id` against the rules OpenFGA applies to objects and users
/// (docs/src/upstream/openfga.md §5); the callers bound the length, which differs for users and objects.
fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty");
    }
    if id == "*" {
        return Err("'*' is OpenFGA's wildcard");
    }
    if id.contains(':') {
        return Err("contains ':'");
    }
    if id.contains('#') {
        return Err("contains '#'");
    }
    if id.chars().any(is_re2_space) {
        return Err("contains whitespace");
    }
    if id.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

impl TupleNaming {
    /// A type name or relation OpenFGA accepts (docs/src/upstream/openfga.md §5); for the settings' checks.
    pub fn valid_name(value: &str, max: usize) -> bool {
        let n = value.chars().count();
        (1..=max).contains(&n)
            && !value
                .chars()
                .any(|c| matches!(c, ':' | '#' | '@') || is_re2_space(c))
    }

    /// `user:<id>` for a person, or why there is none: a person without the chosen field, or whose value
    /// OpenFGA would refuse (a username with a space, say).
    pub fn user(&self, person: &Person) -> Result<Arc<str>, InvalidId> {
        let raw: String = match self.user_id {
            UserIdForm::Pk => person.pk.0.to_string(),
            UserIdForm::Username => match &person.username {
                Some(u) => u.to_string(),
                None => return Err(self.invalid_user(person.pk.to_string(), "has no username")),
            },
            UserIdForm::Email => match &person.email {
                Some(e) => e.as_str().to_string(),
                None => return Err(self.invalid_user(person.pk.to_string(), "has no email")),
            },
        };
        let whole = format!("{}:{raw}", self.user_type);
        if let Err(reason) = check_id(&raw) {
            return Err(self.invalid_user(raw, reason));
        }
        // The user field is limited in bytes, not characters (docs/src/upstream/openfga.md §5, §8).
        if whole.len() > 512 {
            return Err(self.invalid_user(raw, "longer than 512 bytes"));
        }
        Ok(Arc::from(whole))
    }

    fn invalid_user(&self, value: String, reason: &'static str) -> InvalidId {
        InvalidId {
            kind: "user",
            value,
            reason,
        }
    }

    /// `group:<id>` for an Authentik group, or why there is none.
    pub fn group(&self, group: &GroupSummary) -> Result<Arc<str>, InvalidId> {
        let raw = match self.group_id {
            GroupIdForm::Uuid => group.id.as_str().to_string(),
            GroupIdForm::Name => group.name.as_str().to_string(),
        };
        let whole = format!("{}:{raw}", self.group_type);
        let invalid = |reason| InvalidId {
            kind: "group",
            value: raw.clone(),
            reason,
        };
        check_id(&raw).map_err(invalid)?;
        // Objects are limited to 256 characters (docs/src/upstream/openfga.md §5).
        if whole.chars().count() > 256 {
            return Err(invalid("longer than 256 characters"));
        }
        Ok(Arc::from(whole))
    }

    /// `group:`, the Read filter for every group tuple of one user (docs/src/upstream/openfga.md §2.3).
    pub fn group_prefix(&self) -> String {
        format!("{}:", self.group_type)
    }

    /// True for a tuple user the sink manages: a plain `user:<id>`. Usersets (`group:x#member`), wildcards
    /// and other types on a managed group are someone else's and are never deleted.
    pub fn is_managed_user(&self, user: &str) -> bool {
        match user.split_once(':') {
            Some((t, id)) => t == self.user_type && !id.contains('#') && id != "*",
            None => false,
        }
    }
}

/// The writes and deletes that turn the current tuples into the desired ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TuplePlan {
    pub writes: Vec<MemberTuple>,
    pub deletes: Vec<MemberTuple>,
}

impl TuplePlan {
    /// The difference of two sets of managed tuples: only what differs is written.
    pub fn diff(desired: &BTreeSet<MemberTuple>, current: &BTreeSet<MemberTuple>) -> TuplePlan {
        TuplePlan {
            writes: desired.difference(current).cloned().collect(),
            deletes: current.difference(desired).cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.deletes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len() + self.deletes.len()
    }

    pub fn extend(&mut self, other: TuplePlan) {
        self.writes.extend(other.writes);
        self.deletes.extend(other.deletes);
    }

    /// The plan without its deletes, for the removal guard.
    pub fn without_deletes(&self) -> TuplePlan {
        TuplePlan {
            writes: self.writes.clone(),
            deletes: Vec::new(),
        }
    }

    /// Requests of at most `max` tuples each (OpenFGA refuses a Write of more, docs/src/upstream/openfga.md §2.2).
    /// Deletes go first, so a move (delete old, write new) never leaves both in place for long. A tuple
    /// never appears twice in one batch: the plan is a set difference, so writes and deletes are disjoint.
    pub fn batches(&self, max: usize) -> Vec<TuplePlan> {
        let max = max.max(1);
        let mut out = Vec::new();
        let mut batch = TuplePlan::default();
        for d in &self.deletes {
            if batch.len() == max {
                out.push(std::mem::take(&mut batch));
            }
            batch.deletes.push(d.clone());
        }
        for w in &self.writes {
            if batch.len() == max {
                out.push(std::mem::take(&mut batch));
            }
            batch.writes.push(w.clone());
        }
        if !batch.is_empty() {
            out.push(batch);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthentikGroupId, AuthentikUserId, Email, GroupName};
    use proptest::prelude::*;

    fn naming(user_id: UserIdForm, group_id: GroupIdForm) -> TupleNaming {
        TupleNaming {
            user_type: "user".into(),
            group_type: "group".into(),
            relation: "member".into(),
            user_id,
            group_id,
        }
    }

    fn person(username: Option<&str>, email: Option<&str>) -> Person {
        Person {
            pk: AuthentikUserId(42),
            username: username.map(Arc::from),
            email: email.and_then(Email::parse),
        }
    }

    fn group(name: &str) -> GroupSummary {
        GroupSummary {
            id: AuthentikGroupId::parse("0b6e1d33-3b7e-4d0c-9a57-5f0f3d7a9c11").expect("uuid"),
            name: GroupName::new(name),
            is_superuser: false,
            parents: Vec::new(),
        }
    }

    #[test]
    fn each_user_id_form_names_the_person_as_openfga_expects() {
        let p = person(Some("jane"), Some("Jane@Example.com"));
        let n = |f| naming(f, GroupIdForm::Uuid).user(&p).expect("valid");
        assert_eq!(&*n(UserIdForm::Username), "user:jane");
        // Case is kept: OpenFGA compares exact strings, and apps check the address as the IdP sends it.
        assert_eq!(&*n(UserIdForm::Email), "user:Jane@Example.com");
        assert_eq!(&*n(UserIdForm::Pk), "user:42");
    }

    #[test]
    fn ids_openfga_refuses_are_reported_not_written() {
        let by_name = naming(UserIdForm::Username, GroupIdForm::Name);
        for bad in ["Site Admins", "eng#ops", "eng:ops", "*", "tab\there"] {
            let e = by_name.group(&group(bad)).expect_err(bad);
            assert_eq!(e.kind, "group");
        }
        for bad in ["ak:jane", "jane#x", "john doe"] {
            let e = by_name.user(&person(Some(bad), None)).expect_err(bad);
            assert_eq!(e.kind, "user");
        }
        assert!(by_name.user(&person(None, None)).is_err(), "no username");
        let long = "é".repeat(250);
        assert!(by_name.group(&group(&long)).is_ok(), "256 characters");
        assert!(by_name.group(&group(&format!("{long}é"))).is_err());
        let many = "a".repeat(508);
        assert!(
            by_name.user(&person(Some(&many), None)).is_err(),
            "513 bytes"
        );
        // Accepted by OpenFGA's engine (docs/src/upstream/openfga.md §5).
        for good in ["Ingeniería/Ops+QA(€)", "a/b?c=d&e%20f", "no\u{a0}break"] {
            assert!(by_name.group(&group(good)).is_ok(), "{good}");
        }
        let uuid = naming(UserIdForm::Pk, GroupIdForm::Uuid)
            .group(&group("Site Admins"))
            .expect("a uuid is always valid");
        assert_eq!(&*uuid, "group:0b6e1d33-3b7e-4d0c-9a57-5f0f3d7a9c11");
    }

    #[test]
    fn only_plain_users_of_the_user_type_are_managed() {
        let n = naming(UserIdForm::Username, GroupIdForm::Uuid);
        assert!(n.is_managed_user("user:jane"));
        assert!(!n.is_managed_user("group:eng#member"));
        assert!(!n.is_managed_user("user:*"));
        assert!(!n.is_managed_user("employee:jane"));
        assert!(!n.is_managed_user("user:jane#x"));
    }

    fn tuple(u: u8, g: u8) -> MemberTuple {
        MemberTuple {
            user: Arc::from(format!("user:{u}")),
            object: Arc::from(format!("group:{g}")),
        }
    }

    proptest! {
        /// Applying the diff to the current set yields exactly the desired set, and nothing already right is
        /// written or deleted.
        #[test]
        fn the_diff_reaches_the_desired_set_and_touches_nothing_else(
            desired in prop::collection::btree_set((0u8..12, 0u8..4), 0..40),
            current in prop::collection::btree_set((0u8..12, 0u8..4), 0..40),
        ) {
            let desired: BTreeSet<MemberTuple> = desired.into_iter().map(|(u, g)| tuple(u, g)).collect();
            let current: BTreeSet<MemberTuple> = current.into_iter().map(|(u, g)| tuple(u, g)).collect();
            let plan = TuplePlan::diff(&desired, &current);
            let mut after = current.clone();
            for d in &plan.deletes { prop_assert!(after.remove(d)); }
            for w in &plan.writes { prop_assert!(after.insert(w.clone())); }
            prop_assert_eq!(&after, &desired);
            let both: BTreeSet<_> = desired.intersection(&current).collect();
            prop_assert!(plan.writes.iter().chain(&plan.deletes).all(|t| !both.contains(t)));
        }

        /// Batches hold at most `max` tuples, keep every tuple exactly once, and never repeat one in a request.
        #[test]
        fn batches_respect_the_write_limit(
            writes in prop::collection::btree_set((0u8..50, 0u8..5), 0..200),
            deletes in prop::collection::btree_set((50u8..100, 0u8..5), 0..200),
            max in 1usize..120,
        ) {
            let plan = TuplePlan {
                writes: writes.into_iter().map(|(u, g)| tuple(u, g)).collect(),
                deletes: deletes.into_iter().map(|(u, g)| tuple(u, g)).collect(),
            };
            let batches = plan.batches(max);
            prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= max));
            let w: Vec<_> = batches.iter().flat_map(|b| b.writes.clone()).collect();
            let d: Vec<_> = batches.iter().flat_map(|b| b.deletes.clone()).collect();
            prop_assert_eq!(w, plan.writes);
            prop_assert_eq!(d, plan.deletes);
        }

        /// Whatever a group is called, the sink either names it with an id OpenFGA accepts or skips it.
        #[test]
        fn every_group_name_is_either_valid_or_skipped(name in "\\PC{0,300}") {
            let n = naming(UserIdForm::Username, GroupIdForm::Name);
            if let Ok(object) = n.group(&group(&name)) {
                let id = object.strip_prefix("group:").unwrap_or_default();
                prop_assert_eq!(object.matches(':').count(), 1);
                prop_assert!(!id.is_empty() && !id.contains('#'));
                prop_assert!(!object.chars().any(is_re2_space));
                prop_assert!(object.chars().count() <= 256);
            }
        }
    }
}
