//! dropgate-core must stay pure: this test fails when its manifest, or anything it
//! pulls in through Cargo.lock, brings an async runtime or an I/O client.

use std::collections::{BTreeSet, HashMap};

const FORBIDDEN: [&str; 6] = ["tokio", "redis", "sqlx", "rdkafka", "axum", "reqwest"];

fn read(path: &str) -> toml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.parse()
        .unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn dependency_names(manifest: &toml::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut tables = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        tables.extend(manifest.get(section).and_then(toml::Value::as_table));
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            for section in ["dependencies", "build-dependencies"] {
                tables.extend(target.get(section).and_then(toml::Value::as_table));
            }
        }
    }
    for table in tables {
        for (name, spec) in table {
            // `foo = { package = "tokio" }` renames must not slip through.
            let package = spec
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(name);
            names.insert(package.to_owned());
        }
    }
    names
}

#[test]
fn manifest_has_no_io_or_async_dependency() {
    let manifest = read(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let names = dependency_names(&manifest);
    assert!(
        names.contains("serde"),
        "the check must see the real list: {names:?}"
    );
    let bad: Vec<_> = FORBIDDEN.iter().filter(|f| names.contains(**f)).collect();
    assert!(
        bad.is_empty(),
        "dropgate-core must stay pure, but depends on {bad:?}"
    );
}

#[test]
fn nothing_reachable_from_core_in_the_lockfile_is_io_or_async() {
    let lock = read(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
    let packages = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .expect("Cargo.lock lists packages");
    let graph: HashMap<&str, Vec<&str>> = packages
        .iter()
        .filter_map(|package| {
            let name = package.get("name")?.as_str()?;
            let deps = package
                .get("dependencies")
                .and_then(toml::Value::as_array)
                .map(|deps| {
                    deps.iter()
                        .filter_map(toml::Value::as_str)
                        .filter_map(|dep| dep.split(' ').next())
                        .collect()
                })
                .unwrap_or_default();
            Some((name, deps))
        })
        .collect();
    let mut reachable = BTreeSet::new();
    let mut stack = vec!["dropgate-core"];
    while let Some(name) = stack.pop() {
        if reachable.insert(name) {
            stack.extend(graph.get(name).into_iter().flatten());
        }
    }
    assert!(
        reachable.contains("sha2"),
        "walk must reach core's deps: {reachable:?}"
    );
    let bad: Vec<_> = FORBIDDEN
        .iter()
        .filter(|f| reachable.contains(**f))
        .collect();
    assert!(
        bad.is_empty(),
        "dropgate-core reaches {bad:?} through Cargo.lock"
    );
}
