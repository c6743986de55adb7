//! What the bridge learns survives a restart: the real binary, stopped with `kill -9` and started again on the
//! same `STATE_DIR`, against the stateful fakes. Each test fails when its piece is kept in memory only.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use upstream_fakes::{FakeAuthentik, FakeOutline};

use crate::faults::{metric, BridgeProcess};
use crate::helpers::*;

fn state_env(state: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("STATE_DIR", state.to_string_lossy().to_string()),
        ("SUSPEND_DEACTIVATED", "true".to_string()),
        ("AUTHENTIK_GROUP_REGEXP", "^Wiki$".to_string()),
    ]
}

fn start(
    authentik: &FakeAuthentik,
    outline: &FakeOutline,
    tag: &str,
    env: &[(&'static str, String)],
) -> BridgeProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    BridgeProcess::start(authentik, outline, tag, &env)
}

/// A person in the managed group "Wiki" on both sides: (Authentik pk, Outline id).
fn person(
    authentik: &FakeAuthentik,
    outline: &FakeOutline,
    wiki: (&str, &str),
    name: &str,
) -> (i64, String) {
    let email = format!("{name}@example.com");
    let pk = authentik.add_user(name, name, &email);
    authentik.add_member(wiki.0, pk);
    let id = outline.add_user(name, &email);
    outline.add_member(wiki.1, &id, "member");
    (pk, id)
}

/// The case: a person the running bridge had seen is deleted in Authentik while the bridge is down.
/// No event reaches anyone; the start-up pass finds them gone from Authentik's list through the identity map,
/// confirms it with one read, and suspends their account. An Outline account Authentik never had is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_deleted_while_the_bridge_was_down_is_suspended_at_the_start_up_pass() {
    let (authentik, outline) = start_fakes().await;
    let wiki = (authentik.add_group("Wiki"), outline.add_group("Wiki", None));
    let (jane, ojane) = person(&authentik, &outline, (&wiki.0, &wiki.1), "jane");
    let (_bob, obob) = person(&authentik, &outline, (&wiki.0, &wiki.1), "bob");
    let local = outline.add_user("Local", "local@example.com");
    let state = scratch_state_dir("deleted-while-down");
    let env = state_env(&state);
    let http = reqwest::Client::new();

    let mut first = start(&authentik, &outline, "deleted-1", &env);
    first.wait_reconciled(&http).await;
    first.kill_9();

    authentik.delete_user(jane);
    let mut second = start(&authentik, &outline, "deleted-2", &env);
    second.wait_reconciled(&http).await;
    assert!(
        outline.is_suspended(&ojane),
        "deleted while down, suspended at the start-up pass:\n{}",
        second.log_tail()
    );
    assert!(
        !outline.members(&wiki.1).contains_key(&ojane),
        "left the group"
    );
    assert!(!outline.is_suspended(&obob), "bob is still in Authentik");
    assert!(
        !outline.is_suspended(&local),
        "never Authentik's: untouched"
    );
    let record = stored_document(&state, "suspended-by-bridge").await;
    assert!(record.to_string().contains(&ojane), "{record}");

    // Offboarded: an admin who activates the account by hand keeps it active, across restarts.
    second.kill_9();
    outline.set_suspended(&ojane, false);
    for tag in ["deleted-3", "deleted-4"] {
        let mut next = start(&authentik, &outline, tag, &env);
        next.wait_reconciled(&http).await;
        assert!(!outline.is_suspended(&ojane), "{}", next.log_tail());
        next.kill_9();
    }
    let _ = std::fs::remove_dir_all(&state);
}

/// An email changed in Authentik while the bridge was down: Outline keeps the old address until the person
/// signs in again, and the identity map still links the two, so the start-up pass keeps them in their group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_keeps_its_link_across_a_restart() {
    let (authentik, outline) = start_fakes().await;
    let wiki = (authentik.add_group("Wiki"), outline.add_group("Wiki", None));
    let (jane, ojane) = person(&authentik, &outline, (&wiki.0, &wiki.1), "jane");
    let state = scratch_state_dir("email-change");
    let env = state_env(&state);
    let http = reqwest::Client::new();

    let mut first = start(&authentik, &outline, "email-1", &env);
    first.wait_reconciled(&http).await;
    first.kill_9();

    authentik.set_email(jane, "jane.doe@example.com");
    let mut second = start(&authentik, &outline, "email-2", &env);
    second.wait_reconciled(&http).await;
    assert!(
        outline.members(&wiki.1).contains_key(&ojane),
        "matched by the email the map remembers:\n{}",
        second.log_tail()
    );
    assert!(!outline.is_suspended(&ojane));
    let _ = std::fs::remove_dir_all(&state);
}

