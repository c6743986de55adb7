//! Outline accounts that follow Authentik: the role a person's groups give them (`ROLE_MAP`), suspension of
//! people deactivated or deleted in Authentik (`SUSPEND_DEACTIVATED`), and the guards that keep the bridge
//! from locking Outline out of itself: the API key's owner and the last admin are never demoted or
//! suspended, since either would disable the key and its webhooks (docs/src/upstream/outline.md §2.10).
//! Pure: the sync layer gathers the facts and applies the plan.

use serde::Serialize;

pub use crate::configuration::{OutlineRole, RoleDefault, RoleMap};
use crate::domain::identity::{Email, GroupName, OutlineUserId};

impl OutlineRole {
    pub fn parse(value: &str) -> Option<OutlineRole> {
        match value.trim().to_ascii_lowercase().as_str() {
            "guest" => Some(OutlineRole::Guest),
            "viewer" => Some(OutlineRole::Viewer),
            "member" => Some(OutlineRole::Member),
            "admin" => Some(OutlineRole::Admin),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            OutlineRole::Guest => "guest",
            OutlineRole::Viewer => "viewer",
            OutlineRole::Member => "member",
            OutlineRole::Admin => "admin",
        }
    }
}

impl RoleMap {
    /// Parses `group=role` pairs separated by commas. A group name may itself hold `=`: the role is after
    /// the last one. What looks like a typo is refused with the fix, since a misread map demotes people: a
    /// `;`, `|` or line break between pairs, two pairs run together (`a=admin b=viewer`), or one group named
    /// twice (names compare without case).
    pub fn parse(map: &str, default: &str) -> Result<RoleMap, String> {
        if let Some(sep) = map.chars().find(|c| matches!(c, ';' | '|' | '\n' | '\r')) {
            return Err(format!(
                "{sep:?} is not a separator: separate the pairs with commas, e.g. outline-admins=admin,outline-readers=viewer"
            ));
        }
        let mut groups: Vec<(GroupName, OutlineRole)> = Vec::new();
        for pair in map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, role)) = pair.rsplit_once('=') else {
                return Err(format!("{pair:?} is not group=role"));
            };
            let role = OutlineRole::parse(role).ok_or_else(|| {
                format!("{pair:?}: the role must be admin, member, viewer or guest")
            })?;
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("{pair:?} has no group name"));
            }
            if let Some((_, tail)) = name.rsplit_once('=') {
                let word: String = tail.chars().take_while(char::is_ascii_alphabetic).collect();
                if OutlineRole::parse(&word).is_some() {
                    return Err(format!(
                        "{pair:?} looks like two pairs: separate the pairs with commas"
                    ));
                }
            }
            let name = GroupName::new(name);
            if groups.iter().any(|(g, _)| g == &name) {
                return Err(format!(
                    "{:?} is named twice (group names compare without case): keep one",
                    name.as_str()
                ));
            }
            groups.push((name, role));
        }
        if groups.is_empty() {
            return Err("names no group".into());
        }
        let default = match default.trim().to_ascii_lowercase().as_str() {
            "keep" => RoleDefault::Keep,
            other => RoleDefault::Role(OutlineRole::parse(other).ok_or_else(|| {
                "ROLE_DEFAULT must be keep, admin, member, viewer or guest".to_string()
            })?),
        };
        Ok(RoleMap { groups, default })
    }

    /// The map in one normal form, to tell whether it changed since it was last applied.
    pub fn canonical(&self) -> String {
        let mut pairs: Vec<String> = self
            .groups
            .iter()
            .map(|(g, r)| format!("{}={}", g.folded(), r.as_str()))
            .collect();
        pairs.sort();
        let default = match self.default {
            RoleDefault::Keep => "keep",
            RoleDefault::Role(r) => r.as_str(),
        };
        format!("{};default={default}", pairs.join(","))
    }

    /// Whether a group's name is one of the mapped ones.
    pub fn names(&self, group: &GroupName) -> bool {
        self.groups.iter().any(|(g, _)| g == group)
    }

    /// The role a person's groups give: the highest mapped one, else the default; `None` means keep.
    pub fn role_for<'a>(
        &self,
        groups: impl IntoIterator<Item = &'a GroupName>,
    ) -> Option<OutlineRole> {
        let names: Vec<&GroupName> = groups.into_iter().collect();
        self.groups
            .iter()
            .filter(|(g, _)| names.contains(&g))
            .map(|(_, role)| *role)
            .max()
            .or(match self.default {
                RoleDefault::Keep => None,
                RoleDefault::Role(r) => Some(r),
            })
    }
}

