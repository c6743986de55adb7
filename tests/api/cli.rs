//! The binary itself: configuration errors, `check`, `--version`.

use std::process::Command;

use crate::helpers::*;
use upstream_fakes::{FakeAuthentik, FakeOutline};

/// Where the blueprint's transport posts when the bridge listens on the default `LISTEN_ADDR`.
const BRIDGE_TRANSPORT_URL: &str = "http://127.0.0.1:8430/webhooks/authentik";

/// A bridge whose Authentik has the blueprint's transport, posting to the default `LISTEN_ADDR`.
async fn app_with_transport() -> TestApp {
    let app = spawn_app().await;
    app.authentik
        .add_webhook_transport("authentik-bridge", BRIDGE_TRANSPORT_URL, true);
    app
}

fn bridge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authentik-bridge"));
    cmd.env_clear();
    cmd
}

#[test]
fn a_bad_setting_exits_2_with_one_line_naming_it() {
    let out = bridge()
        .args(["serve"])
        .env("AUTHENTIK_URL", "https://auth.example.com")
        .env("AUTHENTIK_TOKEN", "ak-secret-value")
        .env("OUTLINE_URL", "https://docs.example.com")
        .env("OUTLINE_TOKEN", "ol_api_secret_value")
        .env("OUTLINE_WEBHOOK_SECRET", "ol_whs_secret_value")
        .env("MAX_REMOVALS", "lots")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("MAX_REMOVALS"), "{stderr}");
    for secret in [
        "ak-secret-value",
        "ol_api_secret_value",
        "ol_whs_secret_value",
    ] {
        assert!(!stderr.contains(secret));
    }

    let out = bridge()
        .args(["serve"])
        .env("AUTHENTIK_URL", "https://auth.example.com")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("required but not set: AUTHENTIK_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let out = bridge().arg("--version").output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = bridge().arg("--help").output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "check", "reconcile", "demo", "healthcheck"] {
        assert!(help.contains(sub), "{sub} in --help");
    }
}

/// `check` against the fakes with every required setting and the webhook token; a test adds or overrides
/// what it is about.
fn check_command(authentik: &FakeAuthentik, outline: &FakeOutline) -> Command {
    let mut cmd = bridge();
    cmd.arg("check")
        .env("AUTHENTIK_URL", authentik.url())
        .env("AUTHENTIK_TOKEN", authentik.token())
        .env("OUTLINE_URL", outline.url())
        .env("OUTLINE_TOKEN", outline.token())
        .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET)
        .env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN);
    cmd
}

fn check(app: &TestApp, webhook_token: bool) -> std::process::Output {
    let mut cmd = bridge();
    cmd.arg("check")
        .env("AUTHENTIK_URL", app.authentik.url())
        .env("AUTHENTIK_TOKEN", app.authentik.token())
        .env("OUTLINE_URL", app.outline.url())
        .env("OUTLINE_TOKEN", app.outline.token())
        .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET);
    if webhook_token {
        cmd.env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN);
    }
    cmd.output().expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_and_explains_each_failure() {
    let app = app_with_transport().await;
    let out = tokio::task::block_in_place(|| check(&app, true));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with("ok") || l.starts_with("warn state: STATE_DIR is not set")),
        "{stdout}"
    );

    app.authentik.set_forbidden(true);
    let out = tokio::task::block_in_place(|| check(&app, false));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        fails
            .iter()
            .any(|l| l.contains("authentik") && l.contains("view_group")),
        "{stdout}"
    );
    assert!(
        fails.iter().any(|l| l.contains("AUTHENTIK_WEBHOOK_TOKEN")),
        "{stdout}"
    );
    assert!(
        fails.iter().all(|l| l.contains("fix:")),
        "every failure says its fix: {stdout}"
    );
}