/// With `OPENFGA_GROUP_ID=name`, a group renamed while the bridge was down: the store remembers the object the
/// group's tuples were written under, so the start-up pass moves them to the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openfga_rename_while_down_moves_the_tuples_after_the_restart() {
    let (authentik, outline) = start_fakes().await;
    let fga = start_openfga().await;
    let jane = authentik.add_user("jane", "Jane", "jane@example.com");
    let g = authentik.add_group("team-red");
    authentik.add_member(&g, jane);
    let state = scratch_state_dir("fga-rename");
    let env = vec![
        ("STATE_DIR", state.to_string_lossy().to_string()),
        ("OPENFGA_URL", fga.url()),
        ("OPENFGA_STORE_ID", fga.store_id()),
        ("OPENFGA_API_TOKEN", fga.token()),
        ("OPENFGA_GROUP_ID", "name".to_string()),
        ("AUTHENTIK_GROUP_REGEXP", "^team-".to_string()),
    ];
    let http = reqwest::Client::new();
    let members = || {
        fga.tuples()
            .into_iter()
            .filter(|(_, r, o)| r == "member" && o.starts_with("group:"))
            .collect::<Vec<_>>()
    };

    let mut first = start(&authentik, &outline, "fga-1", &env);
    first.wait_reconciled(&http).await;
    // Outline's pass may end first: wait for OpenFGA's, whose end keeps the objects it wrote.
    eventually_async(
        "OpenFGA's start-up pass",
        Duration::from_secs(10),
        || async {
            let text = first.metrics(&http).await;
            metric(
                &text,
                "bridge_reconcile_total",
                &[("sink", "openfga"), ("result", "ok")],
            ) >= 1.0
        },
    )
    .await;
    assert_eq!(
        members(),
        vec![("user:jane".into(), "member".into(), "group:team-red".into())]
    );
    first.kill_9();

    authentik.rename_group(&g, "team-blue");
    let mut second = start(&authentik, &outline, "fga-2", &env);
    second.wait_reconciled(&http).await;
    eventually("the tuples moved", Duration::from_secs(10), || {
        members()
            == vec![(
                "user:jane".into(),
                "member".into(),
                "group:team-blue".into(),
            )]
    })
    .await;
    let _ = std::fs::remove_dir_all(&state);
}

