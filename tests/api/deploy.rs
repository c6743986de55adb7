//! The deployment kit under `deploy/` parses, and carries what the bridge needs to run safely: the settings it
//! names exist, secrets travel as `*_FILE`, the hardening is in place, and the alerts and the dashboard only
//! use metrics the bridge exports.
//!
//! Real validators run when they are on PATH (`promtool`, `systemd-analyze`, `hadolint`,
//! `kubernetes-validate`, `check-jsonschema`); a missing one is reported as "skipped: <tool> not installed",
//! or fails the test when `DEPLOY_VALIDATORS=required` (CI installs them all).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use authentik_bridge::configuration::SETTINGS;
use authentik_bridge::metrics::Metrics;
use serde_yaml::Value;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// `v["a"]["b"]` with a readable failure naming the path.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(key),
        }
        .unwrap_or_else(|| panic!("missing {path} (at {key:?})"));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn seq_at<'a>(v: &'a Value, path: &str) -> &'a Vec<Value> {
    at(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

fn is_setting(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.name == name) || name == "BRIDGE_CONFIG" || name == "RUST_LOG"
}

fn secret_settings() -> BTreeSet<&'static str> {
    SETTINGS
        .iter()
        .filter(|s| s.secret)
        .map(|s| s.name)
        .collect()
}

/// An environment name the bridge reads: a setting, or `NAME_FILE` for a secret setting.
fn assert_known_env(name: &str, file: &str) {
    if let Some(base) = name.strip_suffix("_FILE") {
        assert!(
            secret_settings().contains(base),
            "{file}: {name} is not the _FILE form of a secret setting"
        );
    } else {
        assert!(
            is_setting(name),
            "{file}: {name} is not a setting the bridge reads (configuration::SETTINGS)"
        );
    }
}

/// Where a validator binary is, if it is on PATH.
fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// The validator's path, or None after saying it was skipped. Written straight to stderr so that the line
/// shows in `cargo test` output, which captures `println!`. With `DEPLOY_VALIDATORS=required` a missing tool
/// fails the test, so CI cannot pass without running it.
fn validator(tool: &str) -> Option<PathBuf> {
    if let Some(p) = on_path(tool) {
        return Some(p);
    }
    let required = std::env::var("DEPLOY_VALIDATORS").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "{tool} is not installed, and DEPLOY_VALIDATORS=required"
    );
    let _ = writeln!(std::io::stderr(), "skipped: {tool} not installed");
    None
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory of this test binary's own, inside the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("deploy")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------------------------------------------------
// Metric catalogue, from src/metrics.rs, and a small PromQL reader
// ---------------------------------------------------------------------------------------------------------

/// Labels Prometheus adds to every scraped series (job, instance) or that Kubernetes discovery adds.
const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
];

/// Every `bridge_*` metric registered in src/metrics.rs, with its labels. Labelled families only appear in
/// `render()` once a label set is touched, so the names come from the source text; `render()` then checks
/// that the reader missed none of the metrics it does show.
fn metric_catalogue() -> BTreeMap<String, BTreeSet<String>> {
    let source = read("src/metrics.rs");
    let starts: Vec<usize> = source.match_indices("\"bridge_").map(|(i, _)| i).collect();
    let mut catalogue = BTreeMap::new();
    for (n, &start) in starts.iter().enumerate() {
        let name_end = source[start + 1..]
            .find('"')
            .map(|e| start + 1 + e)
            .unwrap_or_else(|| panic!("unterminated literal in src/metrics.rs"));
        let name = source[start + 1..name_end].to_string();
        let segment_end = starts.get(n + 1).copied().unwrap_or(source.len());
        let segment = &source[name_end..segment_end];
        let labels = segment
            .find("&[\"")
            .and_then(|i| {
                segment[i + 2..]
                    .find(']')
                    .map(|j| &segment[i + 2..i + 2 + j])
            })
            .map(|list| {
                list.split(',')
                    .map(|l| l.trim().trim_matches('"').to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        catalogue.insert(name, labels);
    }
    let rendered = Metrics::new().render();
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                catalogue.contains_key(name),
                "render() shows {name}, which the source reader of src/metrics.rs missed"
            );
        }
    }
    assert!(
        catalogue.len() >= 10,
        "too few bridge_ metrics found in src/metrics.rs: {catalogue:?}"
    );
    catalogue
}

/// A metric selector in a PromQL expression: the metric name and the label names it matches on.
#[derive(Debug)]
struct Selector {
    name: String,
    labels: Vec<String>,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The `bridge_*` selectors of a PromQL expression, with the label names inside their braces.
fn selectors(expr: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !is_ident_char(chars[i - 1]);
        if boundary && expr_starts_with(&chars, i, "bridge_") {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut labels = Vec::new();
            if j < chars.len() && chars[j] == '{' {
                let (inner, end) = braced(&chars, j);
                labels = label_matchers(&inner);
                i = end;
            }
            out.push(Selector { name, labels });
        } else {
            i += 1;
        }
    }
    out
}

fn expr_starts_with(chars: &[char], at: usize, word: &str) -> bool {
    word.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k) == Some(&c))
}

/// The text between `{` at `open` and its `}`, skipping quoted strings; and the index after the `}`.
fn braced(chars: &[char], open: usize) -> (String, usize) {
    let mut in_quote = false;
    let mut k = open + 1;
    while k < chars.len() {
        match chars[k] {
            '"' if k == 0 || chars[k - 1] != '\\' => in_quote = !in_quote,
            '}' if !in_quote => return (chars[open + 1..k].iter().collect(), k + 1),
            _ => {}
        }
        k += 1;
    }
    panic!(
        "unbalanced braces in {:?}",
        chars.iter().collect::<String>()
    )
}

