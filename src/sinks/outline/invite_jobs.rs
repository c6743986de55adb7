//! The Outline sink's invitation jobs (`INVITE_MEMBERS`): sending what the hour allows from the book in
//! `invites.rs`, placing whoever was invited, and the pump that wakes the job when the next request may go.

use std::sync::Arc;

use tokio::time::Instant;

use crate::clients::Lane;
use crate::runtime::converge;
use crate::runtime::job::{JobKey, JobOutcome, SyncError, SyncReport};
use crate::runtime::queue::JobQueue;
use crate::sinks::outline::invites::{send_invites, InviteSender};
use crate::sinks::outline::keys::invites_key;
use crate::sinks::outline::sink::OutlineSync;

/// The CLI's step after a pass: invites what the hour allows and puts each person in their groups, as the
/// invitations job and its user jobs do under `serve`.
/// What sending reads of the Outline sink: the book, Authentik through the reader, and `ROLE_MAP`.
fn sender(engine: &OutlineSync) -> InviteSender<'_> {
    InviteSender {
        invites: &engine.invites,
        reader: &engine.reader,
        accounts: &engine.accounts,
        index: &engine.index,
    }
}

pub async fn invite_and_place(engine: &OutlineSync) -> Result<usize, SyncError> {
    let outline = engine.outline.in_lane(Lane::Bulk);
    let (invited, sent) = send_invites(&sender(engine), &outline).await;
    for pk in &invited {
        if let Err(e) = converge::push(&engine.runtime, engine, &JobKey::AuthentikUser(*pk)).await {
            tracing::warn!(user = %pk, error = %e, "invited, but not yet put in their groups; their sign-in or the next pass does it");
        }
    }
    sent.map(|()| invited.len())
}

/// The invitations as a queued job: woken by the pump; the invited people's user jobs follow. A failed send
/// is not retried by the queue: the book backs off and the pump wakes the job again.
pub async fn invites_job(engine: &OutlineSync) -> Result<JobOutcome, SyncError> {
    let outline = engine.outline.in_lane(Lane::Bulk);
    let (invited, sent) = send_invites(&sender(engine), &outline).await;
    let note = match sent {
        Ok(()) => format!("{} invited", invited.len()),
        Err(e) => {
            tracing::warn!(error = %e, "invitations not sent; trying again after a pause (a minute, doubling to an hour)");
            format!(
                "{} invited, then the send failed; backing off",
                invited.len()
            )
        }
    };
    // Whoever was invited is placed, even when a later request failed.
    Ok(JobOutcome {
        report: SyncReport::noted(note),
        follow_ups: invited.into_iter().map(JobKey::AuthentikUser).collect(),
    })
}

/// Queues the invitations job whenever people wait and the hour allows a request; sleeps until then
/// otherwise. Ends when the queue closes.
pub async fn pump(queue: JobQueue, engine: Arc<OutlineSync>) {
    let book = &engine.invites;
    if !book.enabled {
        return;
    }
    loop {
        let now = Instant::now();
        let due = book.next_send(now).await;
        if due.is_some_and(|t| t <= now) {
            if let Err(e) = queue.submit(invites_key()) {
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
