//! The identity map: for every person of the source the bridge has seen, their key (Authentik's pk, or the
//! SCIM store's), username, last email, the email before it, their Outline account once matched, and the
//! OpenFGA user id last written for them. Kept in the store in `STATE_DIR`, so it outlives restarts.
//!
//! It answers what the source cannot: a deletion event carries the pk and no email
//! (docs/src/upstream/authentik.md §4.4, §12), and a person deleted while the bridge was down leaves no event
//! at all. A pass compares the map with the source's user list, and a mapped person who is gone was deleted.
//! And Outline keeps a changed email's old address until the person signs in again
//! (docs/src/upstream/outline.md §6.7): the previous email keeps matching them meanwhile.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::configuration::SourceKind;
use crate::domain::{AuthentikUserId, Email, OutlineUserId, UserSnapshot};
use crate::store::{Remembered, Store, StoreError};

/// The store's kind for the map's rows, one map per source: a person's key means something only to the source
/// that gave it (Authentik's pk, the SCIM store's own), so a deployment that moves from one source to the
/// other starts a map of its own and never takes the old source's people for deleted ones.
fn kind(source: SourceKind) -> &'static str {
    match source {
        SourceKind::Authentik => "identity",
        SourceKind::Scim => "identity_scim",
    }
}

/// Without `STATE_DIR`, past this many people the memory is emptied and fills again from the next reads (with
/// a store everything is kept: the map is what offboarding depends on).
pub const IN_MEMORY_CAP: usize = 1_000_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline_user: Option<OutlineUserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openfga_user: Option<String>,
}

pub struct IdentityMap {
    people: Remembered<AuthentikUserId, Identity>,
    /// Whom each Outline account is linked to: one person at most, so that a rehire or a reused address
    /// never leaves an account linked to someone else as well.
    accounts: std::sync::Mutex<HashMap<OutlineUserId, AuthentikUserId>>,
}

fn accounts_of(
    people: &Remembered<AuthentikUserId, Identity>,
) -> HashMap<OutlineUserId, AuthentikUserId> {
    let mut accounts = HashMap::new();
    for (pk, who) in people.entries() {
        if let Some(account) = who.outline_user {
            accounts.insert(account, pk);
        }
    }
    accounts
}

impl IdentityMap {
    pub fn in_memory() -> IdentityMap {
        IdentityMap {
            people: Remembered::in_memory(kind(SourceKind::Authentik)),
            accounts: Default::default(),
        }
    }

    pub async fn open(store: &Store, source: SourceKind) -> Result<IdentityMap, StoreError> {
        let people = Remembered::open(store, kind(source)).await?;
        Ok(IdentityMap {
            accounts: std::sync::Mutex::new(accounts_of(&people)),
            people,
        })
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<OutlineUserId, AuthentikUserId>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in what another process sharing the store (a CLI `reconcile`, `serve`) learned or forgot since
    /// this one read it: a pass reloads before it decides anything from the map.
    pub async fn reload(&self) {
        match self.people.reload().await {
            Ok(()) => *self.accounts() = accounts_of(&self.people),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the identity map from the store; the pass uses what this process knows")
            }
        }
    }

    /// The person an Outline account is linked to.
    pub fn owner_of(&self, account: &OutlineUserId) -> Option<AuthentikUserId> {
        self.accounts().get(account).copied()
    }

    pub fn is_persistent(&self) -> bool {
        self.people.is_persistent()
    }

    /// For `reconcile --dry-run` and `check`: what they learn is not written.
    pub fn freeze(&self) {
        self.people.freeze();
    }

    fn edit(&self, pk: AuthentikUserId, edit: impl FnOnce(&mut Identity)) {
        if !self.people.is_persistent()
            && self.people.len() >= IN_MEMORY_CAP
            && self.people.get(&pk).is_none()
        {
            for (k, _) in self.people.entries() {
                self.people.remove(&k);
            }
            self.accounts().clear();
        }
        self.people.update(&pk, |entry| {
            let mut person = entry.take().unwrap_or_default();
            edit(&mut person);
            *entry = Some(person);
        });
    }

    /// Notes the email seen for a person; a different one than before becomes the previous email.
    pub fn remember(&self, pk: AuthentikUserId, email: &Email) {
        self.edit(pk, |p| match &p.email {
            Some(now) if now == email => {}
            Some(_) => p.previous_email = p.email.replace(email.clone()),
            None => p.email = Some(email.clone()),
        });
    }

    /// Notes a person read from the source: their email and username.
    pub fn remember_user(&self, user: &UserSnapshot) {
        if let Some(email) = &user.email {
            self.remember(user.pk, email);
        }
        if let Some(name) = &user.username {
            if self
                .people
                .get(&user.pk)
                .and_then(|p| p.username)
                .as_deref()
                != Some(&**name)
            {
                self.edit(user.pk, |p| p.username = Some(name.to_string()));
            }
        }
    }

