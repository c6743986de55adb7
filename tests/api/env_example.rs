//! `.env.example` documents every setting the binary reads: the settings table, `BRIDGE_CONFIG`, and any
//! environment variable named literally in the sources.

use std::collections::BTreeSet;
use std::path::Path;

use authentik_bridge::configuration::SETTINGS;

fn env_reads_in(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("src readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            env_reads_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source readable");
            for marker in ["env::var(\"", "env.var(\""] {
                for (i, _) in text.match_indices(marker) {
                    let rest = &text[i + marker.len()..];
                    if let Some(end) = rest.find('"') {
                        found.insert(rest[..end].to_string());
                    }
                }
            }
        }
    }
}

#[test]
fn env_example_documents_every_setting() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join(".env.example")).expect(".env.example exists");
    let documented: BTreeSet<String> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect();
    let mut read: BTreeSet<String> = SETTINGS.iter().map(|s| s.name.to_string()).collect();
    read.insert("BRIDGE_CONFIG".into());
    env_reads_in(&root.join("src"), &mut read);
    let missing: Vec<&String> = read.iter().filter(|n| !documented.contains(*n)).collect();
    assert!(missing.is_empty(), ".env.example lacks: {missing:?}");
    // The example repeats the defaults for the reader; the table stays their one source, so they must agree.
    for line in example.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if let Some(spec) = SETTINGS.iter().find(|s| s.name == name.trim()) {
            if let Some(default) = spec.default {
                assert_eq!(
                    value.trim(),
                    default,
                    ".env.example's {name} differs from its default"
                );
            }
        }
    }
    for s in SETTINGS {
        if let Some(default) = s.default {
            assert!(
                example.contains(&format!("{}={default}", s.name)),
                "{} should show its default {default}",
                s.name
            );
        }
    }
}

/// The README's settings table is the settings table: every setting, once, with the default the loader
/// uses, and nothing else.
#[test]
fn the_readme_lists_every_setting_with_its_default() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let table = readme
        .split("## Settings")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Settings section");
    let rows: Vec<(String, String)> = table
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let name = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            Some((
                name.to_string(),
                cells.get(1)?.trim_matches('`').to_string(),
            ))
        })
        .collect();
    let listed: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(
        listed, expected,
        "the README's table follows SETTINGS, in order"
    );
    for (spec, (_, default)) in SETTINGS.iter().zip(&rows) {
        assert_eq!(
            default.as_str(),
            spec.default.unwrap_or("–"),
            "{}'s default",
            spec.name
        );
    }
}
