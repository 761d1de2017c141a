//! The layers hold: a module imports only from the layers below it (ARCHITECTURE.md), and the
//! lower layers use no HTTP, database or HTTP-client crate.
//!
//! Read from the sources: every `crate::` path (in `use` lines, `{...}` groups and inline
//! paths) and every `super::` path of a top-level module is an edge from the file's module to
//! the module it names. An edge that points up, or sideways between two modules of one layer,
//! fails the test, unless it is in [`KNOWN_DEBT`]; a debt entry that no longer exists fails it
//! too, so the list only shrinks and always says what is left to cut.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Top to bottom. A module path belongs to the row with its longest matching prefix.
const LAYERS: &[(&str, &[&str])] = &[
    ("command line", &["cli"]),
    ("API client", &["client"]),
    ("wiring", &["app"]),
    ("HTTP", &["api"]),
    ("HTTP errors", &["error"]),
    ("Backstage catalog", &["catalog"]),
    ("Backstage notifications", &["notifications::backstage"]),
    ("Backstage auth", &["auth"]),
    ("reports", &["reports"]),
    ("day-2 jobs", &["day2"]),
    ("use cases", &["usecases", "provisioning::approvals"]),
    ("provisioning", &["provisioning"]),
    ("side effects", &["audit", "notifications"]),
    ("jobs", &["jobs"]),
    ("persistence", &["db"]),
    ("telemetry", &["telemetry"]),
    ("domain: guardrails", &["guardrails"]),
    ("domain: cost", &["cost"]),
    ("domain: offerings and policy", &["templates", "policy"]),
    ("authorization", &["access"]),
    ("configuration", &["config"]),
    ("drivers", &["provisioning::drivers"]),
    ("shared words", &["vocab"]),
];

/// Crates a layer may not use, by row name: the lower layers are pure.
const FORBIDDEN: &[(&[&str], &[&str])] = &[
    (
        &[
            "shared words",
            "configuration",
            "domain: offerings and policy",
            "domain: cost",
            "domain: guardrails",
        ],
        &["axum", "sea_orm", "reqwest", "tower"],
    ),
    (&["drivers"], &["axum", "reqwest", "tower"]),
];

/// Edges that still point the wrong way, as `from -> to` of module paths (as assigned to
/// rows). Cutting one means deleting its line here.
const KNOWN_DEBT: &[&str] = &[];

/// Files outside `src/db/` allowed to build sea-orm queries: none. Should one ever be listed
/// (a move in progress), a listed file without queries fails the check too, so the list only
/// shrinks.
const KNOWN_QUERIES: &[&str] = &[];

