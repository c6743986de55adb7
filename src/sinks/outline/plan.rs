//! The planner: given who should be in each managed group and who is in each Outline group now, list the
//! Outline calls that close the gap. It is pure; applying the plan is the sync layer's job.
//!
//! The same planner serves a sign-in (one user, every managed group), a group event (one group, every
//! member) and a full reconcile (everything): the caller narrows both sides to the same scope.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::identity::{AuthentikGroupId, GroupName, OutlineGroupId, OutlineUserId};
use crate::domain::snapshot::OutlineGroup;

/// One managed Authentik group this plan converges, with the Outline users who should be in it (within the
/// plan's scope).
#[derive(Debug, Clone)]
pub struct GroupTarget {
    pub group: AuthentikGroupId,
    pub name: GroupName,
    pub desired: BTreeSet<OutlineUserId>,
}

pub struct PlanInput<'a> {
    pub targets: &'a [GroupTarget],
    /// Every Outline group: linking needs them all, to find a group by `externalId` or name.
    pub outline_groups: &'a [OutlineGroup],
    /// The current members of Outline groups within the plan's scope. A group that is absent has no members
    /// in scope; the caller must have read every group it leaves out.
    pub current: &'a BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
    pub auto_create: bool,
    /// Every group that exists in Authentik, managed or not, when the caller has read them all. An Outline
    /// group whose `externalId` names a group missing from this set was linked to a group since deleted (a
    /// Terraform replace, a re-imported blueprint): the Authentik group of the same name takes it over. With
    /// `None` nothing is taken over.
    pub existing_groups: Option<&'a BTreeSet<AuthentikGroupId>>,
}

/// An Outline group that a later step of the same plan refers to, before or after it exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRef {
    Existing(OutlineGroupId),
    /// Created by this plan for the given Authentik group (`AUTO_CREATE_GROUPS`).
    ToCreate(AuthentikGroupId),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupCreate {
    pub authentik_group: AuthentikGroupId,
    pub name: GroupName,
}

/// An Outline group found by name, whose `externalId` is written so that later renames keep the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLink {
    pub outline_group: OutlineGroupId,
    pub authentik_group: AuthentikGroupId,
    pub name: GroupName,
    /// The deleted Authentik group the Outline group was linked to, when this link takes it over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<AuthentikGroupId>,
}

/// An Outline group linked by `externalId` whose Authentik group was renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRename {
    pub authentik_group: AuthentikGroupId,
    pub outline_group: OutlineGroupId,
    pub from: GroupName,
    pub to: GroupName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembershipChange<G> {
    pub authentik_group: AuthentikGroupId,
    pub group: G,
    pub group_name: GroupName,
    pub user: OutlineUserId,
}

/// Why a managed group was left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedGroup {
    pub authentik_group: AuthentikGroupId,
    pub name: GroupName,
    /// A short label for metrics.
    pub code: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MembershipPlan {
    pub creates: Vec<GroupCreate>,
    pub links: Vec<GroupLink>,
    pub renames: Vec<GroupRename>,
    pub adds: Vec<MembershipChange<GroupRef>>,
    pub removes: Vec<MembershipChange<OutlineGroupId>>,
    pub skipped: Vec<SkippedGroup>,
}

impl MembershipPlan {
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.links.is_empty()
            && self.renames.is_empty()
            && self.adds.is_empty()
            && self.removes.is_empty()
    }
    pub fn write_count(&self) -> usize {
        self.creates.len()
            + self.links.len()
            + self.renames.len()
            + self.adds.len()
            + self.removes.len()
    }
    /// The plan cut into one plan per Authentik group, so that a pass can write each group on its own: under
    /// the group's lock, and only if no change to the group arrived since the pass read it.
    pub fn split_by_group(self) -> BTreeMap<AuthentikGroupId, MembershipPlan> {
        let mut parts: BTreeMap<AuthentikGroupId, MembershipPlan> = BTreeMap::new();
        for c in self.creates {
            parts
                .entry(c.authentik_group.clone())
                .or_default()
                .creates
                .push(c);
        }
        for l in self.links {
            parts
                .entry(l.authentik_group.clone())
                .or_default()
                .links
                .push(l);
        }
        for r in self.renames {
            parts
                .entry(r.authentik_group.clone())
                .or_default()
                .renames
                .push(r);
        }
        for a in self.adds {
            parts
                .entry(a.authentik_group.clone())
                .or_default()
                .adds
                .push(a);
        }
        for r in self.removes {
            parts
                .entry(r.authentik_group.clone())
                .or_default()
                .removes
                .push(r);
        }
        for s in self.skipped {
            parts
                .entry(s.authentik_group.clone())
                .or_default()
                .skipped
                .push(s);
        }
        parts
    }
}