/// `.env` in the working directory is read, as the Python connector read it, and the real environment wins
/// over it, `*_FILE` included: a wrong Outline key in `.env` fails `check`, and the right key given as
/// `OUTLINE_TOKEN_FILE` in the environment makes it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_env_is_read_and_the_environment_wins() {
    let app = app_with_transport().await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    std::fs::write(
        dir.join(".env"),
        format!(
            "AUTHENTIK_URL={}\nAUTHENTIK_TOKEN={}\nOUTLINE_URL={}\nOUTLINE_TOKEN=ol_api_wrong_key_from_dotenv\n\
             OUTLINE_WEBHOOK_SECRET=\"{OUTLINE_SECRET}\"\nAUTHENTIK_WEBHOOK_TOKEN={AUTHENTIK_WEBHOOK_TOKEN}\n",
            app.authentik.url(),
            app.authentik.token(),
            app.outline.url(),
        ),
    )
    .expect("write .env");
    let token_file = dir.join("outline-token");
    std::fs::write(&token_file, format!("{}\n", app.outline.token())).expect("write token");

    let only_dotenv = tokio::task::block_in_place(|| {
        bridge()
            .arg("check")
            .current_dir(&dir)
            .output()
            .expect("runs")
    });
    let stdout = String::from_utf8_lossy(&only_dotenv.stdout).to_string();
    assert!(
        !only_dotenv.status.success(),
        "the wrong key from .env is used: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("authentik")),
        "the rest of .env is read: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("outline")),
        "{stdout}"
    );

    let overridden = tokio::task::block_in_place(|| {
        bridge()
            .arg("check")
            .current_dir(&dir)
            .env("OUTLINE_TOKEN_FILE", &token_file)
            .output()
            .expect("runs")
    });
    let stdout = String::from_utf8_lossy(&overridden.stdout).to_string();
    assert!(
        overridden.status.success(),
        "the environment's OUTLINE_TOKEN_FILE wins: {stdout}"
    );
}

/// `check` fails for an Outline key that cannot write groups, including one whose route scopes allow reading
/// memberships but not changing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_for_a_key_that_cannot_write_groups() {
    let app = app_with_transport().await;
    for scopes in [
        vec!["users:read", "groups:read"],
        vec!["users:read", "groups:read", "/api/groups.memberships"],
    ] {
        app.outline
            .set_key_scopes(Some(scopes.iter().map(|s| s.to_string()).collect()));
        let out = tokio::task::block_in_place(|| check(&app, true));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(!out.status.success(), "{scopes:?}: {stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains("groups.add_user")),
            "{scopes:?}: {stdout}"
        );
    }
    app.outline
        .set_key_scopes(Some(vec!["users:read".into(), "groups:write".into()]));
    let out = tokio::task::block_in_place(|| check(&app, true));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "the documented scopes pass: {stdout}");
}

/// With `ROLE_MAP` (or `SUSPEND_DEACTIVATED`, `INVITE_MEMBERS`) the key must also change users: `check` probes
/// the user calls without changing anyone, and names the missing scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_roles_needs_a_key_that_can_change_users() {
    let app = app_with_transport().await;
    app.authentik.add_group("outline-admins");
    let run = |scopes: &[&str]| {
        app.outline
            .set_key_scopes(Some(scopes.iter().map(|s| s.to_string()).collect()));
        let out = tokio::task::block_in_place(|| {
            let mut cmd = check_command(&app.authentik, &app.outline);
            cmd.env("ROLE_MAP", "outline-admins=admin")
                .env("SUSPEND_DEACTIVATED", "true");
            cmd.output().expect("runs")
        });
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, stdout) = run(&["users:read", "groups:write"]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL")
            && l.contains("users.update_role")
            && l.contains("users:write")),
        "{stdout}"
    );
    let (ok, stdout) = run(&["users:write", "groups:write"]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("STATE_DIR is not set"), "{stdout}");
    for call in ["users.update_role", "users.suspend", "users.activate"] {
        assert!(
            app.outline
                .calls()
                .iter()
                .all(|c| c.method != call || c.status >= 400),
            "the probe changes nobody: {call}"
        );
    }
}

