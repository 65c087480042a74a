//! Locating the `shared/` reference folder (Magento's vectors, specs and XSDs).
//!
//! Rule, the same as `scripts/test.sh`: `$TILLBRIDGE_SHARED_DIR` when set (and then it must
//! exist: an explicit setting is never silently replaced); else `../shared` relative to the
//! current directory; else `shared/` next to the repository the executable was built from;
//! else `/work/shared`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that names the shared folder.
pub const ENV_VAR: &str = "TILLBRIDGE_SHARED_DIR";

/// The last-resort location.
pub const DEFAULT_DIR: &str = "/work/shared";

/// Where the shared folder was found, and by which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDir {
    pub path: PathBuf,
    pub found_by: FoundBy,
}

/// The rule that located the shared folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    EnvVar,
    CurrentDir,
    BuildRepo,
    Default,
}

impl fmt::Display for FoundBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EnvVar => "from TILLBRIDGE_SHARED_DIR",
            Self::CurrentDir => "../shared from the current directory",
            Self::BuildRepo => "next to the repository this binary was built from",
            Self::Default => "default location",
        })
    }
}

/// The shared folder could not be found.
#[derive(Debug, thiserror::Error)]
pub enum SharedDirError {
    #[error("TILLBRIDGE_SHARED_DIR is set to {0}, which is not a directory")]
    EnvVarNotADir(PathBuf),
    #[error(
        "the shared/ folder was not found (looked at {}); set TILLBRIDGE_SHARED_DIR to it",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound(Vec<PathBuf>),
}

/// What the locator looks at; separated from the process so the rule is testable.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// The value of `TILLBRIDGE_SHARED_DIR`, if set and non-empty.
    pub env: Option<PathBuf>,
    /// The current directory.
    pub current_dir: Option<PathBuf>,
    /// The workspace root this binary was built from.
    pub build_repo: Option<PathBuf>,
}

impl Probe {
    /// The probe for this process.
    pub fn from_process() -> Self {
        let env = std::env::var_os(ENV_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        // CARGO_MANIFEST_DIR is `<repo>/edge-service`; its parent is the workspace root.
        let build_repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf);
        Self {
            env,
            current_dir: std::env::current_dir().ok(),
            build_repo,
        }
    }
}

/// Apply the rule to a probe; `is_dir` decides what exists.
pub fn locate_with(
    probe: &Probe,
    is_dir: impl Fn(&Path) -> bool,
) -> Result<SharedDir, SharedDirError> {
    if let Some(env) = &probe.env {
        return if is_dir(env) {
            Ok(SharedDir {
                path: env.clone(),
                found_by: FoundBy::EnvVar,
            })
        } else {
            Err(SharedDirError::EnvVarNotADir(env.clone()))
        };
    }
    let candidates = [
        probe
            .current_dir
            .as_ref()
            .map(|d| (d.join("../shared"), FoundBy::CurrentDir)),
        probe
            .build_repo
            .as_ref()
            .map(|d| (d.join("../shared"), FoundBy::BuildRepo)),
        Some((PathBuf::from(DEFAULT_DIR), FoundBy::Default)),
    ];
    let mut tried = Vec::new();
    for (path, found_by) in candidates.into_iter().flatten() {
        if is_dir(&path) {
            return Ok(SharedDir { path, found_by });
        }
        tried.push(path);
    }
    Err(SharedDirError::NotFound(tried))
}

/// Locate the shared folder for this process.
/// Locate the shared folder for this process (the path is made absolute and `..`-free when
/// possible, so reports show where the vectors really are).
pub fn locate() -> Result<SharedDir, SharedDirError> {
    let mut found = locate_with(&Probe::from_process(), Path::is_dir)?;
    if let Ok(path) = std::fs::canonicalize(&found.path) {
        found.path = path;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(dirs: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p: &Path| dirs.iter().any(|d| Path::new(d) == p)
    }

    #[test]
    fn env_var_wins_over_every_other_location() {
        let probe = Probe {
            env: Some("/x/shared".into()),
            current_dir: Some("/repo".into()),
            build_repo: Some("/repo".into()),
        };
        let found = locate_with(
            &probe,
            exists(&["/x/shared", "/repo/../shared", "/work/shared"]),
        );
        assert_eq!(
            found.ok(),
            Some(SharedDir {
                path: "/x/shared".into(),
                found_by: FoundBy::EnvVar
            })
        );
    }

    #[test]
    fn env_var_naming_a_missing_folder_is_an_error_not_a_fallback() {
        let probe = Probe {
            env: Some("/nope".into()),
            ..Probe::default()
        };
        let err = locate_with(&probe, exists(&["/work/shared"])).err();
        assert!(matches!(err, Some(SharedDirError::EnvVarNotADir(p)) if p == Path::new("/nope")));
    }

    #[test]
    fn sibling_of_current_dir_comes_before_build_repo_and_default() {
        let probe = Probe {
            env: None,
            current_dir: Some("/a/main".into()),
            build_repo: Some("/b/main".into()),
        };
        let found = locate_with(&probe, exists(&["/a/main/../shared", "/b/main/../shared"]));
        assert_eq!(found.map(|s| s.found_by).ok(), Some(FoundBy::CurrentDir));
        let found = locate_with(&probe, exists(&["/b/main/../shared", "/work/shared"]));
        assert_eq!(found.map(|s| s.found_by).ok(), Some(FoundBy::BuildRepo));
        let found = locate_with(&probe, exists(&["/work/shared"]));
        assert_eq!(found.map(|s| s.found_by).ok(), Some(FoundBy::Default));
    }

    #[test]
    fn not_found_lists_every_place_it_looked() {
        let probe = Probe {
            env: None,
            current_dir: Some("/a".into()),
            build_repo: None,
        };
        match locate_with(&probe, exists(&[])) {
            Err(SharedDirError::NotFound(tried)) => assert_eq!(
                tried,
                vec![PathBuf::from("/a/../shared"), PathBuf::from("/work/shared")]
            ),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}
