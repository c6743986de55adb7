//! `INVITE_MEMBERS`: members of managed groups who have no Outline account yet are invited, with the role
//! `ROLE_MAP` gives them, and then added to their groups, so that their first sign-in finds everything in
//! place. The sign-in claims the invited account by email (docs/src/upstream/outline.md §6.8).
//!
//! The book of people waiting is memory, but nothing in it is lost by a restart: it is what every pass finds
//! again (members without an account), and the start-up pass refills it. Group jobs add to it between
//! passes. Outline allows 50 invite requests an hour; the book sends as many as the hour allows, keeps the
//! rest, and its pump wakes the job when the next request may go.
//!
//! The requests of the last hour are counted in the store in `STATE_DIR`, shared by `serve` and the CLI, so
//! neither a restart nor a `reconcile` beside `serve` sends more than 50 in any hour. Without
//! `STATE_DIR` a restart forgets them; the new process then invites nothing before its first pass has ended,
//! and a 429 from Outline still stops every request until its `Retry-After`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clients::UpstreamError;
use crate::configuration::Settings;
use crate::domain::{AuthentikUserId, DesiredMember, UserSnapshot};
use crate::metrics::Metrics;
use crate::runtime::job::SyncError;
use crate::sinks::outline::account_plan::OutlineRole;
use crate::sinks::outline::accounts::{counted_groups, group_names, AccountSync};
use crate::sinks::outline::client::Invitation;
use crate::sinks::outline::invite_window::{
    unix_ms_now, UnixMs, WindowLog, WindowRule, INVITES_PER_REQUEST, REQUESTS_PER_WINDOW, WINDOW,
};
use crate::sinks::outline::OutlineClient;
use crate::source::reader::SnapshotReader;
use crate::store::{Remembered, StateDocument};

pub struct InviteBook {
    pub enabled: bool,
    send_email: bool,
    state: Mutex<BookState>,
    /// The `users.invite` requests of the last hour.
    window: StateDocument<WindowLog>,
    /// Invitations Outline refused on their own (a name or address it will not take), by address with the
    /// name that was refused: set aside, and not sent again with that name, so a bad entry never spends the
    /// hour's requests nor delays anyone else; a corrected name or address in Authentik is tried again. In
    /// the store with `STATE_DIR`, so a restart does not send them again.
    set_aside: Remembered<String, String>,
    /// False until the first pass has ended, when a restart forgot the last hour's requests (no `STATE_DIR`).
    ready: AtomicBool,
    /// Rung when people are added or a send ends, for the pump.
    pub(super) wake: Notify,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct BookState {
    /// By lowercased email, as Outline compares invitations.
    pending: BTreeMap<String, Waiting>,
    /// Who this process invited, and when. A job that read Outline before the invitation would note them
    /// again and spend a request on an `unsent` answer, so they are not taken back until a pass that read
    /// Outline after the invitation still finds them without an account.
    invited: BTreeMap<String, std::time::Instant>,
    /// Sends that failed in a row for everyone (an outage, a key without `users:write`), and when the next
    /// may start.
    failures: u32,
    retry_at: Option<Instant>,
}

struct Waiting {
    member: DesiredMember,
    noted: std::time::Instant,
}

/// What a dry run shows: who would be invited, and how much of the hour's allowance is left.
#[derive(Debug, Clone, Serialize)]
pub struct InvitePreview {
    pub pending: usize,
    pub emails: Vec<String>,
    pub requests_left_this_hour: usize,
    pub per_request: usize,
    /// How many of `pending` the allowance lets out now; the rest wait for the next hour.
    pub sendable_now: usize,
    /// Invited by this run (the CLI's `reconcile`; `serve` invites from its own job).
    pub invited_now: usize,
}

impl InviteBook {
    /// The name of the request count in the store, and the JSON file an earlier version kept it in.
    pub const NAME: &'static str = "invite-requests";
    pub const FILE_NAME: &'static str = "invite-requests.json";
    /// The store's kind for the invitations set aside.
    pub const SET_ASIDE: &'static str = "invite_set_aside";

    const RULE: WindowRule = WindowRule {
        limit: REQUESTS_PER_WINDOW,
        window: WINDOW,
    };