/// Every missing setting is named at once, in one line, and each message names the cause and the fix.
#[test]
fn settings_errors_name_every_missing_setting_the_cause_and_the_fix() {
    let out = bridge().arg("serve").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for name in [
        "AUTHENTIK_URL",
        "AUTHENTIK_TOKEN",
        "OUTLINE_URL",
        "OUTLINE_TOKEN",
        "OUTLINE_WEBHOOK_SECRET",
    ] {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = bridge();
        cmd.arg("serve")
            .env("AUTHENTIK_URL", "https://auth.example.com")
            .env("AUTHENTIK_TOKEN", "ak")
            .env("OUTLINE_URL", "https://docs.example.com")
            .env("OUTLINE_TOKEN", "ol")
            .env("OUTLINE_WEBHOOK_SECRET", "whs");
        cmd.envs(vars.iter().copied());
        let out = cmd.output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{vars:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("AUTHENTIK_URL", "auth.example.com")],
            "add http:// or https://",
        ),
        (
            &[("LISTEN_ADDR", "localhost:8431")],
            "is not an IP address and port",
        ),
        (
            &[("ROLE_MAP", "outline-admins=admin;outline-readers=viewer")],
            "separate the pairs with commas",
        ),
    ];
    for (vars, says) in cases {
        let stderr = run(vars);
        assert!(stderr.contains(says), "{vars:?}: {stderr}");
        assert!(
            stderr.contains("fix") || stderr.contains("separate"),
            "{stderr}"
        );
    }
}

/// A line `.env` cannot read is named by its number and text.
#[test]
fn a_bad_line_in_dot_env_is_named_by_number_and_text() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dotenv-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    std::fs::write(
        dir.join(".env"),
        "AUTHENTIK_URL=https://auth.example.com\nthis line is wrong\n",
    )
    .expect("write .env");
    let out = bridge()
        .arg("check")
        .current_dir(&dir)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("this line is wrong"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` warns about a misspelt setting with the closest real one, fails on a `STATE_DIR` that does not
/// exist, and ends quietly when its reader goes away (`check | head -1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_misspelt_settings_and_a_missing_state_dir() {
    let app = app_with_transport().await;
    let out = tokio::task::block_in_place(|| {
        let mut cmd = check_command(&app.authentik, &app.outline);
        cmd.env("AUTHENTIK_GROUP_REGEX", "^wiki-")
            .env(
                "AUTHENTIK_BRIDGE_URL",
                "http://bridge:8430/webhooks/authentik",
            )
            .env("STATE_DIR", "/nonexistent/bridge-state");
        cmd.output().expect("runs")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("warn")
            && l.contains(
                "AUTHENTIK_GROUP_REGEX is not a setting; did you mean AUTHENTIK_GROUP_REGEXP?"
            )),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("warn")
            && l.contains("AUTHENTIK_BRIDGE_URL is read by Authentik, not by the bridge")),
        "the blueprint's variable, set on the wrong side: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL state") && l.contains("not a folder")),
        "{stdout}"
    );

    let (url, token) = (app.authentik.url(), app.authentik.token());
    let status = tokio::task::block_in_place(|| {
        use std::io::Read;
        let mut child = bridge()
            .arg("check")
            .env("AUTHENTIK_URL", &url)
            .env("AUTHENTIK_TOKEN", &token)
            .env("OUTLINE_URL", app.outline.url())
            .env("OUTLINE_TOKEN", app.outline.token())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts");
        let mut first = [0u8; 8];
        let mut stdout = child.stdout.take().expect("stdout");
        let _ = stdout.read(&mut first);
        drop(stdout);
        let out = child.wait_with_output().expect("ends");
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    });
    assert!(!status.1.contains("panicked"), "{}", status.1);
    assert_ne!(status.0.code(), Some(101), "no panic on a closed pipe");
}

