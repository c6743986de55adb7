//! The Outline sink's lines for `authentik-bridge check`: its key (an admin's, with the scopes the configured
//! features need), the sign-in webhook's secret, and the groups `ROLE_MAP` names.

use crate::clients::explain::explain;
use crate::runtime::check::CheckLine;
use crate::sinks::outline::sink::OutlineSync;

impl OutlineSync {
    pub async fn check_lines(&self) -> Vec<CheckLine> {
        let mut lines = Vec::new();
        if let Some(line) = self.check_role_map_groups().await {
            lines.push(line);
        }
        let ol_fix = "create the API key as an admin, with scopes groups:write and users:read";
        lines.push(match self.outline.key_owner().await {
            Ok(owner) if owner.role == "admin" => {
                CheckLine::new(true, "outline", "key has users:read and belongs to an admin")
            }
            Ok(owner) => CheckLine::new(false, "outline", format!("key belongs to a {} — fix: the key's owner must be an admin, to read emails and create groups", owner.role)),
            Err(e) => CheckLine::new(
                false,
                "outline",
                format!("users.info failed: {}", explain(&e, ol_fix)),
            ),
        });
        lines.push(match self.outline.missing_group_scopes().await {
            Ok(missing) if missing.is_empty() => {
                CheckLine::new(true, "outline", "key may read and write groups")
            }
            Ok(missing) => CheckLine::new(
                false,
                "outline",
                format!("key may not call {} — fix: {ol_fix}", missing.join(", ")),
            ),
            Err(e) => CheckLine::new(
                false,
                "outline",
                format!("probing the group calls failed: {}", explain(&e, ol_fix)),
            ),
        });
        if self.checks.changes_users {
            let fix = "give the key the scope users:write (ROLE_MAP, SUSPEND_DEACTIVATED and INVITE_MEMBERS change users)";
            lines.push(match self.outline.missing_user_scopes().await {
                Ok(missing) if missing.is_empty() => {
                    CheckLine::new(true, "outline", "key may change roles and suspend users")
                }
                Ok(missing) => CheckLine::new(
                    false,
                    "outline",
                    format!("key may not call {} — fix: {fix}", missing.join(", ")),
                ),
                Err(e) => CheckLine::new(
                    false,
                    "outline",
                    format!("probing the user calls failed: {}", explain(&e, fix)),
                ),
            });
        }
        lines.push(if self.checks.webhook_secret_set {
            CheckLine::new(true, "outline webhook", "OUTLINE_WEBHOOK_SECRET is set")
        } else {
            CheckLine::new(false, "outline webhook", "OUTLINE_WEBHOOK_SECRET is not set — fix: copy the signing secret of the Outline webhook (ol_whs_...)")
        });
        lines
    }

    /// Every group `ROLE_MAP` names must exist in the source (Authentik, or the SCIM store): a typo would otherwise give nobody its role, and
    /// with the default `ROLE_DEFAULT` it would demote the admins it was meant for (the bridge holds that,
    /// but the fix belongs here, before anything runs).
    async fn check_role_map_groups(&self) -> Option<CheckLine> {
        let map = self.accounts.role_map.as_ref()?;
        Some(match self.reader.full_catalog().await {
            Ok(catalog) => {
                let missing = self.accounts.missing_mapped(&catalog).0;
                let missing: Vec<&str> = missing.iter().map(|g| g.as_str()).collect();
                if missing.is_empty() {
                    CheckLine::new(
                        true,
                        "role map",
                        format!(
                            "every group ROLE_MAP names exists in the source, Authentik or SCIM ({})",
                            map.canonical()
                        ),
                    )
                } else {
                    CheckLine::new(false, "role map", format!("ROLE_MAP names groups the source (Authentik or SCIM) does not have: {} — fix: correct the names (compared without case) or create the groups; until then no role is lowered", missing.join(", ")))
                }
            }
            Err(e) => CheckLine::new(
                false,
                "role map",
                format!("cannot read the source's groups to check ROLE_MAP: {e}"),
            ),
        })
    }
}