/// The Authentik side of one Outline account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthentikState {
    /// Active, with every group that counts (direct, or inherited in `MEMBERSHIP=inherited`).
    Active(Vec<GroupName>),
    Inactive,
    Deleted,
}

/// What the planner knows of one Outline account.
#[derive(Debug, Clone)]
pub struct AccountFacts {
    pub user: OutlineUserId,
    pub email: Option<Email>,
    /// `None` for a role string this version does not know: such an account's role is left alone.
    pub role: Option<OutlineRole>,
    pub suspended: bool,
    pub authentik: AuthentikState,
    /// The bridge's record names the account: it made the account's suspension, and only then does a
    /// re-activation in Authentik activate it again. On an active account the entry is stale.
    pub suspended_by_bridge: bool,
}

/// The rules in force, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct AccountRules<'a> {
    pub role_map: Option<&'a RoleMap>,
    pub suspend_deactivated: bool,
    /// The owner of the bridge's API key.
    pub key_owner: &'a OutlineUserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleChange {
    pub user: OutlineUserId,
    pub email: Option<Email>,
    pub from: OutlineRole,
    pub to: OutlineRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRef {
    pub user: OutlineUserId,
    pub email: Option<Email>,
}

/// A change the guards held back, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRefusal {
    pub user: OutlineUserId,
    pub email: Option<Email>,
    /// `demote` or `suspend`.
    pub change: &'static str,
    /// `key_owner` or `last_admin`, the metric label.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountPlan {
    pub roles: Vec<RoleChange>,
    pub suspend: Vec<AccountRef>,
    pub activate: Vec<AccountRef>,
    pub refused: Vec<AccountRefusal>,
    /// Accounts found active that the bridge's record still names (someone activated them by hand): the
    /// record forgets them, so that a later suspension by hand is not taken for the bridge's.
    #[serde(skip)]
    pub forget: Vec<OutlineUserId>,
    /// Accounts the plan covered that need no suspension (active in Authentik, suspended already, or
    /// protected by a guard): if the suspension guard held one back earlier, it no longer waits.
    #[serde(skip)]
    pub settled: Vec<OutlineUserId>,
}