/// A server that cannot be reached is named, with the cause and its fix: a closed port, a host name that
/// does not resolve, and https:// to a plain-HTTP port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_server_and_why_it_cannot_be_reached() {
    let app = app_with_transport().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let plain = app.outline.url().replace("http://", "https://");
    let cases = [
        (
            format!("http://127.0.0.1:{closed}"),
            format!("cannot connect to http://127.0.0.1:{closed}: connection refused"),
            "correct the port",
        ),
        (
            "http://no-such-host.invalid".to_string(),
            "cannot connect to http://no-such-host.invalid:80: the host name did not resolve"
                .to_string(),
            "correct the host name",
        ),
        (
            plain.clone(),
            format!(
                "cannot connect to {}: TLS failed",
                plain.trim_end_matches('/')
            ),
            "use http://",
        ),
    ];
    for (url, cause, fix) in cases {
        let out = tokio::task::block_in_place(|| {
            check_command(&app.authentik, &app.outline)
                .env("AUTHENTIK_URL", &url)
                .output()
                .expect("runs")
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("FAIL authentik"))
            .unwrap_or_else(|| panic!("a failed Authentik line: {stdout}"));
        assert!(line.contains(&cause) && line.contains(fix), "{url}: {line}");
    }
}

/// Authentik answers 403 both for a token it does not take and for a missing permission; `check` tells them
/// apart by the body. A wrong token, or the app password `core/users/service_account/` returns, gets the
/// steps to an API token; a missing permission gets the role to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_a_wrong_authentik_token_from_a_missing_permission() {
    let app = app_with_transport().await;
    let run = |token: &str| {
        tokio::task::block_in_place(|| {
            check_command(&app.authentik, &app.outline)
                .env("AUTHENTIK_TOKEN", token)
                .output()
                .expect("runs")
        })
    };
    let out = run("an-app-password-not-an-api-token");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL authentik"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("Token invalid/expired")
            && line.contains("app password")
            && line.contains("\"intent\": \"api\"")
            && line.contains("view_key")
            && !line.contains("view_group"),
        "{line}"
    );
    assert!(
        !stdout.contains("view_notificationtransport"),
        "a refused token is not a missing permission: {stdout}"
    );
    app.authentik.set_forbidden(true);
    let out = run(&app.authentik.token());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL authentik"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("authentik_core.view_group") && !line.contains("app password"),
        "{line}"
    );
}

