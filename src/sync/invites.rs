//! `INVITE_MEMBERS`: members of managed groups who have no Outline account yet are invited, with the role
//! `ROLE_MAP` gives them, and then added to their groups, so that their first sign-in finds everything in
//! place. The sign-in claims the invited account by email (docs/upstream/outline.md §6.8).
//!
//! The book of people waiting is memory, but nothing in it is lost by a restart: it is what every pass finds
//! again (members without an account), and the start-up pass refills it. Group jobs add to it between
//! passes. Outline allows 50 invite requests an hour; the book sends as many as the hour allows, keeps the
//! rest, and its pump wakes the job when the next request may go.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::accounts::group_names;
use super::engine::{SyncEngine, SyncError, SyncReport};
use super::jobs::{JobKey, JobOutcome};
use super::queue::JobQueue;
use crate::clients::outline::Invitation;
use crate::clients::{Lane, OutlineClient, UpstreamError};
use crate::configuration::Settings;
use crate::domain::accounts::OutlineRole;
use crate::domain::invites::{RequestWindow, INVITES_PER_REQUEST, REQUESTS_PER_WINDOW, WINDOW};
use crate::domain::{AuthentikUserId, DesiredMember, UserSnapshot};
use crate::metrics::Metrics;

pub struct InviteBook {
    pub enabled: bool,
    send_email: bool,
    /// By lowercased email, as Outline compares invitations.
    pending: Mutex<BTreeMap<String, DesiredMember>>,
    window: Mutex<RequestWindow>,
    /// Rung when people are added or a send ends, for the pump.
    wake: Notify,
    metrics: Arc<Metrics>,
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
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> InviteBook {
        InviteBook {
            enabled: settings.invite_members && settings.outline.is_some(),
            send_email: settings.invite_email,
            pending: Mutex::new(BTreeMap::new()),
            window: Mutex::new(RequestWindow::new(REQUESTS_PER_WINDOW, WINDOW)),
            wake: Notify::new(),
            metrics,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DesiredMember>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn window(&self) -> std::sync::MutexGuard<'_, RequestWindow> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, pending: usize) {
        self.metrics.invites_pending.set(pending as i64);
        let left = self.window().available(Instant::now());
        self.metrics.invite_requests_left.set(left as i64);
    }

    /// Members a group job found without an Outline account.
    pub fn note(&self, members: &[DesiredMember]) {
        if !self.enabled || members.is_empty() {
            return;
        }
        let n = {
            let mut pending = self.pending();
            for m in members {
                pending.insert(m.email.folded().to_string(), m.clone());
            }
            pending.len()
        };
        self.publish(n);
        self.wake.notify_one();
    }

    /// A pass sees every managed member, so the book becomes what it found: people who got an account
    /// meanwhile, or left their groups, drop out.
    pub fn replace(&self, members: &[DesiredMember]) {
        if !self.enabled {
            return;
        }
        let n = {
            let mut pending = self.pending();
            *pending = members
                .iter()
                .map(|m| (m.email.folded().to_string(), m.clone()))
                .collect();
            pending.len()
        };
        self.publish(n);
        self.wake.notify_one();
    }

    pub fn preview(&self, members: &[DesiredMember]) -> InvitePreview {
        let left = self.window().available(Instant::now());
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

    fn forget(&self, emails: &[String]) {
        let n = {
            let mut pending = self.pending();
            for e in emails {
                pending.remove(e);
            }
            pending.len()
        };
        self.publish(n);
    }

    fn count(&self, result: &str, n: usize) {
        if n > 0 {
            self.metrics
                .invites
                .with_label_values(&[result])
                .inc_by(n as u64);
        }
    }

    /// When the pump should next queue a send: `None` when nobody waits, else the time the allowance
    /// permits (now, or later).
    fn next_send(&self, now: Instant) -> Option<Instant> {
        if self.pending().is_empty() {
            return None;
        }
        Some(self.window().next_free(now).unwrap_or(now))
    }
}

/// Sends the invitations the hour allows, oldest address first in email order, and returns who was invited
/// (or whom Outline already had): their user jobs put them in their groups and set their role.
pub async fn send_invites(
    engine: &SyncEngine,
    outline: &OutlineClient,
) -> Result<Vec<AuthentikUserId>, SyncError> {
    let book = &engine.invites;
    let mut invited = Vec::new();
    if !book.enabled {
        return Ok(invited);
    }
    let result = send_batches(engine, outline, &mut invited).await;
    // The Outline user index now lacks the new accounts.
    if !invited.is_empty() {
        engine.reader.caches.outline_users.invalidate(&()).await;
    }
    let n = book.pending().len();
    book.publish(n);
    book.wake.notify_one();
    result.map(|()| invited)
}

async fn send_batches(
    engine: &SyncEngine,
    outline: &OutlineClient,
    invited: &mut Vec<AuthentikUserId>,
) -> Result<(), SyncError> {
    let book = &engine.invites;
    loop {
        if book.window().available(Instant::now()) == 0 {
            return Ok(());
        }
        let batch: Vec<(String, DesiredMember)> = book
            .pending()
            .iter()
            .take(INVITES_PER_REQUEST)
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let mut invitations = Vec::new();
        let mut people = Vec::new();
        let mut dropped = Vec::new();
        for (key, m) in &batch {
            match engine.reader.fresh_user(m.pk).await? {
                // Still active, with the address the group job saw: invited with their role.
                Some(u) if u.is_active && u.email.as_ref() == Some(&m.email) => {
                    invitations.push(Invitation {
                        email: m.email.clone(),
                        name: display_name(&u),
                        role: invite_role(engine, &u).await?.as_str(),
                    });
                    people.push(m.pk);
                }
                // Deleted, deactivated or re-addressed since: the next pass finds them if they still count.
                _ => dropped.push(key.clone()),
            }
        }
        book.count("dropped", dropped.len());
        book.forget(&dropped);
        if invitations.is_empty() {
            continue;
        }
        book.window().record(Instant::now());
        match outline.invite(&invitations, !book.send_email).await {
            Ok(answer) => {
                book.count("sent", answer.created.len());
                book.count("already_there", answer.already_there);
                let keys: Vec<String> = batch.into_iter().map(|(k, _)| k).collect();
                book.forget(&keys);
                tracing::info!(
                    invited = answer.created.len(),
                    already_there = answer.already_there,
                    "invited to Outline: members of managed groups without an account"
                );
                invited.extend(people);
            }
            Err(e) if e.status() == Some(429) => {
                let wait = match &e {
                    UpstreamError::Throttled { retry_after, .. } => *retry_after,
                    _ => None,
                };
                book.window().block(Instant::now(), wait);
                book.count("throttled", invitations.len());
                tracing::warn!(error = %e, waiting_s = wait.map(|w| w.as_secs()), "Outline's invite limit is spent; the invitations stay queued");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
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
async fn invite_role(engine: &SyncEngine, u: &UserSnapshot) -> Result<OutlineRole, SyncError> {
    let Some(map) = &engine.accounts.role_map else {
        return Ok(OutlineRole::Member);
    };
    let catalog = engine.reader.full_catalog().await?;
    let groups = group_names(&catalog, &u.groups, engine.reader.membership);
    Ok(map.role_for(&groups).unwrap_or(OutlineRole::Member))
}

/// The CLI's step after a pass: invites what the hour allows and puts each person in their groups, as the
/// invitations job and its user jobs do under `serve`.
pub async fn invite_and_place(engine: &SyncEngine) -> Result<usize, SyncError> {
    let outline = engine.outline()?.in_lane(Lane::Bulk);
    let invited = send_invites(engine, &outline).await?;
    for pk in &invited {
        if let Err(e) = super::jobs::user_job(engine, *pk).await {
            tracing::warn!(user = %pk, error = %e, "invited, but not yet put in their groups; their sign-in or the next pass does it");
        }
    }
    Ok(invited.len())
}

/// The invitations as a queued job: woken by the pump; the invited people's user jobs follow.
pub async fn invites_job(engine: &SyncEngine) -> Result<JobOutcome, SyncError> {
    let outline = engine.outline()?.in_lane(Lane::Bulk);
    let invited = send_invites(engine, &outline).await?;
    Ok(JobOutcome {
        report: SyncReport::noted(format!("{} invited", invited.len())),
        follow_ups: invited.into_iter().map(JobKey::AuthentikUser).collect(),
    })
}

/// Queues the invitations job whenever people wait and the hour allows a request; sleeps until then
/// otherwise. Ends when the queue closes.
pub async fn pump(queue: JobQueue) {
    let engine = queue.engine().clone();
    let book = &engine.invites;
    if !book.enabled {
        return;
    }
    loop {
        let now = Instant::now();
        let due = book.next_send(now);
        if due.is_some_and(|t| t <= now) {
            if let Err(e) = queue.submit(JobKey::Invites) {
                tracing::warn!(error = %e, "invitations not queued; the next pass tries again");
            }
            // The job rings when it ends; so does anyone adding people.
            tokio::select! {
                () = book.wake.notified() => {}
                () = queue.closed() => return,
            }
            continue;
        }
        tokio::select! {
            () = book.wake.notified() => {}
            () = sleep_until_or_forever(due) => {}
            () = queue.closed() => return,
        }
    }
}

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