/// How an Authentik group found its Outline group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedBy {
    ExternalId,
    Name,
}

/// Finds the Outline group of an Authentik group: by `externalId` first, else by name without case
/// (docs/src/upstream/outline.md §6.1), and by name only among groups whose `externalId` is empty, so a group that another
/// tool or another Authentik group owns is never taken over. The sync layer uses the same index to know
/// which Outline group's members to read before planning.
pub struct GroupIndex<'a> {
    by_external: BTreeMap<AuthentikGroupId, &'a OutlineGroup>,
    by_name: BTreeMap<String, &'a OutlineGroup>,
    all_names: BTreeMap<String, &'a OutlineGroupId>,
}

impl<'a> GroupIndex<'a> {
    /// `existing`: see [`PlanInput::existing_groups`].
    pub fn new(
        groups: &'a [OutlineGroup],
        existing: Option<&BTreeSet<AuthentikGroupId>>,
    ) -> GroupIndex<'a> {
        let mut by_external: BTreeMap<AuthentikGroupId, &OutlineGroup> = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for og in groups {
            match og.linked_authentik_group() {
                Some(id) if existing.is_some_and(|e| !e.contains(&id)) => {
                    // Linked to a deleted group: free for the group that now has its name.
                    by_name.entry(og.name.folded()).or_insert(og);
                }
                Some(id) => {
                    // `externalId` is not unique in Outline (docs/src/upstream/outline.md §5.3); the lowest id wins, so the choice is stable.
                    let slot = by_external.entry(id).or_insert(og);
                    if og.id < slot.id {
                        *slot = og;
                    }
                }
                None if og.external_id.as_deref().is_none_or(str::is_empty) => {
                    by_name.entry(og.name.folded()).or_insert(og);
                }
                None => {}
            }
        }
        let all_names = groups.iter().map(|g| (g.name.folded(), &g.id)).collect();
        GroupIndex {
            by_external,
            by_name,
            all_names,
        }
    }

    pub fn find(
        &self,
        group: &AuthentikGroupId,
        name: &GroupName,
    ) -> Option<(&'a OutlineGroup, LinkedBy)> {
        if let Some(og) = self.by_external.get(group) {
            return Some((og, LinkedBy::ExternalId));
        }
        self.by_name
            .get(&name.folded())
            .map(|og| (*og, LinkedBy::Name))
    }

    /// The Outline group linked to this Authentik group by `externalId`, if any.
    pub fn linked(&self, group: &AuthentikGroupId) -> Option<&'a OutlineGroup> {
        self.by_external.get(group).copied()
    }

    /// Whether some Outline group already has this name (without case).
    pub fn name_in_use(&self, name: &GroupName) -> bool {
        self.all_names.contains_key(&name.folded())
    }

    /// Whether renaming `id` to `name` would clash with another group's name.
    pub fn name_taken_by_other(&self, name: &GroupName, id: &OutlineGroupId) -> bool {
        self.all_names
            .get(&name.folded())
            .is_some_and(|other| *other != id)
    }
}

const SKIP_NO_OUTLINE_GROUP: &str =
    "no Outline group has this name or externalId; set AUTO_CREATE_GROUPS=true to create it";
