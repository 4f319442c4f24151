//! Turning `RULES` arguments — files, directories, globs — into rule file texts.

use std::path::{Path, PathBuf};

use crate::diagnostic::SourceFile;

/// A `RULES` argument that yields nothing readable.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A glob pattern is malformed.
    #[error("{pattern}: bad glob: {message}")]
    BadGlob {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// A directory or glob matched no rule file.
    #[error("{0}: no rule files (*.yaml, *.yml) found")]
    Empty(String),
}

/// Reads every rule file named by `specs`: a file, a directory (every `*.yaml`/`*.yml` in
/// it, sorted), or a glob. The same file named twice is read once.
pub fn read_sources<S: AsRef<str>>(specs: &[S]) -> Result<Vec<SourceFile>, SourceError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for spec in specs {
        let spec = spec.as_ref();
        let path = Path::new(spec);
        let found = if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| SourceError::Io {
                path: spec.to_string(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_rule_file(p) && p.is_file())
                .collect();
            files.sort();
            files
        } else if spec.contains(['*', '?', '[']) && !path.exists() {
            let iter = glob::glob(spec).map_err(|e| SourceError::BadGlob {
                pattern: spec.to_string(),
                message: e.msg.to_string(),
            })?;
            let mut files: Vec<PathBuf> = iter
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if found.is_empty() {
            return Err(SourceError::Empty(spec.to_string()));
        }
        for p in found {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let name = p.display().to_string();
            std::fs::read_to_string(&p)
                .map(|text| SourceFile::new(name.clone(), text))
                .map_err(|source| SourceError::Io { path: name, source })
        })
        .collect()
}

fn is_rule_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}
