//! The order in which Authentik changes reached the bridge, and one lock per Authentik group.
//!
//! A full pass reads everything first and writes afterwards, minutes later for a large directory, while push
//! jobs keep running. Writing its early plan would undo what they pushed meanwhile. So every accepted group
//! or user event ticks this clock before its job is queued, and the pass notes the tick at which it started
//! reading. Before it writes a group, under that group's lock (which group jobs hold too), it asks whether
//! the group changed since; if so it leaves the group to a fresh group job. The webhook arrives only after
//! Authentik committed the change (docs/src/upstream/authentik.md §4.5), so a read that starts after a tick
//! sees that tick's change.
//!
//! Accounts (roles, suspensions) follow the same rule, per person: a user event ticks that person, and an
//! event that may change what roles groups give (a `ROLE_MAP` group changed, renamed or deleted) ticks the
//! roles. A pass makes an account change only if neither ticked since it read the account; otherwise it hands
//! the person to a fresh user job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::domain::{AuthentikGroupId, AuthentikUserId};

/// A point in the order of accepted changes.
pub type Tick = u64;

/// Lock entries no longer held are dropped once the table grows past this.
const LOCK_TABLE_PRUNE_AT: usize = 1024;
/// Per-person ticks are thinned once this many people have had events.
const PEOPLE_PRUNE_AT: usize = 100_000;

#[derive(Default)]
pub struct ChangeClock {
    now: AtomicU64,
    /// The last tick of each group's own events: renames, and member changes made on the group side.
    groups: Mutex<HashMap<AuthentikGroupId, Tick>>,
    /// The last tick of any user-side event, which can change any group's member list without a group event
    /// (docs/src/upstream/authentik.md §4.4).
    users: AtomicU64,
    /// The last tick of each person's own events.
    people: Mutex<HashMap<AuthentikUserId, Tick>>,
    /// The last tick of an event that may change the roles groups give.
    roles: AtomicU64,
    /// Ticks at or below this were dropped from `people`.
    pruned_below: AtomicU64,
}

/// One async lock per Authentik group. Each sink has its own table, so a slow sink never holds up the other's
/// writes to the same group.
#[derive(Default)]
pub struct GroupLocks {
    locks: Mutex<HashMap<AuthentikGroupId, Arc<tokio::sync::Mutex<()>>>>,
}

impl GroupLocks {
    /// Holds the group's lock until the guard drops: group jobs and a pass's writes to one group take turns.
    pub async fn lock(&self, id: &AuthentikGroupId) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            if locks.len() > LOCK_TABLE_PRUNE_AT {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(id.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

impl ChangeClock {
    pub fn new() -> ChangeClock {
        ChangeClock::default()
    }

    pub fn now(&self) -> Tick {
        self.now.load(Ordering::SeqCst)
    }

    pub fn group_changed(&self, id: &AuthentikGroupId) {
        let tick = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.insert(id.clone(), tick);
    }

    pub fn user_changed(&self, pk: AuthentikUserId) {
        let tick = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.users.fetch_max(tick, Ordering::SeqCst);
        let mut people = self.people.lock().unwrap_or_else(|e| e.into_inner());
        if people.len() > PEOPLE_PRUNE_AT {
            // Only a pass that began before the oldest kept tick could still ask about a pruned person, and
            // for it `account_changed_since` answers yes for everyone.
            let floor = people.values().copied().min().unwrap_or(0);
            people.retain(|_, t| *t > floor);
            self.pruned_below.fetch_max(floor, Ordering::SeqCst);
        }
        people.insert(pk, tick);
    }

    /// A change that may alter the roles groups give: a `ROLE_MAP` group's members, name or existence.
    pub fn roles_changed(&self) {
        let tick = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.roles.fetch_max(tick, Ordering::SeqCst);
    }

    /// Whether an event that may change this person's account (their own, or one of the role groups')
    /// arrived after `since`.
    pub fn account_changed_since(&self, pk: AuthentikUserId, since: Tick) -> bool {
        if self.roles.load(Ordering::SeqCst) > since
            || self.pruned_below.load(Ordering::SeqCst) > since
        {
            return true;
        }
        let people = self.people.lock().unwrap_or_else(|e| e.into_inner());
        people.get(&pk).is_some_and(|t| *t > since)
    }

    /// Whether an event that may change this group's members or name arrived after `since`.
    pub fn changed_since(&self, id: &AuthentikGroupId, since: Tick) -> bool {
        let group = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0);
        group.max(self.users.load(Ordering::SeqCst)) > since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gid(n: u8) -> AuthentikGroupId {
        AuthentikGroupId::parse(&format!("{:032x}", u128::from(n) + 1)).expect("uuid")
    }

    #[test]
    fn group_and_user_changes_are_seen_after_the_tick_they_follow() {
        let clock = ChangeClock::new();
        let start = clock.now();
        assert!(!clock.changed_since(&gid(1), start));
        clock.group_changed(&gid(1));
        assert!(clock.changed_since(&gid(1), start));
        assert!(!clock.changed_since(&gid(2), start), "another group");
        let later = clock.now();
        assert!(!clock.changed_since(&gid(1), later));
        clock.user_changed(AuthentikUserId(7));
        assert!(
            clock.changed_since(&gid(2), later),
            "a user change may touch any group"
        );
    }

    #[test]
    fn an_account_changed_by_its_own_event_or_by_the_role_groups() {
        let clock = ChangeClock::new();
        let start = clock.now();
        let (one, two) = (AuthentikUserId(1), AuthentikUserId(2));
        clock.user_changed(one);
        assert!(clock.account_changed_since(one, start));
        assert!(!clock.account_changed_since(two, start), "another person");
        let later = clock.now();
        assert!(!clock.account_changed_since(one, later));
        clock.group_changed(&gid(1));
        assert!(
            !clock.account_changed_since(one, later),
            "a group that gives no role"
        );
        clock.roles_changed();
        assert!(clock.account_changed_since(two, later), "the role groups");
    }

    #[tokio::test]
    async fn one_group_lock_at_a_time() {
        let locks = Arc::new(GroupLocks::default());
        let held = locks.lock(&gid(1)).await;
        let other = locks.lock(&gid(2)).await;
        let l = locks.clone();
        let waiter = tokio::spawn(async move { l.lock(&gid(1)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.expect("the lock is handed over");
        drop(other);
    }
}
