//! Shared helpers for Tillbridge's integration tests.
//!
//! Today: locating the reference material in `../shared/` (Magento's own test vectors) and
//! running a folder of tax vectors. Later issues add the Commerce and POS emulators and the
//! deterministic simulator here.

pub mod sim;

use std::path::{Path, PathBuf};

use tillbridge_core::tax::conformance::{RunOptions, VectorOutcome, run_vector};

/// The `shared/` folder: `$TILLBRIDGE_SHARED_DIR`, else `../shared` next to the workspace.
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TILLBRIDGE_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let candidate = workspace.join("../shared");
    if candidate.is_dir() {
        return candidate;
    }
    PathBuf::from("/work/shared")
}

/// A vector folder under `shared/vectors/`, which must exist: a missing folder is a failure,
/// never a silent skip.
pub fn vectors_dir(name: &str) -> PathBuf {
    let dir = shared_dir().join("vectors").join(name);
    assert!(
        dir.is_dir(),
        "vector folder {} not found; set TILLBRIDGE_SHARED_DIR to the shared/ folder",
        dir.display()
    );
    dir
}

/// Every `*.json` file of a folder, sorted, except READMEs and format notes.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Run every vector file of a folder; returns (file, outcome or error text).
pub fn run_tax_folder(
    dir: &Path,
    opts: RunOptions,
) -> Vec<(PathBuf, Result<VectorOutcome, String>)> {
    json_files(dir)
        .into_iter()
        .map(|path| {
            let outcome = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| e.to_string())
                })
                .and_then(|v| run_vector(&v, opts).map_err(|e| e.to_string()));
            (path, outcome)
        })
        .collect()
}

/// A readable list of failures (empty when everything passed).
pub fn failures(results: &[(PathBuf, Result<VectorOutcome, String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, r) in results {
        match r {
            Ok(o) if o.passed() => {}
            Ok(o) => {
                let first: Vec<String> = o
                    .mismatches
                    .iter()
                    .take(4)
                    .map(|m| format!("{} expected {} got {}", m.field, m.expected, m.actual))
                    .collect();
                out.push(format!(
                    "{} ({}): {}",
                    o.id,
                    o.mismatches.len(),
                    first.join("; ")
                ));
            }
            Err(e) => out.push(format!("{}: cannot run: {e}", path.display())),
        }
    }
    out
}
