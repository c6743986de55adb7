//! Imports in `src/` go one way, down the data flow: the pure domain and settings, the HTTP plumbing every
//! client shares and the embedded store, the source, the runtime, the sinks, the HTTP surface, the application. Rust allows any
//! import inside a crate, so this test reads the `crate::` and `super::` paths of every file and fails on one
//! against that direction, or on a sink folder that reaches into another's.

use std::path::Path;

/// Each top-level module's place in the flow; a file may import its own rank and those below.
const RANKS: &[(&str, usize)] = &[
    ("domain", 0),
    ("configuration", 0),
    ("metrics", 0),
    ("reason", 0),
    ("clients", 1),
    ("store", 1),
    ("source", 2),
    ("runtime", 3),
    ("sinks", 4),
    ("http", 5),
    ("app", 6),
];

fn rank(module: &str) -> Option<usize> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The file's code without comments and without its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable");
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(top-level module, sink folder)` of every path the file names: `crate::a::b`, or `super::…` resolved
/// against the file's own place.
fn imports(place: &[String], code: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (i, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: Vec<&str> = code[i..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .collect();
        let mut at: Vec<String> = place.to_vec();
        let rest: Vec<&str> = if path[0] == "crate" {
            at.clear();
            path[1..].to_vec()
        } else {
            let ups = path.iter().take_while(|p| **p == "super").count();
            at.truncate(at.len().saturating_sub(ups));
            path[ups..].to_vec()
        };
        at.extend(rest.iter().map(|s| s.to_string()));
        if let Some(top) = at.first() {
            out.push((
                top.clone(),
                (top == "sinks").then(|| at.get(1).cloned()).flatten(),
            ));
        }
    }
    out
}

#[test]
fn imports_follow_the_data_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut files = vec![src.clone()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("dir")
                    .map(|e| e.expect("entry").path()),
            );
            continue;
        }
        let rel: Vec<String> = p
            .strip_prefix(&src)
            .expect("in src")
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        // lib.rs and main.rs sit above everything; any other module must have its place in the flow.
        if rel.len() == 1 && (rel[0] == "lib" || rel[0] == "main") {
            continue;
        }
        let Some(own) = rank(&rel[0]) else {
            wrong.push(format!("{} has no place in RANKS", rel.join("/")));
            continue;
        };
        // A file's `super` is its folder; a folder's `mod.rs` is the folder itself.
        let place = if rel.last().map(String::as_str) == Some("mod") {
            &rel[..rel.len() - 1]
        } else {
            &rel[..]
        };
        let own_sink = (rel[0] == "sinks" && rel.len() > 2).then(|| rel[1].clone());
        for (top, sink) in imports(place, &code(&p)) {
            let against_flow = rank(&top).is_some_and(|r| r > own);
            let other_sink = own_sink.is_some() && sink.is_some() && sink != own_sink;
            if against_flow || other_sink {
                wrong.push(format!(
                    "{} -> {top}{}",
                    rel.join("/"),
                    sink.map(|s| format!("/{s}")).unwrap_or_default()
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the data flow:\n{}",
        wrong.join("\n")
    );
}