/// What building a sea-orm query looks like: its traits, raw statements, entity calls and
/// active-model values. Identifiers match whole; `Set(` only as sea-orm's `ActiveValue::Set`
/// or imported bare (not another enum's `Set` variant).
const QUERY_BUILDERS: &[&str] = &[
    "EntityTrait",
    "QueryFilter",
    "ColumnTrait",
    "QueryOrder",
    "QuerySelect",
    "ActiveModelTrait",
    "IntoActiveModel",
    "Statement::from",
    "sea_query::",
    "Entity::find",
    "Entity::insert",
    "Entity::update",
    "Entity::delete",
    "Set(",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` the crate root.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source with comments and string literals blanked, so neither makes an edge.
fn code_only(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // Raw strings (r"..", r#".."#) are rare in import-bearing code; plain ones suffice.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The paths (as segments, up to two deep) a file names under `crate::`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let preceded_by_ident = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[i + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        paths_from(rest, Vec::new(), &mut out);
    }
    out
}

/// Reads `a::b`, `a::{b, c::d}` or `{a, b::c}` at the start of `s`, prefixed by `prefix`.
fn paths_from(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut item));
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        items.push(item);
        for it in items {
            if !it.trim().is_empty() {
                paths_from(&it, prefix.clone(), out);
            }
        }
        return;
    }
    let first = ident_at(s);
    if first.is_empty() || first == "self" {
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return;
    }
    let mut path = prefix;
    path.push(first.clone());
    let after = &s[first.len()..];
    if path.len() < 2
        && let Some(next) = after.strip_prefix("::")
    {
        paths_from(next, path, out);
        return;
    }
    out.push(path);
}

fn row_of(module: &[String]) -> Option<(usize, String)> {
    let joined = module.join("::");
    let mut best: Option<(usize, &str)> = None;
    for (rank, (_, prefixes)) in LAYERS.iter().enumerate() {
        for p in *prefixes {
            let hit = joined == *p || joined.starts_with(&format!("{p}::"));
            if hit && best.is_none_or(|(_, b)| p.len() > b.len()) {
                best = Some((rank, p));
            }
        }
    }
    best.map(|(r, p)| (r, p.to_owned()))
}

struct Graph {
    /// `from -> to` of row prefixes, with one file that makes the edge.
    edges: BTreeMap<(String, String), String>,
    /// Module path -> its row prefix, for every file.
    files: Vec<(PathBuf, String, usize)>,
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut g = Graph {
        edges: BTreeMap::new(),
        files: Vec::new(),
    };
    for f in files {
        let module = module_of(&f);
        let Some((rank, from)) = row_of(&module) else {
            // The crate root (lib.rs, main.rs) only declares modules.
            assert!(
                module.is_empty(),
                "{} belongs to no layer: add its module to LAYERS",
                f.display()
            );
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        let mut targets = crate_paths(&code);
        // `super::x` names a sibling of the file's module (`a::b` -> `a::x`; `a` -> `x`).
        let parent = &module[..module.len() - 1];
        let mut rest = code.as_str();
        while let Some(i) = rest.find("super::") {
            let preceded = rest[..i].ends_with("::");
            rest = &rest[i + "super::".len()..];
            if !preceded {
                paths_from(rest, parent.to_vec(), &mut targets);
            }
        }
        for t in targets {
            if let Some((_, to)) = row_of(&t)
                && to != from
            {
                g.edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| f.strip_prefix(src()).unwrap().display().to_string());
            }
        }
        g.files.push((f, from, rank));
    }
    g
}

fn rank(prefix: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, ps)| ps.contains(&prefix))
        .unwrap()
}

#[test]
fn modules_import_only_from_layers_below_them() {
    let g = graph();
    let debt: BTreeSet<&str> = KNOWN_DEBT.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut seen_debt = BTreeSet::new();
    for ((from, to), file) in &g.edges {
        let (rf, rt) = (rank(from), rank(to));
        // Rows are listed top to bottom: a lower row has a higher index.
        if rt > rf {
            continue;
        }
        let name = format!("{from} -> {to}");
        if debt.contains(name.as_str()) {
            seen_debt.insert(name);
            continue;
        }
        let how = if rt == rf { "sideways" } else { "up" };
        wrong.push(format!(
            "{name} ({how}: {} to {}; e.g. src/{file})",
            LAYERS[rf].0, LAYERS[rt].0
        ));
    }
    let gone: Vec<&&str> = debt.iter().filter(|d| !seen_debt.contains(**d)).collect();
    assert!(
        wrong.is_empty() && gone.is_empty(),
        "imports against the layers:\n  {}\ncut debt still listed in KNOWN_DEBT (delete these lines):\n  {}",
        wrong.join("\n  "),
        gone.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn the_lower_layers_use_no_http_database_or_client_crate() {
    let g = graph();
    let mut wrong = Vec::new();
    for (file, _, rank) in &g.files {
        let row = LAYERS[*rank].0;
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (rows, crates) in FORBIDDEN {
            if !rows.contains(&row) {
                continue;
            }
            for c in *crates {
                let uses = code.match_indices(&format!("{c}::")).any(|(i, _)| {
                    !code[..i]
                        .chars()
                        .last()
                        .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ':')
                });
                if uses {
                    wrong.push(format!(
                        "{} ({row}) uses {c}",
                        file.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The check reads what it should: a grouped import, a nested group and an inline path.
#[test]
fn the_import_reader_sees_groups_and_inline_paths() {
    let code = code_only(
        "use crate::{a::B, c::{d, e::F}, g};\n// crate::commented\nlet x = crate::h::i(\"crate::quoted\");\nmy_crate::not_ours();",
    );
    let got: BTreeSet<String> = crate_paths(&code)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = ["a::B", "c::d", "c::e", "g", "h::i"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
}

/// ARCHITECTURE.md shows the same rows, in the same order, as the table this test enforces.
#[test]
fn architecture_md_shows_the_layers_this_test_enforces() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let section = doc
        .split("## Layers")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("ARCHITECTURE.md has a Layers section");
    let rows: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .filter(|r| !r.starts_with("row (") && !r.starts_with("---"))
        .collect();
    let want: Vec<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(rows, want, "ARCHITECTURE.md's layer table is out of date");
}

/// The query builders `code` uses (see [`QUERY_BUILDERS`]).
fn query_builders(code: &str) -> Vec<&'static str> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    QUERY_BUILDERS
        .iter()
        .copied()
        .filter(|p| {
            code.match_indices(p).any(|(i, _)| {
                let before = code[..i].chars().last();
                let starts_ident = p.starts_with(|c: char| ident(c));
                let ends_ident = p.ends_with(|c: char| ident(c));
                let after = code[i + p.len()..].chars().next();
                if *p == "Set(" {
                    return code[..i].ends_with("ActiveValue::")
                        || !before.is_some_and(|c| ident(c) || c == ':');
                }
                // `Entity::find` also matches `request::Entity::find_by_id`; an identifier
                // pattern must not be the tail or head of a longer identifier.
                (!starts_ident || !before.is_some_and(ident))
                    && (!ends_ident || p.starts_with("Entity::") || !after.is_some_and(ident))
            })
        })
        .collect()
}

/// Persistence is one layer: only `src/db/` builds sea-orm queries; everything above calls its
/// repositories. The drivers are not checked: they talk SQL to tenants' servers through sqlx,
/// not to paved's database through sea-orm.
#[test]
fn only_the_repositories_build_queries() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let known: BTreeSet<&str> = KNOWN_QUERIES.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let rel = f
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("db/") || rel.starts_with("provisioning/drivers/") {
            continue;
        }
        // Unit tests read rows to assert on them: only production code must go through the
        // repositories (a file of tests, or a file's `#[cfg(test)] mod tests` at its end).
        if rel.ends_with("/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let production = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        let code = code_only(production);
        let used = query_builders(&code);
        if used.is_empty() {
            continue;
        }
        if known.contains(rel.as_str()) {
            seen.insert(rel);
            continue;
        }
        wrong.push(format!("src/{rel} uses {}", used.join(", ")));
    }
    let gone: Vec<&&str> = known.iter().filter(|k| !seen.contains(**k)).collect();
    assert!(
        wrong.is_empty() && gone.is_empty(),
        "queries outside src/db/ (move them into a repository there):\n  {}\nfiles without queries still listed in KNOWN_QUERIES (delete these lines):\n  {}",
        wrong.join("\n  "),
        gone.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The query check reads what it should: sea-orm's builders, not look-alikes.
#[test]
fn the_query_reader_tells_builders_from_look_alikes() {
    let flagged = |s: &str| query_builders(&code_only(s));
    assert_eq!(
        flagged("use sea_orm::{EntityTrait, QueryFilter};"),
        vec!["EntityTrait", "QueryFilter"]
    );
    assert_eq!(
        flagged("request::Entity::find_by_id(id)"),
        vec!["Entity::find"]
    );
    assert_eq!(flagged("a.status = Set(x);"), vec!["Set("]);
    assert_eq!(flagged("sea_orm::ActiveValue::Set(x)"), vec!["Set("]);
    assert!(
        flagged("db::requests::insert(txn, row); redis::Value::Set(items); MySet(1)").is_empty()
    );
    assert!(flagged("// Entity::find()\nlet s = \"QueryFilter\";").is_empty());
    assert!(flagged("struct MyEntityTraitish;").is_empty());
}