    pub fn new(
        settings: &Settings,
        window: StateDocument<WindowLog>,
        set_aside: Remembered<String, String>,
        metrics: Arc<Metrics>,
    ) -> InviteBook {
        InviteBook {
            enabled: settings.invite_members && settings.outline.is_some(),
            send_email: settings.invite_email,
            state: Mutex::new(BookState::default()),
            ready: AtomicBool::new(window.is_persistent()),
            window,
            set_aside,
            wake: Notify::new(),
            metrics,
        }
    }

    pub async fn check_writable(&self) -> Result<(), crate::store::RecordError> {
        if self.enabled {
            self.window.check_writable().await?;
        }
        Ok(())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The requests the hour has left. A count that cannot be read allows none: better a late invitation
    /// than a burst past Outline's limit.
    async fn requests_left(&self) -> usize {
        let left = match self.window.read().await {
            Ok(mut w) => w.available(Self::RULE, unix_ms_now()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the invite request count; no invitation is sent");
                0
            }
        };
        self.metrics.invite_requests_left.set(left as i64);
        left
    }

    /// Spends one request of the hour, if one is left (one step, shared with other processes).
    async fn take_request(&self) -> bool {
        let now = unix_ms_now();
        let taken = self
            .window
            .change(move |w| {
                let taken = w.take(Self::RULE, now);
                (taken, taken)
            })
            .await;
        match taken {
            Ok(taken) => taken,
            Err(e) => {
                tracing::error!(error = %e, "cannot count an invite request; no invitation is sent");
                false
            }
        }
    }

    async fn block(&self, wait: Option<Duration>) {
        let now = unix_ms_now();
        let _ = self
            .window
            .change(move |w| {
                w.block(Self::RULE, now, wait);
                ((), true)
            })
            .await;
    }

    async fn next_free(&self) -> Option<UnixMs> {
        match self.window.read().await {
            Ok(mut w) => w.next_free(Self::RULE, unix_ms_now()),
            // Unreadable: look again in a minute.
            Err(_) => Some(unix_ms_now() + 60_000),
        }
    }

    fn publish(&self) {
        let pending = self.state().pending.len();
        self.metrics.invites_pending.set(pending as i64);
    }

    /// Members a group job found without an Outline account.
    pub fn note(&self, members: &[DesiredMember]) {
        if !self.enabled || members.is_empty() {
            return;
        }
        wait_for_invitation(&mut self.state(), members);
        tracing::debug!(
            people = members.len(),
            ready = self.ready.load(Ordering::SeqCst),
            "members without an Outline account noted, waiting for an invitation"
        );
        self.publish();
        self.wake.notify_one();
    }

    /// A pass sees every managed member as they were when it read them (`read_at`), so the book becomes
    /// what it found, plus what group jobs noted since: people who got an account meanwhile, or left their
    /// groups, drop out.
    pub fn replace(&self, members: &[DesiredMember], read_at: std::time::Instant) {
        if !self.enabled {
            return;
        }
        self.ready.store(true, Ordering::SeqCst);
        {
            let mut state = self.state();
            let noted_since: Vec<(String, Waiting)> = std::mem::take(&mut state.pending)
                .into_iter()
                .filter(|(_, w)| w.noted >= read_at)
                .collect();
            state.invited.retain(|_, at| *at >= read_at);
            wait_for_invitation(&mut state, members);
            state.pending.extend(noted_since);
        }
        self.publish();
        self.wake.notify_one();
    }

    pub async fn preview(&self, members: &[DesiredMember]) -> InvitePreview {
        let left = self.requests_left().await;
        let mut emails: Vec<String> = members.iter().map(|m| m.email.to_string()).collect();
        emails.sort();
        emails.dedup();
        InvitePreview {
            pending: emails.len(),
            sendable_now: emails.len().min(left * INVITES_PER_REQUEST),
            emails,
            requests_left_this_hour: left,
            per_request: INVITES_PER_REQUEST,
            invited_now: 0,
        }
    }

    /// Invited: out of the book, and not taken back from reads made before the invitation.
    fn invited(&self, keys: &[String]) {
        let now = std::time::Instant::now();
        {
            let mut state = self.state();
            for k in keys {
                state.pending.remove(k);
                state.invited.insert(k.clone(), now);
            }
        }
        self.publish();
    }

    fn forget(&self, keys: &[String]) {
        {
            let mut state = self.state();
            for k in keys {
                state.pending.remove(k);
            }
        }
        self.publish();
    }

    async fn refuse(&self, key: &str, name: &str) {
        self.state().pending.remove(key);
        self.set_aside.insert(&key.to_string(), name.to_string());
        if let Err(e) = self.set_aside.save().await {
            tracing::error!(error = %e, "cannot keep a refused invitation in the store; it is set aside until the bridge restarts");
        }
        self.publish();
    }

    fn was_refused(&self, key: &str, name: &str) -> bool {
        self.set_aside
            .get(&key.to_string())
            .is_some_and(|n| n == name)
    }

    fn count(&self, result: &str, n: usize) {
        if n > 0 {
            self.metrics
                .invites
                .with_label_values(&[result])
                .inc_by(n as u64);
        }
    }

    /// When the pump should next queue a send: `None` when nobody waits (or, after a restart that forgot
    /// the hour's requests, before the first pass has ended), else the time the allowance and any backoff
    /// after failed sends permit (now, or later).
    pub(super) async fn next_send(&self, now: Instant) -> Option<Instant> {
        if !self.ready.load(Ordering::SeqCst) {
            return None;
        }
        let retry_at = {
            let state = self.state();
            if state.pending.is_empty() {
                return None;
            }
            state.retry_at
        };
        let free = match self.next_free().await {
            Some(at) => now + Duration::from_millis(at.saturating_sub(unix_ms_now())),
            None => now,
        };
        Some(retry_at.map_or(free, |r| r.max(free)))
    }

    /// A send failed as a whole: the next waits a minute, doubling to an hour.
    fn failed(&self, now: Instant) {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        let wait = Duration::from_secs(60)
            .saturating_mul(1 << state.failures.saturating_sub(1).min(6))
            .min(WINDOW);
        state.retry_at = Some(now + wait);
    }

    fn succeeded(&self) {
        let mut state = self.state();
        state.failures = 0;
        state.retry_at = None;
    }
}

fn wait_for_invitation(state: &mut BookState, members: &[DesiredMember]) {
    let now = std::time::Instant::now();
    for m in members {
        if state.invited.contains_key(m.email.folded()) {
            continue;
        }
        state.pending.insert(
            m.email.folded().to_string(),
            Waiting {
                member: m.clone(),
                noted: now,
            },
        );
    }
}

/// What sending invitations reads besides the book: Authentik (fresh users, the groups) and `ROLE_MAP`.
pub struct InviteSender<'a> {
    pub invites: &'a InviteBook,
    pub reader: &'a SnapshotReader,
    pub accounts: &'a AccountSync,
    pub index: &'a crate::sinks::outline::index::OutlineIndex,
}

/// Sends the invitations the hour allows, in email order, and returns who was invited (or whom Outline
/// already had): their user jobs put them in their groups and set their role.
/// On an error, those invited before it are still returned with it, so that they are placed.
pub async fn send_invites(
    engine: &InviteSender<'_>,
    outline: &OutlineClient,
) -> (Vec<AuthentikUserId>, Result<(), SyncError>) {
    let book = &engine.invites;
    let mut invited = Vec::new();
    let backing_off = book.state().retry_at.is_some_and(|r| r > Instant::now());
    if !book.enabled || backing_off {
        return (invited, Ok(()));
    }
    let result = send_batches(engine, outline, &mut invited).await;
    match &result {
        Ok(()) => book.succeeded(),
        Err(_) => book.failed(Instant::now()),
    }
    book.requests_left().await;
    // The Outline user index now lacks the new accounts.
    if !invited.is_empty() {
        engine.index.users.invalidate(&()).await;
    }
    book.publish();
    book.wake.notify_one();
    (invited, result)
}

/// One `users.invite` request's people.
struct Batch {
    keys: Vec<String>,
    invitations: Vec<Invitation>,
    people: Vec<AuthentikUserId>,
}

async fn send_batches(
    engine: &InviteSender<'_>,
    outline: &OutlineClient,
    invited: &mut Vec<AuthentikUserId>,
) -> Result<(), SyncError> {
    let book = &engine.invites;
    loop {
        if book.requests_left().await == 0 {
            return Ok(());
        }
        let next: Vec<(String, DesiredMember)> = book
            .state()
            .pending
            .iter()
            .take(INVITES_PER_REQUEST)
            .map(|(k, w)| (k.clone(), w.member.clone()))
            .collect();
        if next.is_empty() {
            return Ok(());
        }
        let mut batch = Batch {
            keys: Vec::new(),
            invitations: Vec::new(),
            people: Vec::new(),
        };
        let mut dropped = Vec::new();
        for (key, m) in &next {
            match engine.reader.fresh_user(m.pk).await? {
                // Still active, with the address the group job saw, and still in a managed group.
                Some(u)
                    if u.is_active
                        && u.email.as_ref() == Some(&m.email)
                        && in_managed_group(engine, &u).await? =>
                {
                    let name = display_name(&u);
                    if book.was_refused(key, &name) {
                        dropped.push(key.clone());
                        continue;
                    }
                    batch.keys.push(key.clone());
                    batch.invitations.push(Invitation {
                        email: m.email.clone(),
                        name,
                        role: invite_role(engine, &u).await?.as_str(),
                    });
                    batch.people.push(m.pk);
                }
                // Deleted, deactivated, re-addressed or gone from the groups since: the next pass finds them
                // if they still count.
                _ => dropped.push(key.clone()),
            }
        }
        book.count("dropped", dropped.len());
        book.forget(&dropped);
        if batch.keys.is_empty() {
            continue;
        }
        // A batch Outline refuses as a whole (one name or address it will not take) is split until the
        // entry it refuses is alone; that one is set aside, the others go. A 400 is about the entries it was
        // given, never about everyone: only another failure (a 403 for the key's scope or role, an outage)
        // stops the send and backs off.
        let mut parts = vec![batch];
        while let Some(part) = parts.pop() {
            if !book.take_request().await {
                return Ok(());
            }
            match outline.invite(&part.invitations, !book.send_email).await {
                Ok(answer) => {
                    book.count("sent", answer.created.len());
                    book.count("already_there", answer.already_there);
                    book.invited(&part.keys);
                    tracing::info!(
                        invited = answer.created.len(),
                        already_there = answer.already_there,
                        "invited to Outline: members of managed groups without an account"
                    );
                    invited.extend(part.people);
                }
                Err(e) if e.status() == Some(429) => {
                    let wait = match &e {
                        UpstreamError::Throttled { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    book.block(wait).await;
                    book.count("throttled", book.state().pending.len());
                    tracing::warn!(error = %e, waiting_s = wait.map(|w| w.as_secs()), "Outline's invite limit is spent; the invitations stay queued");
                    return Ok(());
                }
                Err(e) if e.status() == Some(400) && part.keys.len() == 1 => {
                    book.count("refused", 1);
                    book.refuse(&part.keys[0], &part.invitations[0].name).await;
                    tracing::warn!(email = %part.invitations[0].email, error = %e, "Outline refused this invitation; it is set aside and not sent again until the person's name or address changes in Authentik");
                }
                // 400 is about the entries; a 403 (the key's scope or role) is about every request.
                Err(e) if e.status() == Some(400) => {
                    let half = part.keys.len() / 2;
                    let mut first = part;
                    let second = Batch {
                        keys: first.keys.split_off(half),
                        invitations: first.invitations.split_off(half),
                        people: first.people.split_off(half),
                    };
                    parts.push(second);
                    parts.push(first);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Whether the person is in a managed group now (or below one, with `MEMBERSHIP=inherited`).
async fn in_managed_group(engine: &InviteSender<'_>, u: &UserSnapshot) -> Result<bool, SyncError> {
    let reader = &engine.reader;
    let catalog = reader.full_catalog().await?;
    let mut counted = counted_groups(&catalog, &u.groups, reader.membership);
    Ok(counted.any(|g| reader.is_managed(g)))
}

/// Outline's invitation takes a name; Authentik's display name, else the username, else the address.
fn display_name(u: &UserSnapshot) -> String {
    u.name
        .clone()
        .or_else(|| u.username.as_deref().map(str::to_string))
        .or_else(|| u.email.as_ref().map(|e| e.to_string()))
        .unwrap_or_default()
}

/// The role `ROLE_MAP` gives, else `member`. Outline invites no guest (it makes them a member); the user
/// job that follows sets any role the invitation could not.
async fn invite_role(
    engine: &InviteSender<'_>,
    u: &UserSnapshot,
) -> Result<OutlineRole, SyncError> {
    let Some(map) = &engine.accounts.role_map else {
        return Ok(OutlineRole::Member);
    };
    let catalog = engine.reader.full_catalog().await?;
    let groups = group_names(&catalog, &u.groups, engine.reader.membership);
    Ok(map.role_for(&groups).unwrap_or(OutlineRole::Member))
}
