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