/// The suspension record of an earlier version (a JSON file in `STATE_DIR`) is imported once, then renamed:
/// the person it names as suspended by the bridge is activated when Authentik has them active again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_record_of_an_earlier_version_is_imported_and_renamed() {
    let (authentik, outline) = start_fakes().await;
    let wiki = (authentik.add_group("Wiki"), outline.add_group("Wiki", None));
    let (_jane, ojane) = person(&authentik, &outline, (&wiki.0, &wiki.1), "jane");
    let (_bob, obob) = person(&authentik, &outline, (&wiki.0, &wiki.1), "bob");
    outline.set_suspended(&ojane, true);
    outline.set_suspended(&obob, true);
    let state = scratch_state_dir("import");
    let file = state.join("suspended-by-bridge.json");
    std::fs::write(
        &file,
        format!("{{\"suspended_by_bridge\": [\"{ojane}\"], \"held_by_guard\": []}}"),
    )
    .expect("write");
    let env = state_env(&state);
    let http = reqwest::Client::new();

    let mut first = start(&authentik, &outline, "import-1", &env);
    first.wait_reconciled(&http).await;
    assert!(!outline.is_suspended(&ojane), "{}", first.log_tail());
    assert!(outline.is_suspended(&obob), "suspended by hand: stays");
    assert!(!file.exists() && state.join("suspended-by-bridge.json.imported").exists());
    assert!(first.log_tail().contains("imported into the store"));
    first.kill_9();

    // Started again: nothing to import, and the record is the store's.
    let mut second = start(&authentik, &outline, "import-2", &env);
    second.wait_reconciled(&http).await;
    assert!(!second.log_tail().contains("imported"));
    let record = stored_document(&state, "suspended-by-bridge").await;
    assert!(
        !record.to_string().contains(&ojane),
        "activated, so forgotten: {record}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// `serve` pushing suspensions while a CLI `reconcile` runs on the same `STATE_DIR`: one allowance for both
/// (`MAX_SUSPENSIONS=4` for six people deactivated at once), one record that names exactly whom they
/// suspended, and after a `kill -9` the restarted `serve` still counts the hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_a_cli_reconcile_share_the_store() {
    let (authentik, outline) = start_fakes().await;
    let wiki = (authentik.add_group("Wiki"), outline.add_group("Wiki", None));
    let people: Vec<(i64, String)> = (0..6)
        .map(|i| person(&authentik, &outline, (&wiki.0, &wiki.1), &format!("p{i}")))
        .collect();
    let state = scratch_state_dir("shared");
    let mut env = state_env(&state);
    env.push(("MAX_SUSPENSIONS", "4".to_string()));
    let http = reqwest::Client::new();

    let mut serve = start(&authentik, &outline, "shared-serve", &env);
    serve.wait_reconciled(&http).await;
    authentik.set_webhook(
        Some(format!("{}/webhooks/authentik", serve.url)),
        Some(AUTHENTIK_WEBHOOK_TOKEN.to_string()),
    );
    let cli = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_authentik-bridge"));
        cmd.arg("reconcile")
            .env_clear()
            .env("AUTHENTIK_URL", authentik.url())
            .env("AUTHENTIK_TOKEN", authentik.token())
            .env("OUTLINE_URL", outline.url())
            .env("OUTLINE_TOKEN", outline.token())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    };
    for (pk, _) in &people {
        authentik.set_active(*pk, false);
    }
    let mut cli = cli;
    let out = tokio::task::spawn_blocking(move || cli.output().expect("reconcile runs"))
        .await
        .expect("joined");
    let suspended = || {
        people
            .iter()
            .filter(|(_, o)| outline.is_suspended(o))
            .count()
    };
    let named = |record: &serde_json::Value, field: &str| {
        record[field].as_array().map(Vec::len).unwrap_or_default()
    };
    // Everyone is suspended or held once serve's pushes are done. Two processes may both spend the
    // allowance on one person (each read them active), or one may hold someone the other has just
    // suspended: both only ever suspend fewer, the safe side.
    eventually_async(
        "serve's pushes settled",
        Duration::from_secs(10),
        || async {
            let record = stored_document(&state, "suspended-by-bridge").await;
            let held = record["held_by_guard"].to_string();
            let idle = metric(&serve.metrics(&http).await, "bridge_queue_depth", &[]) == 0.0;
            idle && people
                .iter()
                .all(|(_, o)| outline.is_suspended(o) || held.contains(o.as_str()))
        },
    )
    .await;
    let record = stored_document(&state, "suspended-by-bridge").await;
    let n = suspended();
    assert!(
        (1..=4).contains(&n) && named(&record, "suspended_by_bridge") == n,
        "{n} suspended; {record}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (_, o) in &people {
        let listed = record["suspended_by_bridge"]
            .to_string()
            .contains(o.as_str());
        assert_eq!(
            listed,
            outline.is_suspended(o),
            "the record names whom they suspended"
        );
    }

    serve.kill_9();
    let mut again = start(&authentik, &outline, "shared-again", &env);
    again.wait_pass(&http, "guarded").await;
    assert_eq!(
        suspended(),
        n,
        "the hour's allowance is still spent after the restart"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// `reconcile --dry-run` and `check` change nothing in `STATE_DIR`: with only an earlier version's JSON record
/// there, they read it (the dry run plans the activation it implies) and neither create the store nor import
/// or rename the file, which a `serve` of the earlier version may still be using.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_and_check_read_the_old_record_and_write_nothing() {
    let (authentik, outline) = start_fakes().await;
    let wiki = (authentik.add_group("Wiki"), outline.add_group("Wiki", None));
    let (_jane, ojane) = person(&authentik, &outline, (&wiki.0, &wiki.1), "jane");
    outline.set_suspended(&ojane, true);
    let state = scratch_state_dir("look");
    let file = state.join("suspended-by-bridge.json");
    let record = format!("{{\"suspended_by_bridge\": [\"{ojane}\"], \"held_by_guard\": []}}");
    std::fs::write(&file, &record).expect("write");
    let env = state_env(&state);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_authentik-bridge"))
            .args(args)
            .env_clear()
            .env("AUTHENTIK_URL", authentik.url())
            .env("AUTHENTIK_TOKEN", authentik.token())
            .env("OUTLINE_URL", outline.url())
            .env("OUTLINE_TOKEN", outline.token())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let plan = tokio::task::block_in_place(|| run(&["reconcile", "--dry-run", "--json"]));
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("JSON plan");
    assert!(
        plan["accounts"]["activate"].to_string().contains(&ojane),
        "the old record says the bridge suspended jane: {}",
        plan["accounts"]
    );
    let checked = tokio::task::block_in_place(|| run(&["check"]));
    assert!(checked.contains("no store yet"), "{checked}");
    assert!(outline.is_suspended(&ojane), "a dry run changes nothing");
    assert!(!state.join("bridge.db").exists(), "no store created");
    assert_eq!(
        std::fs::read_to_string(&file).ok(),
        Some(record),
        "not imported"
    );
    let _ = std::fs::remove_dir_all(&state);
}