/// `check` finds Authentik's transport that posts to `/webhooks/authentik` and compares it with
/// `LISTEN_ADDR`; where it cannot read the transports it says it cannot tell, never `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_compares_authentiks_transport_with_listen_addr() {
    let (authentik, outline) = start_fakes().await;
    let run = |listen: &str| {
        tokio::task::block_in_place(|| {
            let out = check_command(&authentik, &outline)
                .env("LISTEN_ADDR", listen)
                .output()
                .expect("runs");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let transport: Vec<String> = stdout
                .lines()
                .filter(|l| l.contains("authentik transport"))
                .map(str::to_owned)
                .collect();
            (out.status.success(), transport, stdout)
        })
    };
    // None yet: pushes cannot arrive.
    let (ok, lines, stdout) = run("0.0.0.0:8430");
    assert!(!ok, "{stdout}");
    assert!(
        lines[0].starts_with("FAIL")
            && lines[0].contains("import authentik-blueprints/outline-bridge.yaml"),
        "{stdout}"
    );
    // A transport posting elsewhere, under the blueprint's name: the path is wrong.
    authentik.add_webhook_transport("authentik-bridge", "http://bridge:8430/sync", true);
    let (ok, lines, stdout) = run("0.0.0.0:8430");
    assert!(
        !ok && lines[0].contains("whose path is not /webhooks/authentik"),
        "{stdout}"
    );
    assert!(lines[0].contains("AUTHENTIK_BRIDGE_URL"), "{stdout}");
    // The right one, with its token in the URL (which check never prints).
    authentik.add_webhook_transport(
        "bridge-url-token",
        "http://bridge.internal:8430/webhooks/authentik?token=s3cret",
        false,
    );
    let (ok, lines, stdout) = run("0.0.0.0:8430");
    assert!(ok, "{stdout}");
    assert!(
        lines[0].starts_with("ok") && lines[0].contains("path and port match LISTEN_ADDR"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
    // Another port: right only behind a proxy, so a warning that says so.
    let (ok, lines, stdout) = run("0.0.0.0:9000");
    assert!(ok, "{stdout}");
    assert!(
        lines[0].starts_with("warn")
            && lines[0].contains("port 8430, but LISTEN_ADDR is 0.0.0.0:9000"),
        "{stdout}"
    );
    // A token that may not read transports: it cannot tell.
    authentik.set_transports_forbidden(true);
    let (ok, lines, stdout) = run("0.0.0.0:8430");
    assert!(ok, "{stdout}");
    assert!(
        lines.len() == 1
            && lines[0].starts_with("warn")
            && lines[0].contains("cannot tell")
            && lines[0].contains("view_notificationtransport"),
        "{stdout}"
    );
}

/// The API's own root is a common paste: `AUTHENTIK_URL=…/api/v3/` and `OUTLINE_URL=…/api` are taken as the
/// base URLs, not turned into `…/api/v3/api/v3/core/users/` and a bare 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_root_pasted_as_the_url_is_taken_as_the_base() {
    let app = app_with_transport().await;
    let out = tokio::task::block_in_place(|| {
        check_command(&app.authentik, &app.outline)
            .env("AUTHENTIK_URL", format!("{}/api/v3/", app.authentik.url()))
            .env("OUTLINE_URL", format!("{}/api", app.outline.url()))
            .output()
            .expect("runs")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok   authentik: token can read users"),
        "{stdout}"
    );
}

/// `check` names every group `ROLE_MAP` names that Authentik does not have (compared without case): a typo
/// there would otherwise demote the admins it was meant for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_role_map_groups_authentik_does_not_have() {
    let app = app_with_transport().await;
    app.authentik.add_group("Outline-Admins");
    let run = |map: &str| {
        tokio::task::block_in_place(|| {
            let out = check_command(&app.authentik, &app.outline)
                .env("ROLE_MAP", map)
                .output()
                .expect("runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
            )
        })
    };
    let (ok, stdout) = run("outline-admins=admin");
    assert!(ok, "names compare without case: {stdout}");
    assert!(stdout.contains("ok   role map"), "{stdout}");
    let (ok, stdout) = run("outline-admin=admin,outline-readers=viewer");
    assert!(!ok, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL role map")
            && l.contains("outline-admin, outline-readers")),
        "{stdout}"
    );
}

/// SCIM mode without its store or token does not start, and names both; `check` in SCIM mode proves the
/// store opens (creating and migrating it) and the token is set.
#[test]
fn scim_mode_needs_state_dir_and_token_and_check_proves_the_store() {
    let out = bridge()
        .arg("serve")
        .env("SOURCE", "scim")
        .env("OUTLINE_URL", "https://docs.example.com")
        .env("OUTLINE_TOKEN", "ol")
        .env("OUTLINE_WEBHOOK_SECRET", "whs")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SCIM_TOKEN") && stderr.contains("STATE_DIR"),
        "{stderr}"
    );
    assert!(!stderr.contains("AUTHENTIK_URL"), "{stderr}");

    let state = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-scim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("dir");
    let out = bridge()
        .arg("check")
        .env("SOURCE", "scim")
        .env("SCIM_TOKEN", "scim-secret-value")
        .env("STATE_DIR", &state)
        .env("OUTLINE_URL", "http://127.0.0.1:9")
        .env("OUTLINE_TOKEN", "ol")
        .env("OUTLINE_WEBHOOK_SECRET", "whs")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok   scim: the store") && stdout.contains("opens and is migrated"),
        "{stdout}"
    );
    assert!(stdout.contains("ok   scim: SCIM_TOKEN is set"), "{stdout}");
    assert!(
        !stdout.contains("authentik"),
        "no Authentik line in SCIM mode: {stdout}"
    );
    assert!(!stdout.contains("scim-secret-value"));
    assert!(state.join("bridge.db").is_file(), "the store was created");
    assert_eq!(
        out.status.code(),
        Some(1),
        "Outline is unreachable: {stdout}"
    );
}