    /// Notes the Outline account the bridge matched to a person; whoever it was linked to before loses it.
    pub fn matched_outline(&self, pk: AuthentikUserId, user: &OutlineUserId) {
        let before = self.outline_user(pk);
        if before.as_ref() == Some(user) {
            return;
        }
        let previous_owner = {
            let mut accounts = self.accounts();
            if let Some(old) = &before {
                if accounts.get(old) == Some(&pk) {
                    accounts.remove(old);
                }
            }
            accounts.insert(user.clone(), pk)
        };
        if let Some(other) = previous_owner.filter(|o| *o != pk) {
            self.edit(other, |p| {
                if p.outline_user.as_ref() == Some(user) {
                    p.outline_user = None;
                }
            });
        }
        self.edit(pk, |p| p.outline_user = Some(user.clone()));
    }

    /// Notes the OpenFGA user id written for a person.
    pub fn wrote_openfga(&self, pk: AuthentikUserId, id: &str) {
        if self.openfga_user(pk).as_deref() != Some(id) {
            self.edit(pk, |p| p.openfga_user = Some(id.to_string()));
        }
    }

    /// The last email seen for a person.
    pub fn current(&self, pk: AuthentikUserId) -> Option<Email> {
        self.people.get(&pk).and_then(|p| p.email)
    }

    /// The email the person had before the last one seen.
    pub fn previous(&self, pk: AuthentikUserId) -> Option<Email> {
        self.people.get(&pk).and_then(|p| p.previous_email)
    }

    pub fn outline_user(&self, pk: AuthentikUserId) -> Option<OutlineUserId> {
        self.people.get(&pk).and_then(|p| p.outline_user)
    }

    pub fn openfga_user(&self, pk: AuthentikUserId) -> Option<String> {
        self.people.get(&pk).and_then(|p| p.openfga_user)
    }

    /// Everyone in the map.
    pub fn people(&self) -> Vec<(AuthentikUserId, Identity)> {
        self.people.entries()
    }

    /// Forgets a person whose offboarding is done.
    pub fn forget(&self, pk: AuthentikUserId) {
        if let Some(account) = self.outline_user(pk) {
            let mut accounts = self.accounts();
            if accounts.get(&account) == Some(&pk) {
                accounts.remove(&account);
            }
        }
        self.people.remove(&pk);
    }

    /// Writes what was learned since the last save. A failure is logged and kept for the next save: the
    /// jobs go on, and what the map lacks is what a restart would have to learn again.
    pub async fn save(&self) {
        if let Err(e) = self.people.save().await {
            tracing::error!(error = %e, "cannot write the identity map to the store; it is kept in memory and written at the next save");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).expect("email")
    }

    #[tokio::test]
    async fn what_the_map_learns_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("identities-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::open(&dir).await.expect("store");
        let map = IdentityMap::open(&store, SourceKind::Authentik)
            .await
            .expect("opens");
        let pk = AuthentikUserId(7);
        map.remember(pk, &email("old@example.com"));
        map.remember(pk, &email("new@example.com"));
        map.matched_outline(pk, &OutlineUserId::new("u-7"));
        map.wrote_openfga(AuthentikUserId(8), "jane");
        map.save().await;
        map.remember(AuthentikUserId(9), &email("unsaved@example.com"));
        drop(map);

        let again = IdentityMap::open(&store, SourceKind::Authentik)
            .await
            .expect("reopens");
        assert_eq!(again.current(pk), Some(email("new@example.com")));
        assert_eq!(again.previous(pk), Some(email("old@example.com")));
        assert_eq!(again.outline_user(pk), Some(OutlineUserId::new("u-7")));
        assert_eq!(
            again.openfga_user(AuthentikUserId(8)).as_deref(),
            Some("jane")
        );
        assert_eq!(again.current(AuthentikUserId(9)), None, "never saved");
        again.forget(pk);
        again.save().await;
        let third = IdentityMap::open(&store, SourceKind::Authentik)
            .await
            .expect("reopens");
        assert_eq!(third.current(pk), None);
        assert_eq!(third.people().len(), 1);

        let frozen = IdentityMap::open(&store, SourceKind::Authentik)
            .await
            .expect("reopens");
        frozen.freeze();
        frozen.remember(AuthentikUserId(10), &email("dry@example.com"));
        frozen.save().await;
        let fourth = IdentityMap::open(&store, SourceKind::Authentik)
            .await
            .expect("reopens");
        assert_eq!(
            fourth.current(AuthentikUserId(10)),
            None,
            "a dry run writes nothing"
        );

        // A rehire: the account goes to the new person, and the one before keeps no link to it.
        let rehired = AuthentikUserId(11);
        fourth.matched_outline(AuthentikUserId(12), &OutlineUserId::new("u-12"));
        fourth.matched_outline(rehired, &OutlineUserId::new("u-12"));
        assert_eq!(fourth.owner_of(&OutlineUserId::new("u-12")), Some(rehired));
        assert_eq!(fourth.outline_user(AuthentikUserId(12)), None);

        let scim = IdentityMap::open(&store, SourceKind::Scim)
            .await
            .expect("opens");
        assert!(
            scim.people().is_empty(),
            "another source's keys are not this one's people"
        );
    }
}
