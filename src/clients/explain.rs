//! What `check` says of a failed upstream call: the error, and the fix that follows from its cause.

use super::UpstreamError;

/// Authentik answers 403 both for a token it does not take and for a missing permission; its body tells
/// which.
pub fn is_token_refused(e: &UpstreamError) -> bool {
    let text = e.to_string();
    e.status() == Some(403)
        && (text.contains("Token invalid")
            || text.contains("expired")
            || text.contains("credentials were not provided"))
}

pub fn explain(e: &UpstreamError, fix_forbidden: &str) -> String {
    match e.status() {
        Some(401) => format!("{e} — fix: the token is wrong or expired; create a new one"),
        Some(403) if is_token_refused(e) => {
            format!("{e} — fix: the token is wrong, expired, or not an API token. The token that POST /api/v3/core/users/service_account/ returns is an app password, which the API refuses. Create one with intent `api` for the service account: Directory → Tokens and App passwords → Create (intent API, expiring off), or POST /api/v3/core/tokens/ {{\"identifier\": \"authentik-bridge\", \"intent\": \"api\", \"user\": <pk>, \"expiring\": false}} then GET /api/v3/core/tokens/authentik-bridge/view_key/")
        }
        Some(403) => format!("{e} — fix: {fix_forbidden}"),
        // The message names the server and the cause; the fix follows from the cause.
        None if matches!(e, UpstreamError::Transport { .. }) => {
            let text = e.to_string();
            let fix = if text.contains("connection refused") {
                "start the server, or correct the port in the URL"
            } else if text.contains("did not resolve") {
                "correct the host name, or use one this machine resolves"
            } else if text.contains("TLS failed") {
                "use http:// for a plain-HTTP port, or make this machine trust the server's certificate"
            } else {
                "check the URL and that the server is reachable from here"
            };
            format!("{text} — fix: {fix}")
        }
        _ => e.to_string(),
    }
}