impl AccountPlan {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.suspend.is_empty() && self.activate.is_empty()
    }

    /// Role changes that take admin rights away: they count toward `MAX_REMOVALS`.
    pub fn admin_removals(&self) -> usize {
        self.roles
            .iter()
            .filter(|r| r.from == OutlineRole::Admin && r.to != OutlineRole::Admin)
            .count()
    }

    /// The plan without what the guards may hold back: demotions from admin and suspensions.
    pub fn without_demotions(&self) -> AccountPlan {
        AccountPlan {
            roles: self
                .roles
                .iter()
                .filter(|r| !(r.from == OutlineRole::Admin && r.to != OutlineRole::Admin))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The plan without any role lowered: for when the groups that give roles could not all be read.
    pub fn without_lowering(&self) -> AccountPlan {
        AccountPlan {
            roles: self
                .roles
                .iter()
                .filter(|r| r.to >= r.from)
                .cloned()
                .collect(),
            ..self.clone()
        }
    }
}

/// Plans roles, suspensions and activations for a set of accounts. `active_admins` is how many active
/// admins Outline has now; a change that would leave none is refused, and so is any demotion or
/// suspension of the key's owner.
pub fn plan_accounts(
    accounts: &[AccountFacts],
    rules: AccountRules<'_>,
    active_admins: usize,
) -> AccountPlan {
    let mut plan = AccountPlan::default();
    let mut losing_admin: Vec<(&AccountFacts, &'static str, Option<OutlineRole>)> = Vec::new();
    let mut admins = active_admins;
    for a in accounts {
        let who = || AccountRef {
            user: a.user.clone(),
            email: a.email.clone(),
        };
        let is_active_admin = a.role == Some(OutlineRole::Admin) && !a.suspended;
        if !a.suspended && a.suspended_by_bridge {
            plan.forget.push(a.user.clone());
        }
        let due_for_suspension = rules.suspend_deactivated
            && !a.suspended
            && matches!(
                a.authentik,
                AuthentikState::Inactive | AuthentikState::Deleted
            );
        if !due_for_suspension {
            plan.settled.push(a.user.clone());
        }
        match &a.authentik {
            AuthentikState::Inactive | AuthentikState::Deleted => {
                if rules.suspend_deactivated && !a.suspended {
                    if &a.user == rules.key_owner {
                        plan.refused.push(refusal(a, "suspend", "key_owner"));
                    } else if is_active_admin {
                        losing_admin.push((a, "suspend", None));
                    } else {
                        plan.suspend.push(who());
                    }
                }
            }
            AuthentikState::Active(groups) => {
                // An account this plan activates counts as active for its role change below.
                let activating = a.suspended && a.suspended_by_bridge && rules.suspend_deactivated;
                let suspended = a.suspended && !activating;
                if activating {
                    plan.activate.push(who());
                    if a.role == Some(OutlineRole::Admin) {
                        admins += 1;
                    }
                }
                // Outline changes no role of a suspended account (`promote` and `demote` both require an
                // active one, docs/src/upstream/outline.md §6.8): it is set when the account is active again.
                let (Some(map), Some(current), false) = (rules.role_map, a.role, suspended) else {
                    continue;
                };
                let Some(wanted) = map.role_for(groups) else {
                    continue;
                };
                if wanted == current {
                    continue;
                }
                if wanted < current && &a.user == rules.key_owner {
                    plan.refused.push(refusal(a, "demote", "key_owner"));
                } else if current == OutlineRole::Admin {
                    losing_admin.push((a, "demote", Some(wanted)));
                } else {
                    if wanted == OutlineRole::Admin {
                        admins += 1;
                    }
                    plan.roles.push(RoleChange {
                        user: a.user.clone(),
                        email: a.email.clone(),
                        from: current,
                        to: wanted,
                    });
                }
            }
        }
    }
    // Promotions and activations are counted first: an admin handed over within one plan is fine.
    for (a, change, wanted) in losing_admin {
        if admins <= 1 {
            plan.refused.push(refusal(a, change, "last_admin"));
            continue;
        }
        admins -= 1;
        match wanted {
            Some(to) => plan.roles.push(RoleChange {
                user: a.user.clone(),
                email: a.email.clone(),
                from: OutlineRole::Admin,
                to,
            }),
            None => plan.suspend.push(AccountRef {
                user: a.user.clone(),
                email: a.email.clone(),
            }),
        }
    }
    // A suspension the key-owner or last-admin guard refuses is not waiting for the suspension guard.
    plan.settled.extend(
        plan.refused
            .iter()
            .filter(|r| r.change == "suspend")
            .map(|r| r.user.clone()),
    );
    plan
}

fn refusal(a: &AccountFacts, change: &'static str, reason: &'static str) -> AccountRefusal {
    AccountRefusal {
        user: a.user.clone(),
        email: a.email.clone(),
        change,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn id(n: u32) -> OutlineUserId {
        OutlineUserId::new(format!("00000000-0000-4000-8000-{n:012}"))
    }

    fn map() -> RoleMap {
        RoleMap::parse("outline-admins=admin, outline-readers=viewer", "member").expect("parses")
    }

    fn account(n: u32, role: OutlineRole, authentik: AuthentikState) -> AccountFacts {
        AccountFacts {
            user: id(n),
            email: None,
            role: Some(role),
            suspended: false,
            authentik,
            suspended_by_bridge: false,
        }
    }

    fn in_groups(names: &[&str]) -> AuthentikState {
        AuthentikState::Active(names.iter().map(|n| GroupName::new(*n)).collect())
    }

    #[test]
    fn the_map_parses_and_names_its_errors() {
        let m = map();
        assert_eq!(m.groups.len(), 2);
        assert_eq!(m.default, RoleDefault::Role(OutlineRole::Member));
        assert_eq!(
            RoleMap::parse("a=b=admin", "keep")
                .expect("last = wins")
                .groups[0]
                .0,
            GroupName::new("a=b")
        );
        for bad in ["x", "x=owner", "=admin", ""] {
            assert!(RoleMap::parse(bad, "member").is_err(), "{bad:?}");
        }
        assert!(RoleMap::parse("x=admin", "boss").is_err());
    }

    /// Typos that would make a group nobody has, and so demote its people, are refused with the fix.
    #[test]
    fn typos_in_the_map_are_refused_with_the_fix() {
        for (bad, says) in [
            (
                "outline-admins=admin;outline-readers=viewer",
                "separate the pairs with commas",
            ),
            (
                "outline-admins=admin|outline-readers=viewer",
                "separate the pairs with commas",
            ),
            (
                "outline-admins=admin outline-readers=viewer",
                "looks like two pairs",
            ),
            ("a=admin,A=viewer", "named twice"),
            ("Admins=admin, admins =admin", "named twice"),
        ] {
            let err = RoleMap::parse(bad, "member").expect_err(bad);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let a = RoleMap::parse("B=viewer,a=admin", "member").expect("parses");
        let b = RoleMap::parse("A=admin, b=viewer", "member").expect("parses");
        assert_eq!(a.canonical(), b.canonical(), "order and case do not matter");
        let keep = RoleMap::parse("a=admin,b=viewer", "keep").expect("parses");
        assert_ne!(a.canonical(), keep.canonical(), "the default counts");
    }

    #[test]
    fn the_highest_mapped_role_wins_and_the_default_covers_the_rest() {
        let m = map();
        let g = |names: &[&str]| names.iter().map(|n| GroupName::new(*n)).collect::<Vec<_>>();
        assert_eq!(
            m.role_for(&g(&["Outline-Readers", "outline-admins"])),
            Some(OutlineRole::Admin)
        );
        assert_eq!(
            m.role_for(&g(&["outline-readers"])),
            Some(OutlineRole::Viewer)
        );
        assert_eq!(m.role_for(&g(&["staff"])), Some(OutlineRole::Member));
        let keep = RoleMap::parse("outline-admins=admin", "keep").expect("parses");
        assert_eq!(keep.role_for(&g(&["staff"])), None);
    }

    #[test]
    fn the_key_owner_and_the_last_admin_are_never_demoted_or_suspended() {
        let owner = id(1);
        let rules = AccountRules {
            role_map: Some(&map()),
            suspend_deactivated: true,
            key_owner: &owner,
        };
        let accounts = vec![
            account(1, OutlineRole::Admin, in_groups(&["staff"])),
            account(1, OutlineRole::Admin, AuthentikState::Deleted),
        ];
        let plan = plan_accounts(&accounts, rules, 2);
        assert!(plan.roles.is_empty() && plan.suspend.is_empty());
        let reasons: Vec<_> = plan.refused.iter().map(|r| (r.change, r.reason)).collect();
        assert_eq!(
            reasons,
            vec![("demote", "key_owner"), ("suspend", "key_owner")]
        );

        // The only active admin (here not the key's owner) is neither demoted nor suspended.
        for state in [in_groups(&["staff"]), AuthentikState::Inactive] {
            let plan = plan_accounts(&[account(2, OutlineRole::Admin, state)], rules, 1);
            assert!(plan.roles.is_empty() && plan.suspend.is_empty());
            assert_eq!(plan.refused[0].reason, "last_admin");
        }

        // With a new admin promoted in the same plan, the old one may go.
        let accounts = vec![
            account(2, OutlineRole::Admin, in_groups(&["staff"])),
            account(3, OutlineRole::Member, in_groups(&["outline-admins"])),
        ];
        let plan = plan_accounts(&accounts, rules, 1);
        assert_eq!(plan.roles.len(), 2, "{plan:?}");
        assert!(plan.refused.is_empty());
        assert_eq!(plan.admin_removals(), 1);
    }

    #[test]
    fn only_suspensions_the_bridge_made_are_undone() {
        let owner = id(1);
        let rules = AccountRules {
            role_map: None,
            suspend_deactivated: true,
            key_owner: &owner,
        };
        let mut by_bridge = account(2, OutlineRole::Member, in_groups(&[]));
        by_bridge.suspended = true;
        by_bridge.suspended_by_bridge = true;
        let mut by_hand = account(3, OutlineRole::Member, in_groups(&[]));
        by_hand.suspended = true;
        let plan = plan_accounts(&[by_bridge, by_hand], rules, 1);
        assert_eq!(plan.activate.len(), 1);
        assert_eq!(plan.activate[0].user, id(2));
        let off = AccountRules {
            suspend_deactivated: false,
            ..rules
        };
        assert!(plan_accounts(
            &[account(4, OutlineRole::Member, AuthentikState::Deleted)],
            off,
            1
        )
        .is_empty());
    }

    proptest! {
        /// `ROLE_MAP` and `ROLE_DEFAULT` come from the environment: any text parses or gives an error, and
        /// what parses names only roles Outline has.
        #[test]
        fn the_role_map_parser_never_panics(map in ".{0,80}", default in ".{0,12}") {
            if let Ok(parsed) = RoleMap::parse(&map, &default) {
                prop_assert!(!parsed.groups.is_empty());
                prop_assert!(parsed.groups.iter().all(|(g, _)| !g.as_str().trim().is_empty()));
                prop_assert!(!map.contains(';') && !map.contains('|'), "a separator typo was accepted");
                let names: BTreeSet<String> = parsed.groups.iter().map(|(g, _)| g.folded()).collect();
                prop_assert_eq!(names.len(), parsed.groups.len(), "a group named twice");
            }
        }

        /// Any two well-formed pairs joined by a wrong separator are refused, never read as one group.
        #[test]
        fn two_pairs_joined_by_a_wrong_separator_are_refused(
            a in "[a-z][a-z-]{0,10}", b in "[a-z][a-z-]{0,10}",
            ra in 0usize..4, rb in 0usize..4, sep in prop::sample::select(vec![";", "|", " ", "\n", " ; "]),
        ) {
            let roles = ["admin", "member", "viewer", "guest"];
            let map = format!("{a}={}{sep}{b}={}", roles[ra], roles[rb]);
            prop_assert!(RoleMap::parse(&map, "member").is_err(), "{:?} accepted", map);
        }

        /// Whatever the accounts, a plan never demotes or suspends the key's owner, and never leaves Outline
        /// without an active admin when it had one.
        #[test]
        fn a_plan_never_locks_outline_out(
            accounts in prop::collection::vec((0u32..6, 0usize..4, 0usize..3, any::<bool>(), 0usize..3), 0..12)
        ) {
            let owner = id(0);
            let roles = [OutlineRole::Guest, OutlineRole::Viewer, OutlineRole::Member, OutlineRole::Admin];
            let groups = [vec![], vec!["outline-admins"], vec!["outline-readers"]];
            let mut seen = BTreeSet::new();
            let facts: Vec<AccountFacts> = accounts
                .into_iter()
                .filter(|(n, ..)| seen.insert(*n))
                .map(|(n, r, state, suspended, g)| {
                    let authentik = match state {
                        0 => in_groups(&groups[g]),
                        1 => AuthentikState::Inactive,
                        _ => AuthentikState::Deleted,
                    };
                    AccountFacts { suspended, suspended_by_bridge: suspended, ..account(n, roles[r], authentik) }
                })
                .collect();
            let admins = facts.iter().filter(|a| a.role == Some(OutlineRole::Admin) && !a.suspended).count();
            let m = map();
            let plan = plan_accounts(&facts, AccountRules { role_map: Some(&m), suspend_deactivated: true, key_owner: &owner }, admins);
            prop_assert!(!plan.suspend.iter().any(|s| s.user == owner));
            prop_assert!(!plan.roles.iter().any(|r| r.user == owner && r.to < r.from));
            let mut after: std::collections::BTreeMap<OutlineUserId, (Option<OutlineRole>, bool)> =
                facts.iter().map(|a| (a.user.clone(), (a.role, a.suspended))).collect();
            for r in &plan.roles { if let Some(e) = after.get_mut(&r.user) { e.0 = Some(r.to); } }
            for s in &plan.suspend { if let Some(e) = after.get_mut(&s.user) { e.1 = true; } }
            for s in &plan.activate { if let Some(e) = after.get_mut(&s.user) { e.1 = false; } }
            let left = after.values().filter(|(r, s)| *r == Some(OutlineRole::Admin) && !s).count();
            if admins > 0 {
                prop_assert!(left >= 1, "{plan:?}");
            }
        }
    }
}
