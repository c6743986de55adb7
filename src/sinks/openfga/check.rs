//! The OpenFGA sink's lines for `authentik-bridge check`. Read answers an unknown store with no tuples, so
//! only GetStore finds a wrong `OPENFGA_STORE_ID`; and the model must let `group#member` hold `user`, or every
//! write is refused (docs/src/upstream/openfga.md §2.3, §2.6, §6).

use crate::clients::explain::explain;
use crate::runtime::check::CheckLine;
use crate::sinks::openfga::sink::OpenFgaSink;

impl OpenFgaSink {
    pub async fn check_lines(&self) -> Vec<CheckLine> {
        let fix_auth = "set OPENFGA_API_TOKEN to one of OpenFGA's preshared keys (OPENFGA_AUTHN_PRESHARED_KEYS), or a valid OIDC access token";
        let store = match self.client.store_name().await {
            Ok(Some(name)) => CheckLine::new(true, "openfga", format!("store found ({name})")),
            Ok(None) => CheckLine::new(false, "openfga", "OpenFGA does not know OPENFGA_STORE_ID — fix: copy the id from `fga store list` (reads of an unknown store look empty, so the bridge would write into nothing)"),
            Err(e) => CheckLine::new(false, "openfga", format!("reading the store failed: {}", explain(&e, fix_auth))),
        };
        let n = &self.naming;
        let wanted = format!("{}#{}", n.group_type, n.relation);
        let model = match self.client.model_fit(&n.group_type, &n.relation).await {
            Ok(None) => CheckLine::new(false, "openfga", "the store has no authorization model — fix: write one, e.g. `fga model write --store-id <id> --file model.fga` (the model in docs/src/openfga.md)"),
            Ok(Some(fit)) if fit.accepted.contains(&n.user_type) => CheckLine::new(
                true,
                "openfga",
                format!("model {} lets {wanted} hold {}", fit.model_id, n.user_type),
            ),
            Ok(Some(fit)) if !fit.group_type_found => CheckLine::new(false, "openfga", format!("model {} has no type {} — fix: add `type {}` with `define {}: [{}]`, or set OPENFGA_GROUP_TYPE", fit.model_id, n.group_type, n.group_type, n.relation, n.user_type)),
            Ok(Some(fit)) => CheckLine::new(false, "openfga", format!("model {}: {wanted} accepts [{}], not {} — fix: define {}: [{}, ...] in type {}, or set OPENFGA_RELATION / OPENFGA_USER_TYPE", fit.model_id, fit.accepted.join(", "), n.user_type, n.relation, n.user_type, n.group_type)),
            Err(e) => CheckLine::new(false, "openfga", format!("reading the model failed: {}", explain(&e, fix_auth))),
        };
        vec![store, model]
    }
}
