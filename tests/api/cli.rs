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
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTHENTIK_TOKEN is required"));
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
    assert!(stdout.lines().all(|l| l.starts_with("ok")), "{stdout}");

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
