//! What the bridge knows of each side at one moment: Authentik groups and users, Outline groups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use regex::Regex;
use serde::Serialize;

use crate::domain::identity::{
    AuthentikGroupId, AuthentikUserId, Email, GroupName, OutlineGroupId,
};

/// A person in the directory, with every field a sink may name them by (a sink's user ids may be made of any one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Person {
    pub pk: AuthentikUserId,
    pub username: Option<Arc<str>>,
    pub email: Option<Email>,
}

/// An Authentik group without its members: enough to decide whether it is managed and how it nests.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub id: AuthentikGroupId,
    pub name: GroupName,
    pub is_superuser: bool,
    pub parents: Vec<AuthentikGroupId>,
}

/// One member of an Authentik group, as `users_obj` lists it (docs/src/upstream/authentik.md §7.3).
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    pub pk: AuthentikUserId,
    pub username: Option<Arc<str>>,
    pub email: Option<Email>,
    pub is_active: bool,
}

/// A person a plan wants in a group: an active Authentik member with an email. The pk goes along because
/// Outline keeps a changed email's old address until the person signs in again (docs/src/upstream/outline.md
/// §6.7), and the bridge then finds them by the address it last saw for that pk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DesiredMember {
    pub email: Email,
    pub pk: AuthentikUserId,
}

impl MemberSnapshot {
    pub fn person(&self) -> Person {
        Person {
            pk: self.pk,
            username: self.username.clone(),
            email: self.email.clone(),
        }
    }
}

impl UserSnapshot {
    pub fn person(&self) -> Person {
        Person {
            pk: self.pk,
            username: self.username.clone(),
            email: self.email.clone(),
        }
    }
}

/// An Authentik group with its direct members.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    pub summary: GroupSummary,
    pub members: Vec<MemberSnapshot>,
}

impl GroupSnapshot {
    /// The members a plan wants: active ones with an email. An inactive user is removed from every managed
    /// group.
    pub fn desired_members(&self) -> std::collections::BTreeSet<DesiredMember> {
        self.members
            .iter()
            .filter(|m| m.is_active)
            .filter_map(|m| {
                m.email
                    .clone()
                    .map(|email| DesiredMember { email, pk: m.pk })
            })
            .collect()
    }
}

impl GroupSnapshot {
    /// The people a plan by identity wants: every active member, email or not.
    pub fn active_people(&self) -> BTreeSet<Person> {
        self.members
            .iter()
            .filter(|m| m.is_active)
            .map(MemberSnapshot::person)
            .collect()
    }
}

/// An Authentik user with their direct groups (docs/src/upstream/authentik.md §7.4: `groups_obj` lists direct groups only).
#[derive(Debug, Clone)]
pub struct UserSnapshot {
    pub pk: AuthentikUserId,
    pub username: Option<Arc<str>>,
    /// The display name, for an Outline invitation.
    pub name: Option<String>,
    pub email: Option<Email>,
    pub is_active: bool,
    pub groups: Vec<AuthentikGroupId>,
}

/// An Outline group as `groups.list` presents it (docs/src/upstream/outline.md §3.4).
#[derive(Debug, Clone)]
pub struct OutlineGroup {
    pub id: OutlineGroupId,
    pub name: GroupName,
    pub external_id: Option<String>,
}

impl OutlineGroup {
    /// The Authentik group this Outline group was linked to, when its `externalId` names one.
    pub fn linked_authentik_group(&self) -> Option<AuthentikGroupId> {
        self.external_id
            .as_deref()
            .and_then(AuthentikGroupId::parse)
    }
}

/// A member's role in an Outline group. Kept so that plans never re-add an admin: `groups.add_user` without
/// a permission demotes them (docs/src/upstream/outline.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Member,
    Admin,
}

/// Authentik's built-in groups: the superuser group ("authentik Admins") and the read-only role group.
const READ_ONLY_GROUP: &str = "authentik read-only";

/// Decides which Authentik groups are managed: those matching `AUTHENTIK_GROUP_REGEXP` when it is set, else
/// all. Authentik's built-in admin and read-only groups are managed only when a regex is set and names them,
/// because mirroring "who is an Authentik superuser" into a wiki is never what a default should do.
#[derive(Debug, Clone, Default)]
pub struct GroupSelector {
    pub filter: Option<Regex>,
}

impl GroupSelector {
    pub fn is_managed(&self, name: &GroupName, is_superuser: bool) -> bool {
        let builtin = is_superuser || name.folded() == READ_ONLY_GROUP;
        match &self.filter {
            Some(re) => re.is_match(name.as_str()),
            None => !builtin,
        }
    }
}

