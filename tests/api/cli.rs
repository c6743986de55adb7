//! The binary itself: configuration errors, `check`, `--version`.

use std::process::Command;

use crate::helpers::*;

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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
    let run = |scopes: &[&str]| {
        app.outline
            .set_key_scopes(Some(scopes.iter().map(|s| s.to_string()).collect()));
        let out = tokio::task::block_in_place(|| {
            let mut cmd = bridge();
            cmd.arg("check")
                .env("AUTHENTIK_URL", app.authentik.url())
                .env("AUTHENTIK_TOKEN", app.authentik.token())
                .env("OUTLINE_URL", app.outline.url())
                .env("OUTLINE_TOKEN", app.outline.token())
                .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET)
                .env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN)
                .env("ROLE_MAP", "outline-admins=admin")
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
    let app = spawn_app().await;
    let out = tokio::task::block_in_place(|| {
        let mut cmd = bridge();
        cmd.arg("check")
            .env("AUTHENTIK_URL", app.authentik.url())
            .env("AUTHENTIK_TOKEN", app.authentik.token())
            .env("OUTLINE_URL", app.outline.url())
            .env("OUTLINE_TOKEN", app.outline.token())
            .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET)
            .env("AUTHENTIK_WEBHOOK_TOKEN", AUTHENTIK_WEBHOOK_TOKEN)
            .env("AUTHENTIK_GROUP_REGEX", "^wiki-")
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