const SKIP_NAME_OWNED: &str = "an Outline group has this name but its externalId names something else; clear its externalId to link it";
const SKIP_NAME_TAKEN: &str =
    "another managed Authentik group links to the Outline group with this name";

/// Links each target to its Outline group, then diffs members.
///
/// Rules, each from an upstream fact:
/// - linking follows [`GroupIndex`];
/// - a group linked by name gets the `externalId` written, and one linked by `externalId` follows renames;
/// - an existing member is never added again: `groups.add_user` would demote a group admin (docs/src/upstream/outline.md §6.3);
/// - Outline groups that link to no target are never touched.
pub fn plan_membership(input: &PlanInput<'_>) -> MembershipPlan {
    let index = GroupIndex::new(input.outline_groups, input.existing_groups);
    let mut plan = MembershipPlan::default();
    let mut claimed: BTreeSet<&OutlineGroupId> = BTreeSet::new();
    let empty = BTreeSet::new();

    for target in input.targets {
        let linked = match index.find(&target.group, &target.name) {
            Some((og, LinkedBy::ExternalId)) => {
                // Names that differ only in case are one name to Outline (docs/src/upstream/outline.md §6.1): not renamed, so a group
                // linked by name keeps the case its admins gave it.
                if og.name != target.name && !index.name_taken_by_other(&target.name, &og.id) {
                    plan.renames.push(GroupRename {
                        authentik_group: target.group.clone(),
                        outline_group: og.id.clone(),
                        from: og.name.clone(),
                        to: target.name.clone(),
                    });
                }
                Some(og)
            }
            Some((og, LinkedBy::Name)) => {
                if claimed.contains(&og.id) {
                    plan.skipped.push(SkippedGroup {
                        authentik_group: target.group.clone(),
                        name: target.name.clone(),
                        code: "name_taken",
                        reason: SKIP_NAME_TAKEN,
                    });
                    continue;
                }
                plan.links.push(GroupLink {
                    outline_group: og.id.clone(),
                    authentik_group: target.group.clone(),
                    name: target.name.clone(),
                    replaces: og.linked_authentik_group(),
                });
                Some(og)
            }
            None => None,
        };

        match linked {
            Some(og) => {
                claimed.insert(&og.id);
                let current = input.current.get(&og.id).unwrap_or(&empty);
                for user in target.desired.iter().filter(|u| !current.contains(*u)) {
                    plan.adds.push(MembershipChange {
                        authentik_group: target.group.clone(),
                        group: GroupRef::Existing(og.id.clone()),
                        group_name: target.name.clone(),
                        user: user.clone(),
                    });
                }
                for user in current.iter().filter(|u| !target.desired.contains(*u)) {
                    plan.removes.push(MembershipChange {
                        authentik_group: target.group.clone(),
                        group: og.id.clone(),
                        group_name: target.name.clone(),
                        user: user.clone(),
                    });
                }
            }
            None if index.name_in_use(&target.name) => plan.skipped.push(SkippedGroup {
                authentik_group: target.group.clone(),
                name: target.name.clone(),
                code: "name_owned",
                reason: SKIP_NAME_OWNED,
            }),
            None if input.auto_create && !target.desired.is_empty() => {
                plan.creates.push(GroupCreate {
                    authentik_group: target.group.clone(),
                    name: target.name.clone(),
                });
                for user in &target.desired {
                    plan.adds.push(MembershipChange {
                        authentik_group: target.group.clone(),
                        group: GroupRef::ToCreate(target.group.clone()),
                        group_name: target.name.clone(),
                        user: user.clone(),
                    });
                }
            }
            // An empty group is created with its first member.
            None if input.auto_create => {}
            None => plan.skipped.push(SkippedGroup {
                authentik_group: target.group.clone(),
                name: target.name.clone(),
                code: "no_outline_group",
                reason: SKIP_NO_OUTLINE_GROUP,
            }),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gid(n: u8) -> AuthentikGroupId {
        AuthentikGroupId::parse(&format!("{:032x}", u128::from(n) + 1)).expect("uuid")
    }
    fn uid(n: u8) -> OutlineUserId {
        OutlineUserId::new(format!("user-{n}"))
    }
    fn ogid(n: u8) -> OutlineGroupId {
        OutlineGroupId::new(format!("og-{n}"))
    }
    fn target(n: u8, name: &str, desired: &[u8]) -> GroupTarget {
        GroupTarget {
            group: gid(n),
            name: GroupName::new(name),
            desired: desired.iter().map(|u| uid(*u)).collect(),
        }
    }
    fn og(n: u8, name: &str, ext: Option<AuthentikGroupId>) -> OutlineGroup {
        OutlineGroup {
            id: ogid(n),
            name: GroupName::new(name),
            external_id: ext.map(|e| e.as_str().to_string()),
        }
    }

    #[test]
    fn links_by_name_without_case_and_writes_the_external_id() {
        let targets = [target(1, "Docs", &[1])];
        let groups = [og(1, "docs", None)];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert_eq!(plan.links.len(), 1);
        assert_eq!(plan.links[0].outline_group, ogid(1));
        assert_eq!(plan.adds.len(), 1);
        assert!(plan.renames.is_empty());
    }

    #[test]
    fn external_id_wins_over_name_and_renames_follow() {
        let targets = [target(1, "Engineering", &[])];
        let groups = [
            og(1, "Eng (old)", Some(gid(1))),
            og(2, "engineering-x", None),
        ];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert!(plan.links.is_empty());
        assert_eq!(
            plan.renames,
            vec![GroupRename {
                authentik_group: gid(1),
                outline_group: ogid(1),
                from: GroupName::new("Eng (old)"),
                to: GroupName::new("Engineering")
            }]
        );
    }

    #[test]
    fn a_rename_onto_a_taken_name_is_not_planned() {
        let targets = [target(1, "Docs", &[])];
        let groups = [og(1, "Old", Some(gid(1))), og(2, "DOCS", None)];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert!(plan.renames.is_empty());
    }

    #[test]
    fn a_group_owned_by_another_external_id_is_not_taken_by_name() {
        let targets = [target(1, "Docs", &[1])];
        let groups = [og(1, "Docs", Some(gid(9)))];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert!(plan.links.is_empty() && plan.adds.is_empty());
        assert_eq!(plan.skipped.len(), 1);
    }

    #[test]
    fn case_only_differences_are_not_renames() {
        let targets = [target(1, "docs", &[])];
        let groups = [og(1, "Docs", Some(gid(1)))];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert!(plan.renames.is_empty());
    }

    #[test]
    fn no_create_when_the_name_belongs_to_a_group_linked_elsewhere() {
        let targets = [target(1, "Docs", &[1])];
        let groups = [og(1, "DOCS", Some(gid(9)))];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: true,
            existing_groups: None,
        });
        assert!(plan.creates.is_empty() && plan.adds.is_empty());
        assert_eq!(plan.skipped.len(), 1);
    }

    #[test]
    fn missing_groups_are_created_only_when_asked_and_needed() {
        let targets = [target(1, "New", &[1, 2]), target(2, "Empty", &[])];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &[],
            current: &current,
            auto_create: true,
            existing_groups: None,
        });
        assert_eq!(plan.creates.len(), 1);
        assert_eq!(plan.adds.len(), 2);
        assert!(plan
            .adds
            .iter()
            .all(|a| a.group == GroupRef::ToCreate(gid(1))));
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &[],
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert!(plan.creates.is_empty() && plan.adds.is_empty());
        assert_eq!(plan.skipped.len(), 2);
    }

    #[test]
    fn admins_are_never_re_added() {
        let targets = [target(1, "Docs", &[1])];
        let groups = [og(1, "Docs", Some(gid(1)))];
        let current = BTreeMap::from([(ogid(1), BTreeSet::from([uid(1)]))]);
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: false,
            existing_groups: None,
        });
        assert!(plan.is_empty());
    }

    #[test]
    fn two_authentik_groups_with_one_name_link_only_once() {
        let targets = [target(1, "Docs", &[1]), target(2, "docs", &[2])];
        let groups = [og(1, "Docs", None)];
        let current = BTreeMap::new();
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: true,
            existing_groups: None,
        });
        assert_eq!(plan.links.len(), 1);
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.creates.is_empty());
    }

    #[test]
    fn a_re_created_group_takes_over_the_outline_group_of_its_deleted_namesake() {
        // Outline's "Docs" is linked to gid(9), which was deleted; gid(1) is the new "Docs".
        let targets = [target(1, "Docs", &[1])];
        let groups = [og(1, "Docs", Some(gid(9)))];
        let current = BTreeMap::from([(ogid(1), BTreeSet::from([uid(2)]))]);
        let existing = BTreeSet::from([gid(1), gid(2)]);
        let plan = plan_membership(&PlanInput {
            targets: &targets,
            outline_groups: &groups,
            current: &current,
            auto_create: true,
            existing_groups: Some(&existing),
        });
        assert_eq!(plan.links.len(), 1, "{plan:?}");
        assert_eq!(plan.links[0].replaces, Some(gid(9)));
        assert!(plan.creates.is_empty());
        assert_eq!(plan.adds.len(), 1);
        assert_eq!(plan.removes.len(), 1, "the old members converge too");

        // The old group still exists (or the catalog is unknown): nothing is taken over.
        let existing = BTreeSet::from([gid(1), gid(9)]);
        for known in [Some(&existing), None] {
            let plan = plan_membership(&PlanInput {
                targets: &targets,
                outline_groups: &groups,
                current: &current,
                auto_create: true,
                existing_groups: known,
            });
            assert!(plan.links.is_empty() && plan.adds.is_empty() && plan.removes.is_empty());
            assert_eq!(plan.skipped.len(), 1);
        }
    }

    #[test]
    fn an_empty_group_waits_for_its_first_member_when_groups_are_created() {
        let targets = [target(1, "Fresh", &[])];
        let current = BTreeMap::new();
        for (auto, skipped) in [(true, 0), (false, 1)] {
            let plan = plan_membership(&PlanInput {
                targets: &targets,
                outline_groups: &[],
                current: &current,
                auto_create: auto,
                existing_groups: None,
            });
            assert!(plan.creates.is_empty());
            assert_eq!(plan.skipped.len(), skipped, "auto_create {auto}");
        }
    }

    /// A small world: up to 6 Authentik groups, 8 Outline groups (some linked by id, some by name, some
    /// unrelated), 10 users, random memberships on both sides.
    fn world() -> impl Strategy<
        Value = (
            Vec<GroupTarget>,
            Vec<OutlineGroup>,
            BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
            bool,
        ),
    > {
        let targets =
            prop::collection::vec((0u8..6, prop::collection::btree_set(0u8..10, 0..10)), 0..6);
        let outline = prop::collection::vec(
            (
                0u8..8,
                0u8..3,
                prop::collection::btree_map(0u8..10, any::<bool>(), 0..10),
            ),
            0..8,
        );
        (targets, outline, any::<bool>()).prop_map(|(targets, outline, auto)| {
            let mut seen = BTreeSet::new();
            let targets: Vec<GroupTarget> = targets
                .into_iter()
                .filter(|(n, _)| seen.insert(*n))
                .map(|(n, users)| GroupTarget {
                    group: gid(n),
                    name: GroupName::new(format!("G{n}")),
                    desired: users.into_iter().map(uid).collect(),
                })
                .collect();
            let mut groups = Vec::new();
            let mut current = BTreeMap::new();
            for (i, (n, kind, members)) in outline.into_iter().enumerate() {
                let i = i as u8;
                let (name, ext) = match kind {
                    0 => (format!("renamed-{i}"), Some(gid(n))),
                    1 => (format!("g{n}"), None),
                    _ => (format!("unrelated-{i}"), None),
                };
                let duplicate_link = ext.is_some()
                    && groups
                        .iter()
                        .any(|g: &OutlineGroup| g.linked_authentik_group() == ext);
                if duplicate_link
                    || groups
                        .iter()
                        .any(|g: &OutlineGroup| g.name == GroupName::new(name.clone()))
                {
                    continue;
                }
                groups.push(og(i, &name, ext));
                let m: BTreeSet<OutlineUserId> = members.into_keys().map(uid).collect();
                current.insert(ogid(i), m);
            }
            (targets, groups, current, auto)
        })
    }

    /// Applies a plan to a model of Outline, the way the sync layer applies it to the real one.
    fn apply(
        plan: &MembershipPlan,
        current: &mut BTreeMap<OutlineGroupId, BTreeSet<OutlineUserId>>,
    ) {
        for r in &plan.removes {
            current.entry(r.group.clone()).or_default().remove(&r.user);
        }
        for a in &plan.adds {
            let id = match &a.group {
                GroupRef::Existing(id) => id.clone(),
                GroupRef::ToCreate(g) => OutlineGroupId::new(format!("created-{g}")),
            };
            current.entry(id).or_default().insert(a.user.clone());
        }
    }

    proptest! {
        #[test]
        fn applying_the_plan_reaches_the_target((targets, groups, current, auto) in world()) {
            let plan = plan_membership(&PlanInput { targets: &targets, outline_groups: &groups, current: &current, auto_create: auto, existing_groups: None });
            let mut after = current.clone();
            apply(&plan, &mut after);
            let linked: BTreeMap<AuthentikGroupId, OutlineGroupId> = plan.links.iter().map(|l| (l.authentik_group.clone(), l.outline_group.clone()))
                .chain(groups.iter().filter_map(|g| g.linked_authentik_group().map(|a| (a, g.id.clone()))))
                .collect();
            for t in &targets {
                if let Some(og) = linked.get(&t.group) {
                    let members: BTreeSet<OutlineUserId> = after.get(og).cloned().unwrap_or_default();
                    prop_assert_eq!(&members, &t.desired, "group {}", t.name);
                } else if plan.creates.iter().any(|c| c.authentik_group == t.group) {
                    let id = OutlineGroupId::new(format!("created-{}", t.group));
                    let members: BTreeSet<OutlineUserId> = after.get(&id).cloned().unwrap_or_default();
                    prop_assert_eq!(&members, &t.desired);
                }
            }
            // A second plan over the result has no membership work left.
            let again = plan_membership(&PlanInput { targets: &targets, outline_groups: &groups, current: &after, auto_create: false, existing_groups: None });
            prop_assert!(again.removes.is_empty());
            prop_assert!(again.adds.iter().all(|a| !matches!(&a.group, GroupRef::Existing(id) if linked.values().any(|l| l == id))));
        }

        #[test]
        fn unlinked_groups_are_untouched_and_members_never_re_added((targets, groups, current, auto) in world()) {
            let plan = plan_membership(&PlanInput { targets: &targets, outline_groups: &groups, current: &current, auto_create: auto, existing_groups: None });
            let target_ids: BTreeSet<&AuthentikGroupId> = targets.iter().map(|t| &t.group).collect();
            let touchable: BTreeSet<OutlineGroupId> = groups.iter().filter(|g| {
                g.linked_authentik_group().is_some_and(|a| target_ids.contains(&a))
                    || plan.links.iter().any(|l| l.outline_group == g.id)
            }).map(|g| g.id.clone()).collect();
            for a in &plan.adds {
                if let GroupRef::Existing(id) = &a.group {
                    prop_assert!(touchable.contains(id));
                    prop_assert!(!current.get(id).is_some_and(|m| m.contains(&a.user)), "re-added an existing member");
                }
            }
            for r in &plan.removes {
                prop_assert!(touchable.contains(&r.group));
                prop_assert!(current.get(&r.group).is_some_and(|m| m.contains(&r.user)));
            }
            for r in &plan.renames {
                prop_assert!(touchable.contains(&r.outline_group));
            }
        }
    }
}