/// For `MEMBERSHIP=inherited`: each group's ancestors, walked through `parents` (docs/src/upstream/authentik.md §7.5: the API
/// reports direct membership only, so the closure is computed here). Cycles are tolerated.
pub fn ancestors(
    catalog: &[GroupSummary],
) -> BTreeMap<AuthentikGroupId, BTreeSet<AuthentikGroupId>> {
    let parents: BTreeMap<&AuthentikGroupId, &Vec<AuthentikGroupId>> =
        catalog.iter().map(|g| (&g.id, &g.parents)).collect();
    let mut out = BTreeMap::new();
    for g in catalog {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&AuthentikGroupId> = g.parents.iter().collect();
        while let Some(p) = stack.pop() {
            if p == &g.id || !seen.insert(p.clone()) {
                continue;
            }
            if let Some(next) = parents.get(p) {
                stack.extend(next.iter());
            }
        }
        out.insert(g.id.clone(), seen);
    }
    out
}

/// The groups a person's membership counts in: their direct groups, plus, when `inherited`
/// (`MEMBERSHIP=inherited`), every ancestor of those. The one walk up the hierarchy for a person, shared by
/// both sinks' user jobs and the roles.
pub fn counted_group_ids<'a>(
    catalog: &[GroupSummary],
    direct: impl IntoIterator<Item = &'a AuthentikGroupId>,
    inherited: bool,
) -> BTreeSet<AuthentikGroupId> {
    let mut ids: BTreeSet<AuthentikGroupId> = direct.into_iter().cloned().collect();
    if inherited && !ids.is_empty() {
        let anc = ancestors(catalog);
        let direct: Vec<AuthentikGroupId> = ids.iter().cloned().collect();
        for g in &direct {
            ids.extend(anc.get(g).into_iter().flatten().cloned());
        }
    }
    ids
}

/// The one walk up the hierarchy for every group: each group's members (as `members` reads them), and with
/// `inherited` its descendants' members too (docs/src/upstream/authentik.md §7.5). Every sink and the
/// invitations use this, whatever they call a member.
pub fn members_by_group<T: Ord + Clone>(
    directory: &[GroupSnapshot],
    inherited: bool,
    members: impl Fn(&GroupSnapshot) -> BTreeSet<T>,
) -> BTreeMap<AuthentikGroupId, BTreeSet<T>> {
    let above = if inherited {
        let summaries: Vec<GroupSummary> = directory.iter().map(|g| g.summary.clone()).collect();
        ancestors(&summaries)
    } else {
        BTreeMap::new()
    };
    let mut out: BTreeMap<AuthentikGroupId, BTreeSet<T>> = BTreeMap::new();
    for g in directory {
        let own = members(g);
        for a in above.get(&g.summary.id).into_iter().flatten() {
            out.entry(a.clone())
                .or_default()
                .extend(own.iter().cloned());
        }
        out.entry(g.summary.id.clone()).or_default().extend(own);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, parents: &[&str]) -> GroupSummary {
        GroupSummary {
            id: AuthentikGroupId::parse(id).expect("uuid"),
            name: GroupName::new(id),
            is_superuser: false,
            parents: parents
                .iter()
                .map(|p| AuthentikGroupId::parse(p).expect("uuid"))
                .collect(),
        }
    }

    #[test]
    fn builtin_groups_need_the_regex_to_name_them() {
        let all = GroupSelector::default();
        assert!(!all.is_managed(&GroupName::new("authentik Admins"), true));
        assert!(!all.is_managed(&GroupName::new("authentik Read-only"), false));
        assert!(all.is_managed(&GroupName::new("engineering"), false));
        let named = GroupSelector {
            filter: Some(Regex::new("(?i)^(?:authentik)").expect("re")),
        };
        assert!(named.is_managed(&GroupName::new("authentik Admins"), true));
        assert!(!named.is_managed(&GroupName::new("engineering"), false));
    }

    #[test]
    fn ancestors_follow_parents_transitively_and_survive_cycles() {
        let a = "00000000000000000000000000000001";
        let b = "00000000000000000000000000000002";
        let c = "00000000000000000000000000000003";
        let catalog = vec![summary(a, &[c]), summary(b, &[a]), summary(c, &[b])];
        let anc = ancestors(&catalog);
        let b_id = AuthentikGroupId::parse(b).expect("uuid");
        assert_eq!(anc[&b_id].len(), 2);
    }

    #[test]
    fn a_person_counts_in_their_groups_and_with_inheritance_in_every_ancestor() {
        let id = |n: u8| format!("000000000000000000000000000000{n:02}");
        let catalog = vec![
            summary(&id(1), &[]),
            summary(&id(2), &[&id(1)]),
            summary(&id(3), &[&id(2)]),
            summary(&id(4), &[]),
        ];
        let g = |n: u8| AuthentikGroupId::parse(&id(n)).expect("uuid");
        let direct = [g(3)];
        assert_eq!(
            counted_group_ids(&catalog, &direct, false),
            BTreeSet::from([g(3)])
        );
        assert_eq!(
            counted_group_ids(&catalog, &direct, true),
            BTreeSet::from([g(1), g(2), g(3)])
        );
        assert!(counted_group_ids(&catalog, &[], true).is_empty());
    }
}