fn label_matchers(inner: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_quote = false;
    let mut current = String::new();
    for c in inner.chars() {
        if c == '"' {
            in_quote = !in_quote;
        }
        if c == ',' && !in_quote {
            names.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    names.push(current);
    names
        .iter()
        .filter_map(|m| {
            let name: String = m.trim().chars().take_while(|c| is_ident_char(*c)).collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Label names in `by (...)`, `without (...)`, `on (...)` and `ignoring (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in ["by", "without", "on", "ignoring"] {
        for (i, _) in expr.match_indices(word) {
            let before_ok = !matches!(expr[..i].chars().next_back(), Some(c) if is_ident_char(c));
            let rest = expr[i + word.len()..].trim_start();
            if before_ok && rest.starts_with('(') {
                if let Some(end) = rest.find(')') {
                    out.extend(
                        rest[1..end]
                            .split(',')
                            .map(|l| l.trim().to_string())
                            .filter(|l| !l.is_empty()),
                    );
                }
            }
        }
    }
    out
}

/// Every `bridge_*` metric in `expr` exists, and every label it matches or groups on is one it has.
/// Returns the labels the expression's metrics carry, for checking templates against.
fn check_expr(
    expr: &str,
    catalogue: &BTreeMap<String, BTreeSet<String>>,
    context: &str,
) -> BTreeSet<String> {
    let mut available: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for sel in selectors(expr) {
        let (base, suffix_labels): (&str, &[&str]) = if catalogue.contains_key(&sel.name) {
            (sel.name.as_str(), &[])
        } else if let Some(b) = sel.name.strip_suffix("_bucket") {
            (b, &["le"])
        } else if let Some(b) = sel
            .name
            .strip_suffix("_sum")
            .or_else(|| sel.name.strip_suffix("_count"))
        {
            (b, &[])
        } else {
            (sel.name.as_str(), &[])
        };
        let labels = catalogue.get(base).unwrap_or_else(|| {
            panic!(
                "{context}: {} is not a metric of src/metrics.rs (known: {:?})",
                sel.name,
                catalogue.keys().collect::<Vec<_>>()
            )
        });
        for l in &sel.labels {
            assert!(
                labels.contains(l)
                    || suffix_labels.contains(&l.as_str())
                    || TARGET_LABELS.contains(&l.as_str()),
                "{context}: {} has no label {l:?} (it has {labels:?})",
                sel.name
            );
        }
        available.extend(labels.iter().cloned());
        available.extend(suffix_labels.iter().map(|s| s.to_string()));
    }
    for l in grouping_labels(expr) {
        assert!(
            available.contains(&l),
            "{context}: groups by {l:?}, which none of its metrics carries ({available:?})"
        );
    }
    available
}

/// Names used as `{{ $labels.NAME }}` or `{{NAME}}` (Grafana legends) in a template.
fn template_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("{{") {
        if let Some(end) = text[i..].find("}}") {
            let inner = text[i + 2..i + end].trim();
            let name = inner.strip_prefix("$labels.").unwrap_or(inner);
            if name.chars().all(is_ident_char) && !name.is_empty() {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn promql_reader_sees_selectors_labels_and_groupings() {
    let sel = selectors(
        r#"sum by (upstream, call) (rate(bridge_upstream_errors_total{upstream="outline", call=~"a,b"}[5m])) / bridge_queue_capacity"#,
    );
    let names: Vec<&str> = sel.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["bridge_upstream_errors_total", "bridge_queue_capacity"]
    );
    assert_eq!(sel[0].labels, ["upstream", "call"]);
    assert_eq!(
        grouping_labels("sum by (a, b) (x) / on(c) y"),
        ["a", "b", "c"]
    );
    assert_eq!(
        template_labels("{{ $labels.source }} and {{upstream}} {{ $value }}"),
        ["source", "upstream"]
    );
    let catalogue = metric_catalogue();
    assert_eq!(
        catalogue
            .get("bridge_webhooks_total")
            .map(|l| l.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["outcome".to_string(), "source".to_string()])
    );
    let unknown =
        std::panic::catch_unwind(|| check_expr("rate(bridge_no_such_metric[5m])", &catalogue, "t"));
    assert!(unknown.is_err(), "an unknown metric must be refused");
    let bad_label =
        std::panic::catch_unwind(|| check_expr(r#"bridge_queue_depth{kind="x"}"#, &catalogue, "t"));
    assert!(bad_label.is_err(), "an unknown label must be refused");
}

// ---------------------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------------------

/// The Dockerfile's instructions, continuation lines joined and comments dropped: (KEYWORD, arguments).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (kw, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push((kw.to_ascii_uppercase(), args.trim().to_string()));
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_healthcheck() {
    let text = read("deploy/Dockerfile");
    let ins = dockerfile_instructions(&text);
    let froms: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: at least two FROM");
    assert!(
        ins[froms[0]].1.starts_with("rust:1-bookworm"),
        "build stage on the official rust:1-bookworm"
    );
    let final_from = &ins[*froms.last().unwrap_or(&0)].1;
    assert!(
        final_from.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime stage on distroless cc nonroot, got {final_from}"
    );
    let runtime = &ins[*froms.last().unwrap_or(&0)..];
    let build = &ins[froms[0]..*froms.last().unwrap_or(&0)];
    assert!(
        build
            .iter()
            .any(|(k, a)| k == "RUN" && a.contains("cargo build --release --locked")),
        "the build stage runs cargo build --release --locked"
    );

    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.as_str());
    match user {
        Some(u) => {
            let name = u.split(':').next().unwrap_or(u);
            assert!(
                name != "root" && name != "0",
                "runtime USER must not be root, got {u}"
            );
        }
        None => assert!(
            final_from.contains(":nonroot"),
            "no USER and not a nonroot base image"
        ),
    }
    let health = runtime
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, a)| a.as_str())
        .unwrap_or_else(|| panic!("the runtime stage has a HEALTHCHECK"));
    let cmd = health
        .split_once("CMD")
        .map(|(_, c)| c.trim())
        .unwrap_or_else(|| panic!("HEALTHCHECK ... CMD [...]"));
    let exec: Vec<String> = serde_json::from_str(cmd).unwrap_or_else(|e| {
        panic!("HEALTHCHECK CMD must be exec form (no shell in distroless): {e}")
    });
    assert_eq!(exec, ["/usr/local/bin/authentik-bridge", "healthcheck"]);
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "EXPOSE"
                && a.split_whitespace().any(|p| p == "8430" || p == "8430/tcp")),
        "EXPOSE 8430"
    );
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "ENV" && a.contains("LISTEN_ADDR=0.0.0.0:8430")),
        "ENV LISTEN_ADDR=0.0.0.0:8430"
    );
    assert!(
        runtime.iter().any(|(k, a)| k == "COPY"
            && a.starts_with("--from=")
            && a.contains("/usr/local/bin/authentik-bridge")),
        "the binary is copied from the build stage to /usr/local/bin/authentik-bridge"
    );
    let entry = runtime
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, a)| a.as_str())
        .unwrap_or_else(|| panic!("ENTRYPOINT"));
    let entry: Vec<String> =
        serde_json::from_str(entry).unwrap_or_else(|e| panic!("ENTRYPOINT exec form: {e}"));
    assert_eq!(entry, ["/usr/local/bin/authentik-bridge"]);
}

/// The dependency layer builds against placeholder sources, so it must create the file of every target
/// Cargo.toml declares explicitly (Cargo refuses a manifest whose target file is missing), and copy any build
/// script; and the context filter must let the sources through.
#[test]
fn dockerfile_dependency_layer_matches_the_manifest() {
    let manifest = read("Cargo.toml");
    let dockerfile = read("deploy/Dockerfile");
    // (section, name, path) of each explicit target.
    let mut targets: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    let mut section = String::new();
    let value = |line: &str, key: &str| -> Option<String> {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    };
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            if matches!(
                line,
                "[lib]" | "[[bin]]" | "[[bench]]" | "[[test]]" | "[[example]]"
            ) {
                targets.push((section.clone(), None, None));
            }
            continue;
        }
        if section == "[package]" && value(line, "build").is_some() {
            panic!("Cargo.toml has a build script: copy it in the Dockerfile's dependency layer");
        }
        if let Some(last) = targets.last_mut().filter(|t| t.0 == section) {
            if let Some(name) = value(line, "name") {
                last.1 = Some(name);
            }
            if let Some(path) = value(line, "path") {
                last.2 = Some(path);
            }
        }
    }
    for (section, name, path) in targets {
        let name = name.unwrap_or_default();
        let path = path.unwrap_or_else(|| match section.as_str() {
            "[lib]" => "src/lib.rs".to_string(),
            "[[bin]]" if name == "authentik-bridge" => "src/main.rs".to_string(),
            "[[bin]]" => format!("src/bin/{name}.rs"),
            "[[bench]]" => format!("benches/{name}.rs"),
            "[[test]]" => format!("tests/{name}.rs"),
            _ => format!("examples/{name}.rs"),
        });
        assert!(
            dockerfile.contains(&path),
            "Cargo.toml declares {section} {name:?} at {path}: the Dockerfile's placeholder build must create it"
        );
    }
    let ignore = read("deploy/Dockerfile.dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rules.first(), Some(&"*"), "the context starts from nothing");
    // Every workspace member's manifest is in the context and copied before the placeholder build.
    let members: &[&str] = &["crates/upstream-fakes"];
    for member in members {
        let manifest = format!("{member}/Cargo.toml");
        assert!(
            manifest_lists_member(member),
            "{member} is a workspace member"
        );
        assert!(
            rules.contains(&format!("!{manifest}").as_str()),
            "the context needs {manifest}"
        );
        assert!(
            dockerfile.contains(&format!("COPY {manifest}")),
            "the Dockerfile copies {manifest}"
        );
        assert!(
            dockerfile.contains(&format!("{member}/src/lib.rs")),
            "a placeholder for {member}"
        );
    }
    for needed in ["Cargo.toml", "Cargo.lock", "src/", "benches/"] {
        assert!(
            rules.contains(&format!("!{needed}").as_str()),
            "the context needs {needed}"
        );
        assert!(
            repo().join(needed).exists(),
            "{needed} exists at the repository root"
        );
    }
}

fn manifest_lists_member(member: &str) -> bool {
    read("Cargo.toml")
        .lines()
        .any(|l| l.trim_start().starts_with("members") && l.contains(&format!("\"{member}\"")))
}

/// The shipped binary carries only the product: the Docker image and the deploy chapter's systemd steps build
/// with `--no-default-features`, and that build's dependency tree has no simulated upstream in it.
#[test]
fn production_builds_leave_the_fakes_out() {
    let dockerfile = read("deploy/Dockerfile");
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty());
    for line in builds {
        assert!(line.contains("--no-default-features"), "Dockerfile: {line}");
    }
    let readme = read("docs/src/deploy.md");
    let systemd = readme
        .split("## systemd")
        .nth(1)
        .expect("the deploy chapter has a systemd section");
    let build = systemd
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the systemd steps build the binary");
    assert!(build.contains("--no-default-features"), "README: {build}");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |features: &[&str]| {
        let out = run(Command::new(&cargo)
            .current_dir(repo())
            .args([
                "tree",
                "--offline",
                "--locked",
                "-p",
                "authentik-bridge",
                "-e",
                "normal,build",
            ])
            .args(["--prefix", "none"])
            .args(features));
        assert_success("cargo tree", &out);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let has_fakes = |t: &str| t.lines().any(|l| l.starts_with("upstream-fakes "));
    assert!(
        !has_fakes(&tree(&["--no-default-features"])),
        "the production build depends on the fakes"
    );
    assert!(
        has_fakes(&tree(&[])),
        "the default build (the demo) does use them, so the check above can fail"
    );
}

/// A clone stands alone: nothing tracked points outside the repository (the steering folders beside our
/// own checkouts are not in a user's clone), and nothing names one of our issue numbers.
#[test]
fn nothing_tracked_points_outside_the_repository() {
    let out = run(Command::new("git").current_dir(repo()).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]));
    if !out.status.success() {
        // Not a git checkout (a source tarball): nothing to check against.
        return;
    }
    // Built, so this file does not match its own patterns.
    let outside = [
        ["..", "/shared"].concat(),
        ["shared", "/contracts"].concat(),
        ["/work", "/"].concat(),
    ];
    let issue = regex::Regex::new(r"(?i)\bissues? #?\d+\b").expect("regex");
    let mut found = Vec::new();
    for path in String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
    {
        if path.starts_with("tests/fixtures/upstream/") || path.ends_with(".lock") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(repo().join(path)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) || issue.is_match(line) {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    let Some(tool) = validator("hadolint") else {
        return;
    };
    let out = run(Command::new(tool)
        .arg("--no-color")
        .arg(repo().join("deploy/Dockerfile")));
    assert_success("hadolint deploy/Dockerfile", &out);
}

// ---------------------------------------------------------------------------------------------------------
// Docker Compose
// ---------------------------------------------------------------------------------------------------------

#[test]
fn compose_service_is_hardened_and_reads_secrets_from_files() {
    let doc = yaml("deploy/compose/docker-compose.yml");
    let svc = at(&doc, "services.authentik-bridge");

    let build = at(svc, "build");
    let context = repo().join("deploy/compose").join(str_at(build, "context"));
    assert!(
        context.join(str_at(build, "dockerfile")).is_file(),
        "build.context + build.dockerfile point at the Dockerfile"
    );
    assert!(at(svc, "restart").as_str().is_some(), "a restart policy");
    assert_eq!(
        at(svc, "read_only").as_bool(),
        Some(true),
        "read-only root fs"
    );
    assert!(
        seq_at(svc, "security_opt")
            .iter()
            .any(|o| o.as_str() == Some("no-new-privileges:true")),
        "no-new-privileges"
    );
    let test: Vec<&str> = seq_at(svc, "healthcheck.test")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        test,
        ["CMD", "/usr/local/bin/authentik-bridge", "healthcheck"]
    );

    // Secrets: every service secret is declared at the top level as a file in ./secrets.
    let mounted: BTreeSet<String> = seq_at(svc, "secrets")
        .iter()
        .map(|s| {
            s.as_str()
                .or_else(|| s.get("source").and_then(Value::as_str))
                .unwrap_or_else(|| panic!("secret entry {s:?}"))
                .to_string()
        })
        .collect();
    assert!(!mounted.is_empty(), "the service mounts secrets");
    for name in &mounted {
        let file = str_at(&doc, &format!("secrets.{name}.file"));
        assert!(
            file.starts_with("./secrets/"),
            "secret {name} comes from ./secrets/, got {file}"
        );
    }
    assert!(
        repo().join("deploy/compose/secrets/README.md").is_file(),
        "deploy/compose/secrets/README.md explains the files"
    );

    // Environment: only names the bridge reads; secrets only as *_FILE under /run/secrets.
    let env = at(svc, "environment")
        .as_mapping()
        .unwrap_or_else(|| panic!("environment is a map"));
    let mut files = BTreeSet::new();
    for (k, v) in env {
        let name = k.as_str().unwrap_or_else(|| panic!("env key {k:?}"));
        assert_known_env(name, "docker-compose.yml");
        assert!(
            !secret_settings().contains(name),
            "{name} is a secret: pass it as {name}_FILE"
        );
        if let Some(base) = name.strip_suffix("_FILE") {
            let path = v.as_str().unwrap_or_else(|| panic!("{name} value"));
            let secret = path
                .strip_prefix("/run/secrets/")
                .unwrap_or_else(|| panic!("{name} must point into /run/secrets/, got {path}"));
            assert!(
                mounted.contains(secret),
                "{name} points at {path}, which the service does not mount"
            );
            files.insert(base.to_string());
        }
    }
    let all_secrets: BTreeSet<String> = secret_settings().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        files, all_secrets,
        "every secret setting is given as *_FILE"
    );

    // Networks: the service joins external networks only, each with a name.
    let joined = seq_at(svc, "networks");
    assert!(
        joined.len() >= 2,
        "joins the Authentik and the Outline network"
    );
    for n in joined {
        let n = n.as_str().unwrap_or_else(|| panic!("network {n:?}"));
        let net = at(&doc, &format!("networks.{n}"));
        assert_eq!(
            at(net, "external").as_bool(),
            Some(true),
            "network {n} is external"
        );
        assert!(
            at(net, "name").as_str().is_some(),
            "network {n} names the existing network"
        );
    }
}

#[test]
fn compose_file_matches_the_compose_spec() {
    let Some(tool) = validator("check-jsonschema") else {
        return;
    };
    let out = run(Command::new(tool)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(repo().join("deploy/compose/docker-compose.yml")));
    assert_success(
        "check-jsonschema --builtin-schema vendor.compose-spec",
        &out,
    );
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------------------

const K8S_DIR: &str = "deploy/kubernetes";

fn k8s_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(K8S_DIR))
        .unwrap_or_else(|e| panic!("{K8S_DIR}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    files.sort();
    files
}

/// Every document of every manifest, by kind.
fn k8s_objects() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in k8s_files() {
        for doc in yaml_docs(&format!("{K8S_DIR}/{f}")) {
            let kind = str_at(&doc, "kind").to_string();
            assert!(doc.get("apiVersion").is_some(), "{f}: apiVersion");
            if kind != "Kustomization" {
                assert!(
                    doc.get("metadata").and_then(|m| m.get("name")).is_some(),
                    "{f}: metadata.name"
                );
            }
            assert!(out.insert(kind.clone(), doc).is_none(), "one {kind} only");
        }
    }
    out
}

#[test]
fn kubernetes_deployment_is_single_hardened_and_probed() {
    let objects = k8s_objects();
    let dep = &objects["Deployment"];
    assert_eq!(
        at(dep, "spec.replicas").as_u64(),
        Some(1),
        "exactly one replica"
    );
    assert_eq!(str_at(dep, "spec.strategy.type"), "Recreate");
    let pod = at(dep, "spec.template.spec");
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert_eq!(
        str_at(pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    let containers = seq_at(pod, "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    assert_eq!(str_at(c, "livenessProbe.httpGet.path"), "/healthz");
    assert_eq!(str_at(c, "readinessProbe.httpGet.path"), "/readyz");
    let port = &seq_at(c, "ports")[0];
    assert_eq!(at(port, "containerPort").as_u64(), Some(8430));
    let port_name = str_at(port, "name");
    for probe in ["livenessProbe", "readinessProbe"] {
        let p = at(c, &format!("{probe}.httpGet.port"));
        assert!(
            p.as_str() == Some(port_name) || p.as_u64() == Some(8430),
            "{probe} targets the http port"
        );
    }
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                at(c, &format!("resources.{kind}.{res}")).as_str().is_some(),
                "resources.{kind}.{res}"
            );
        }
    }
    let sc = at(c, "securityContext");
    assert_eq!(at(sc, "runAsNonRoot").as_bool(), Some(true));
    assert_eq!(at(sc, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(at(sc, "allowPrivilegeEscalation").as_bool(), Some(false));
    let drop: Vec<&str> = seq_at(sc, "capabilities.drop")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(drop, ["ALL"]);
    assert_eq!(str_at(sc, "seccompProfile.type"), "RuntimeDefault");

    // Annotation keys hold dots, so they are looked up whole rather than through `at`.
    let annotations = at(dep, "spec.template.metadata.annotations");
    for (key, expected) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "8430"),
        ("prometheus.io/path", "/metrics"),
    ] {
        assert_eq!(
            annotations.get(key).and_then(Value::as_str),
            Some(expected),
            "pod annotation {key}"
        );
    }

    // Secrets: mounted from the Secret, read through *_FILE; the Secret template has exactly those keys.
    let secret = &objects["Secret"];
    let secret_name = str_at(secret, "metadata.name");
    let volume = seq_at(pod, "volumes")
        .iter()
        .find(|v| v.get("secret").is_some())
        .unwrap_or_else(|| panic!("a secret volume"));
    assert_eq!(str_at(volume, "secret.secretName"), secret_name);
    let mount = seq_at(c, "volumeMounts")
        .iter()
        .find(|m| m.get("name") == volume.get("name"))
        .unwrap_or_else(|| panic!("the secret volume is mounted"));
    assert_eq!(at(mount, "readOnly").as_bool(), Some(true));
    let mount_path = format!("{}/", str_at(mount, "mountPath").trim_end_matches('/'));
    let mut referenced = BTreeSet::new();
    let mut file_settings = BTreeSet::new();
    for e in seq_at(c, "env") {
        let name = str_at(e, "name");
        assert_known_env(name, "deployment.yaml");
        assert!(
            !secret_settings().contains(name),
            "{name} is a secret: pass it as {name}_FILE"
        );
        if let Some(base) = name.strip_suffix("_FILE") {
            let path = str_at(e, "value");
            let key = path.strip_prefix(&mount_path).unwrap_or_else(|| {
                panic!("{name}={path} is not under the secret mount {mount_path}")
            });
            referenced.insert(key.to_string());
            file_settings.insert(base.to_string());
        }
    }
    let all_secrets: BTreeSet<String> = secret_settings().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        file_settings, all_secrets,
        "every secret setting is given as *_FILE"
    );
    let keys: BTreeSet<String> = at(secret, "stringData")
        .as_mapping()
        .unwrap_or_else(|| panic!("stringData"))
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        keys, referenced,
        "secret.example.yaml holds exactly the files the Deployment reads"
    );
}

/// STATE_DIR holds the store (whom the bridge suspended, the identity map): on Kubernetes it must outlive the
/// pod, so it is the claim of pvc.yaml, mounted where STATE_DIR points.
#[test]
fn kubernetes_state_dir_is_a_persistent_volume_claim() {
    let objects = k8s_objects();
    let dep = &objects["Deployment"];
    let pod = at(dep, "spec.template.spec");
    let c = &seq_at(pod, "containers")[0];
    let state_dir = seq_at(c, "env")
        .iter()
        .find(|e| str_at(e, "name") == "STATE_DIR")
        .map(|e| str_at(e, "value").to_string())
        .unwrap_or_else(|| panic!("STATE_DIR is set"));
    let mount = seq_at(c, "volumeMounts")
        .iter()
        .find(|m| str_at(m, "mountPath") == state_dir)
        .map(|m| str_at(m, "name").to_string())
        .unwrap_or_else(|| panic!("a volume is mounted at STATE_DIR"));
    let volume = seq_at(pod, "volumes")
        .iter()
        .find(|v| str_at(v, "name") == mount)
        .unwrap_or_else(|| panic!("the volume {mount}"));
    let pvc = &objects["PersistentVolumeClaim"];
    assert_eq!(
        str_at(volume, "persistentVolumeClaim.claimName"),
        str_at(pvc, "metadata.name"),
        "STATE_DIR is the claim of pvc.yaml, not an emptyDir"
    );
    assert_eq!(
        seq_at(pvc, "spec.accessModes")[0].as_str(),
        Some("ReadWriteOnce")
    );
}

#[test]
fn kubernetes_service_monitor_and_kustomization_fit_together() {
    let objects = k8s_objects();
    let dep = &objects["Deployment"];
    let pod_labels = at(dep, "spec.template.metadata.labels")
        .as_mapping()
        .unwrap_or_else(|| panic!("pod labels"));
    let svc = &objects["Service"];
    for (k, v) in at(svc, "spec.selector")
        .as_mapping()
        .unwrap_or_else(|| panic!("Service selector"))
    {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the Service selects the pod ({k:?})"
        );
    }
    let port = &seq_at(svc, "spec.ports")[0];
    assert_eq!(at(port, "port").as_u64(), Some(8430));
    let port_name = str_at(port, "name");

    let sm = &objects["ServiceMonitor"];
    assert_eq!(str_at(sm, "apiVersion"), "monitoring.coreos.com/v1");
    let ep = &seq_at(sm, "spec.endpoints")[0];
    assert_eq!(str_at(ep, "path"), "/metrics");
    assert_eq!(
        str_at(ep, "port"),
        port_name,
        "the ServiceMonitor scrapes the Service's named port"
    );
    let svc_labels = at(svc, "metadata.labels")
        .as_mapping()
        .unwrap_or_else(|| panic!("Service labels"));
    for (k, v) in at(sm, "spec.selector.matchLabels")
        .as_mapping()
        .unwrap_or_else(|| panic!("ServiceMonitor selector"))
    {
        assert_eq!(
            svc_labels.get(k),
            Some(v),
            "the ServiceMonitor selects the Service ({k:?})"
        );
    }

    let kust = &objects["Kustomization"];
    let listed: BTreeSet<String> = seq_at(kust, "resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    for f in k8s_files() {
        let expected = !matches!(f.as_str(), "kustomization.yaml" | "secret.example.yaml");
        assert_eq!(
            listed.contains(&f),
            expected,
            "kustomization.yaml lists {f}: {expected}"
        );
    }
    let image = str_at(&seq_at(dep, "spec.template.spec.containers")[0], "image");
    let image_name = image.split(':').next().unwrap_or(image);
    assert!(
        seq_at(kust, "images")
            .iter()
            .any(|i| i.get("name").and_then(Value::as_str) == Some(image_name)),
        "kustomization.yaml's images: rewrites the Deployment's image {image_name}"
    );
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let Some(tool) = validator("kubernetes-validate") else {
        return;
    };
    // ServiceMonitor (a CRD) and Kustomization have no bundled schema; the tests above check them.
    let out = run(Command::new(tool)
        .args(["--strict", "--quiet"])
        .current_dir(repo().join(K8S_DIR))
        .args(["deployment.yaml", "service.yaml", "secret.example.yaml"]));
    assert_success("kubernetes-validate --strict", &out);
}

// ---------------------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------------------

/// An INI-ish unit file: section -> key -> every value given (systemd keys may repeat).
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

const UNIT: &str = "deploy/systemd/authentik-bridge.service";

#[test]
fn systemd_unit_is_hardened_and_passes_credentials() {
    let unit = unit_file(&read(UNIT));
    let service = &unit["Service"];
    let one = |k: &str| -> &str {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("[Service] {k}= is missing"));
        v.last().map(String::as_str).unwrap_or_default()
    };
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "on-failure"),
        ("EnvironmentFile", "-/etc/authentik-bridge/bridge.env"),
    ] {
        assert_eq!(one(key), expected, "[Service] {key}=");
    }
    assert!(
        service["SystemCallFilter"]
            .iter()
            .any(|v| v == "@system-service"),
        "SystemCallFilter=@system-service"
    );
    assert!(
        one("ExecStart").starts_with("/usr/local/bin/authentik-bridge"),
        "ExecStart runs the bridge"
    );
    assert!(
        unit.contains_key("Install"),
        "[Install] so that it can be enabled"
    );

    // Credentials: every secret setting as NAME_FILE=%d/<credential>, each credential loaded.
    let loaded: BTreeSet<String> = service
        .get("LoadCredential")
        .unwrap_or_else(|| panic!("LoadCredential= is missing"))
        .iter()
        .map(|v| {
            let (id, path) = v
                .split_once(':')
                .unwrap_or_else(|| panic!("LoadCredential=ID:PATH, got {v}"));
            assert!(
                path.starts_with('/'),
                "credential {id} from an absolute path"
            );
            id.to_string()
        })
        .collect();
    let mut via_file = BTreeSet::new();
    for e in service.get("Environment").into_iter().flatten() {
        let (name, value) = e
            .split_once('=')
            .unwrap_or_else(|| panic!("Environment=NAME=VALUE, got {e}"));
        assert_known_env(name, UNIT);
        assert!(
            !secret_settings().contains(name),
            "{name} is a secret: use LoadCredential and {name}_FILE"
        );
        if let Some(base) = name.strip_suffix("_FILE") {
            let id = value.strip_prefix("%d/").unwrap_or_else(|| {
                panic!("{name} points into the credentials directory (%d/), got {value}")
            });
            assert!(
                loaded.contains(id),
                "{name} reads credential {id}, which no LoadCredential= provides"
            );
            via_file.insert(base.to_string());
        }
    }
    let all_secrets: BTreeSet<String> = secret_settings().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        via_file, all_secrets,
        "every secret setting is given as *_FILE"
    );

    // bridge.env.example: non-secret settings only.
    let example = read("deploy/systemd/bridge.env.example");
    for line in example.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some((name, _)) = line.split_once('=') {
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                assert_known_env(name, "bridge.env.example");
                assert!(
                    !secret_settings().contains(name) && !name.ends_with("_FILE"),
                    "bridge.env.example must not carry secrets ({name}); they go through LoadCredential"
                );
            }
        }
    }
}

/// The unit with ExecStart pointing at the freshly built binary, since `systemd-analyze verify` checks that
/// the executable exists.
fn unit_for_analysis() -> PathBuf {
    let dir = scratch("systemd");
    let text = read(UNIT).replace(
        "ExecStart=/usr/local/bin/authentik-bridge",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_authentik-bridge")),
    );
    let path = dir.join("authentik-bridge.service");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_it_ok() {
    let Some(tool) = validator("systemd-analyze") else {
        return;
    };
    let path = unit_for_analysis();
    let out = run(Command::new(&tool).arg("verify").arg(&path));
    assert_success("systemd-analyze verify", &out);
    // verify exits 0 on unknown keys and bad values, and only says so on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("authentik-bridge.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify:\n{}",
        complaints.join("\n")
    );

    // Exposure 2.0 or lower ("OK"); a unit without the hardening block rates about 9.6 ("UNSAFE").
    let out = run(Command::new(&tool)
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&path));
    assert_success(
        "systemd-analyze security --offline=yes --threshold=20",
        &out,
    );
}

// ---------------------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------------------

const ALERTS: &str = "deploy/monitoring/alerts.yml";

fn alert_rules() -> Vec<Value> {
    let doc = yaml(ALERTS);
    let mut rules = Vec::new();
    for g in seq_at(&doc, "groups") {
        assert!(
            g.get("name").and_then(Value::as_str).is_some(),
            "each group has a name"
        );
        rules.extend(seq_at(g, "rules").iter().cloned());
    }
    rules
}

#[test]
fn alert_rules_use_existing_metrics_and_say_what_to_do() {
    let catalogue = metric_catalogue();
    let rules = alert_rules();
    let mut names = BTreeSet::new();
    for rule in &rules {
        let alert = str_at(rule, "alert");
        assert!(
            names.insert(alert.to_string()),
            "alert {alert} is defined twice"
        );
        let expr = str_at(rule, "expr");
        let available = check_expr(expr, &catalogue, alert);
        assert!(
            rule.get("labels").and_then(|l| l.get("severity")).is_some(),
            "{alert}: labels.severity"
        );
        for key in ["summary", "description"] {
            let text = str_at(rule, &format!("annotations.{key}"));
            assert!(
                text.len() > 20,
                "{alert}: annotations.{key} says what happened and what to do"
            );
            for l in template_labels(text) {
                assert!(
                    available.contains(&l),
                    "{alert}: {key} uses $labels.{l}, which {expr:?} does not carry"
                );
            }
        }
    }
    let exprs: Vec<&str> = rules.iter().map(|r| str_at(r, "expr")).collect();
    let uses = |needle: &str| exprs.iter().any(|e| e.contains(needle));
    for needle in [
        "rejected_auth|rejected_body",
        "bridge_upstream_errors_total",
        "bridge_queue_depth / bridge_queue_capacity",
        "bridge_removal_guard_active",
        "bridge_removal_guard_tripped_total",
        "bridge_reconcile_last_success_timestamp_seconds",
        "up{",
    ] {
        assert!(uses(needle), "an alert watches {needle}");
    }
    // The staleness threshold is two default reconcile intervals.
    let interval = SETTINGS
        .iter()
        .find(|s| s.name == "RECONCILE_INTERVAL")
        .and_then(|s| s.default)
        .unwrap_or_else(|| panic!("RECONCILE_INTERVAL has a default"));
    assert!(
        uses(&format!("> 2 * {interval}")),
        "the reconcile staleness alert uses 2 * RECONCILE_INTERVAL's default ({interval})"
    );
}

#[test]
fn promtool_checks_the_rules() {
    let Some(tool) = validator("promtool") else {
        return;
    };
    let out = run(Command::new(tool)
        .args(["check", "rules"])
        .arg(repo().join(ALERTS)));
    assert_success("promtool check rules", &out);
}

/// Series in, alerts out. The rules are copied without annotations, since promtool compares annotations
/// whole and their wording is checked above.
const RULE_TESTS: &str = r#"
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="authentik-bridge", instance="b:8430"}'
        values: '1 1 0x20'
      - series: 'bridge_webhooks_total{job="authentik-bridge", instance="b:8430", source="authentik", outcome="rejected_auth"}'
        values: '0+1x40'
      - series: 'bridge_webhooks_total{job="authentik-bridge", instance="b:8430", source="outline", outcome="accepted"}'
        values: '0+5x40'
      - series: 'bridge_queue_depth{job="authentik-bridge", instance="b:8430"}'
        values: '10x5 900x20'
      - series: 'bridge_queue_capacity{job="authentik-bridge", instance="b:8430"}'
        values: '1024x40'
      - series: 'bridge_removal_guard_active{job="authentik-bridge", instance="b:8430"}'
        values: '0x9 1x30'
      - series: 'bridge_removal_guard_tripped_total{job="authentik-bridge", instance="b:8430"}'
        values: '0x9 1x30'
      - series: 'bridge_upstream_errors_total{job="authentik-bridge", instance="b:8430", upstream="outline", call="groups.add_user"}'
        values: '0x10 0+2x30'
    alert_rule_test:
      - eval_time: 2m
        alertname: AuthentikBridgeDown
        exp_alerts: []
      - eval_time: 10m
        alertname: AuthentikBridgeDown
        exp_alerts:
          - exp_labels: {severity: critical, job: authentik-bridge, instance: "b:8430"}
      - eval_time: 25m
        alertname: AuthentikBridgeWebhooksRejected
        exp_alerts:
          - exp_labels: {severity: warning, job: authentik-bridge, instance: "b:8430", source: authentik, outcome: rejected_auth}
      - eval_time: 3m
        alertname: AuthentikBridgeQueueNearlyFull
        exp_alerts: []
      - eval_time: 15m
        alertname: AuthentikBridgeQueueNearlyFull
        exp_alerts:
          - exp_labels: {severity: warning, job: authentik-bridge, instance: "b:8430"}
      - eval_time: 5m
        alertname: AuthentikBridgeRemovalGuardTripped
        exp_alerts: []
      - eval_time: 12m
        alertname: AuthentikBridgeRemovalGuardTripped
        exp_alerts:
          - exp_labels: {severity: critical, job: authentik-bridge, instance: "b:8430"}
      - eval_time: 35m
        alertname: AuthentikBridgeUpstreamErrors
        exp_alerts:
          - exp_labels: {severity: warning, job: authentik-bridge, instance: "b:8430", upstream: outline, call: groups.add_user}
  # A wrong webhook token: three refusals in a row page; one accepted push clears it.
  - interval: 1m
    input_series:
      - series: 'bridge_webhooks_refused_in_a_row{job="authentik-bridge", instance="b:8430", source="authentik"}'
        values: '0 1 2 3 4 5 6 0x10'
    alert_rule_test:
      - eval_time: 2m
        alertname: AuthentikBridgeWebhookTokenWrong
        exp_alerts: []
      - eval_time: 5m
        alertname: AuthentikBridgeWebhookTokenWrong
        exp_alerts:
          - exp_labels: {severity: critical, job: authentik-bridge, instance: "b:8430", source: authentik}
      - eval_time: 10m
        alertname: AuthentikBridgeWebhookTokenWrong
        exp_alerts: []
  # Held-back suspensions page at once; invitations waiting alert only after two hours of a full backlog.
  - interval: 1m
    input_series:
      - series: 'bridge_suspension_guard_active{job="authentik-bridge", instance="b:8430"}'
        values: '0x9 1x10'
      - series: 'bridge_suspension_guard_tripped_total{job="authentik-bridge", instance="b:8430"}'
        values: '0x9 1x10'
      - series: 'bridge_invites_pending{job="authentik-bridge", instance="b:8430"}'
        values: '5x100 0x10 7x150'
    alert_rule_test:
      - eval_time: 5m
        alertname: AuthentikBridgeSuspensionGuardTripped
        exp_alerts: []
      - eval_time: 12m
        alertname: AuthentikBridgeSuspensionGuardTripped
        exp_alerts:
          - exp_labels: {severity: critical, job: authentik-bridge, instance: "b:8430"}
      - eval_time: 100m
        alertname: AuthentikBridgeInvitationsWaiting
        exp_alerts: []
      - eval_time: 200m
        alertname: AuthentikBridgeInvitationsWaiting
        exp_alerts: []
      - eval_time: 235m
        alertname: AuthentikBridgeInvitationsWaiting
        exp_alerts:
          - exp_labels: {severity: warning, job: authentik-bridge, instance: "b:8430"}
  # Reconcile staleness, per sink: a sink that reconciles every 15 minutes stays quiet; one that stopped
  # alerts, though the other sink of the same bridge is fine.
  - interval: 1m
    input_series:
      - series: 'bridge_reconcile_last_success_timestamp_seconds{job="authentik-bridge", instance="fresh:8430", sink="outline"}'
        values: '0x14 900x14 1800x14 2700x14 3600x14'
      - series: 'bridge_reconcile_last_success_timestamp_seconds{job="authentik-bridge", instance="stale:8430", sink="outline"}'
        values: '0x14 900x14 1800x14 2700x14 3600x14'
      - series: 'bridge_reconcile_last_success_timestamp_seconds{job="authentik-bridge", instance="stale:8430", sink="openfga"}'
        values: '0x14 900x60'
    alert_rule_test:
      - eval_time: 40m
        alertname: AuthentikBridgeReconcileStale
        exp_alerts: []
      - eval_time: 70m
        alertname: AuthentikBridgeReconcileStale
        exp_alerts:
          - exp_labels: {severity: warning, job: authentik-bridge, instance: "stale:8430", sink: openfga}
"#;

#[test]
fn promtool_unit_tests_fire_the_alerts() {
    let Some(tool) = validator("promtool") else {
        return;
    };
    let dir = scratch("promtool");
    let mut doc = yaml(ALERTS);
    let groups = doc
        .get_mut("groups")
        .and_then(Value::as_sequence_mut)
        .unwrap_or_else(|| panic!("groups"));
    for g in groups {
        for r in g
            .get_mut("rules")
            .and_then(Value::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            if let Some(m) = r.as_mapping_mut() {
                m.remove("annotations");
            }
        }
    }
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, serde_yaml::to_string(&doc).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: {e}", rules.display()));
    let tests = dir.join("tests.yml");
    std::fs::write(&tests, format!("rule_files:\n  - rules.yml\n{RULE_TESTS}"))
        .unwrap_or_else(|e| panic!("{}: {e}", tests.display()));
    let out = run(Command::new(tool).args(["test", "rules"]).arg(&tests));
    assert_success("promtool test rules", &out);
}

// ---------------------------------------------------------------------------------------------------------
// Grafana dashboard
// ---------------------------------------------------------------------------------------------------------

const DASHBOARD: &str = "deploy/monitoring/grafana-dashboard.json";

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: not JSON: {e}"))
}

/// Every query of every panel (rows included, for collapsed rows), with its panel's title.
fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default().to_string();
                let legend = t["legendFormat"].as_str().unwrap_or_default().to_string();
                out.push((title.clone(), expr, legend));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

#[test]
fn dashboard_uses_existing_metrics_through_the_datasource_input() {
    let d = dashboard();
    let catalogue = metric_catalogue();
    let schema = d["schemaVersion"].as_u64().unwrap_or_default();
    assert!(
        (36..=41).contains(&schema),
        "schemaVersion around 39, got {schema}"
    );
    assert!(
        d["__inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "__inputs declares DS_PROMETHEUS"
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {} has an id", p["title"]));
        assert!(ids.insert(id), "panel id {id} is unique");
        assert!(
            p["gridPos"].is_object(),
            "panel {} has a gridPos",
            p["title"]
        );
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {} uses the input",
                p["title"]
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                assert_eq!(
                    t["datasource"]["uid"], "${DS_PROMETHEUS}",
                    "panel {} targets use the input",
                    p["title"]
                );
            }
        }
    }
    let queries = dashboard_queries(&d);
    assert!(!queries.is_empty());
    for (title, expr, legend) in &queries {
        assert!(!expr.is_empty(), "panel {title}: empty query");
        let available = check_expr(expr, &catalogue, &format!("panel {title}"));
        for l in template_labels(legend) {
            assert!(
                available.contains(&l),
                "panel {title}: legend {{{{{l}}}}} is not a label of {expr:?}"
            );
        }
    }
    let all: String = queries
        .iter()
        .map(|(_, e, _)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for metric in [
        "bridge_webhooks_total",
        "bridge_jobs_total",
        "bridge_job_duration_seconds_bucket",
        "bridge_queue_depth",
        "bridge_queue_capacity",
        "bridge_upstream_requests_total",
        "bridge_upstream_errors_total",
        "bridge_outline_throttled_total",
        "bridge_membership_changes_total",
        "bridge_cache_requests_total",
        "bridge_removal_guard_active",
        "bridge_reconcile_last_success_timestamp_seconds",
        "bridge_ids_skipped_total",
        "bridge_account_changes_total",
        "bridge_account_refusals_total",
        "bridge_suspension_guard_active",
        "bridge_invites_pending",
        "bridge_invite_requests_left",
        "bridge_invites_total",
    ] {
        assert!(all.contains(metric), "the dashboard shows {metric}");
    }
    assert!(
        all.contains("histogram_quantile("),
        "job duration as quantiles"
    );
}

/// promtool has no expression checker without a server, so each query becomes a recording rule, with
/// Grafana's variables replaced, and `promtool check rules` parses it.
#[test]
fn promtool_parses_every_dashboard_query() {
    let Some(tool) = validator("promtool") else {
        return;
    };
    let queries = dashboard_queries(&dashboard());
    let rules: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr, _))| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$__interval", "1m")
                .replace("$instance", ".*");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr })
        })
        .collect();
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = scratch("dashboard");
    let path = dir.join("dashboard-queries.yml");
    // JSON is YAML, so promtool reads it as it is.
    std::fs::write(&path, doc.to_string()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let out = run(Command::new(tool).args(["check", "rules"]).arg(&path));
    assert_success("promtool check rules (dashboard queries)", &out);
}

/// Every relative link in the README and the book resolves: to a file that exists, and, with a `#fragment`,
/// to a heading of that file (GitHub's and mdBook's anchors: lowercase, punctuation dropped, spaces to `-`).
#[test]
fn every_relative_link_in_the_readme_and_the_book_resolves() {
    let mut pages = vec![repo().join("README.md")];
    let mut dirs = vec![repo().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("docs/ is readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let anchors = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| {
                l.trim_start_matches('#')
                    .trim()
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect()
            })
            .collect()
    };
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a page");
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                continue;
            }
            for m in link.captures_iter(line) {
                let target = &m[1];
                if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                    continue;
                }
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let path = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("a folder").join(file)
                };
                let ok = path.exists()
                    && (fragment.is_empty()
                        || path.is_dir()
                        || anchors(&std::fs::read_to_string(&path).unwrap_or_default())
                            .contains(fragment));
                if !ok {
                    broken.push(format!(
                        "{}: {target}",
                        page.strip_prefix(repo()).unwrap_or(page).display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    let readme = std::fs::metadata(repo().join("README.md"))
        .expect("README")
        .len();
    assert!(
        readme <= 16_384,
        "the README is {readme} bytes; the deep sections belong in docs/"
    );
    assert!(
        repo().join("docs/book.toml").is_file() && repo().join("docs/src/SUMMARY.md").is_file()
    );
}
