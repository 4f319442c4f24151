//! Turning `RULES` arguments — files, directories, globs — into rule file texts, and the
//! directory walk replay's inputs share: each directory and each file visited once, however
//! many links lead to it, and a link back to an ancestor reported, not followed.

use std::collections::HashSet;
use std::io;
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
/// it, sorted), or a glob (`**` descends). The same file named twice — or reached through
/// two links — is read once; a symbolic link loop is reported as a warning
/// ([`warn_walk_note`]) and not followed.
pub fn read_sources<S: AsRef<str>>(specs: &[S]) -> Result<Vec<SourceFile>, SourceError> {
    let mut walk = Walk::default();
    let mut paths: Vec<PathBuf> = Vec::new();
    for spec in specs {
        let spec = spec.as_ref();
        let path = Path::new(spec);
        let io_error = |source| SourceError::Io {
            path: spec.to_string(),
            source,
        };
        let found = if path.is_dir() {
            let mut files = walk
                .files(path, Some(1), &|p: &Path| is_rule_file(p))
                .map_err(io_error)?;
            files.sort();
            files
        } else if spec.contains(['*', '?', '[']) && !path.exists() {
            let mut files = glob_files(spec, &mut walk)?;
            files.sort();
            files
        } else {
            // A file named directly is not seen by a walk: checked here. Named again (or
            // met by a walk already), it adds nothing.
            if walk.first_visit_file(path) {
                paths.push(path.to_path_buf());
            }
            continue;
        };
        if found.is_empty() {
            return Err(SourceError::Empty(spec.to_string()));
        }
        paths.extend(found);
    }
    for note in walk.take_notes() {
        warn_walk_note(&note);
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

/// The files a glob matches, walked with [`Walk`] from the pattern's literal prefix: the
/// `glob` crate's own walk follows every link, so a loop under `**` never ends.
fn glob_files(spec: &str, walk: &mut Walk) -> Result<Vec<PathBuf>, SourceError> {
    let bad = |message: String| SourceError::BadGlob {
        pattern: spec.to_string(),
        message,
    };
    let pattern = glob::Pattern::new(spec).map_err(|e| bad(e.msg.to_string()))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    // The directory before the first component holding a wildcard, and how deep below it
    // a match can be (unbounded with `**`).
    let mut base = PathBuf::new();
    let mut rest = Vec::new();
    for c in Path::new(spec).components() {
        let s = c.as_os_str().to_string_lossy();
        if rest.is_empty() && !s.contains(['*', '?', '[']) {
            base.push(c);
        } else {
            rest.push(s.into_owned());
        }
    }
    let depth = (!rest.iter().any(|c| c.contains("**"))).then_some(rest.len());
    let root = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base.as_path()
    };
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let strip_dot = base.as_os_str().is_empty();
    let matches = |p: &Path| {
        let p = if strip_dot {
            p.strip_prefix(".").unwrap_or(p)
        } else {
            p
        };
        pattern.matches_path_with(p, options)
    };
    let files = walk
        .files(root, depth, &matches)
        .map_err(|source| SourceError::Io {
            path: spec.to_string(),
            source,
        })?;
    Ok(files
        .into_iter()
        .map(|p| match p.strip_prefix(".") {
            Ok(q) if strip_dot => q.to_path_buf(),
            _ => p,
        })
        .collect())
}

fn is_rule_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Says what a walk skipped: through `tracing` when the embedder listens (the collector
/// logs it), else on standard error (the command).
pub fn warn_walk_note(note: &WalkNote) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(target: "betrace", "{note}");
    } else {
        eprintln!("warning: {note}");
    }
}

/// The identity of a file or directory: (device, inode) on Unix, the canonical path
/// elsewhere. Two paths with one identity are one file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Canonical(PathBuf),
}

impl FileId {
    /// The identity of what `path` names, links followed.
    fn of(path: &Path) -> io::Result<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path)?;
            Ok(FileId::Inode(m.dev(), m.ino()))
        }
        #[cfg(not(unix))]
        {
            std::fs::canonicalize(path).map(FileId::Canonical)
        }
    }
}

/// Something a walk left out, to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkNote {
    /// A link leads back to a directory that holds it: followed, it would never end.
    Loop(PathBuf),
    /// A link that cannot be resolved (it points at itself, or through too many links).
    BadLink(PathBuf, String),
}

impl std::fmt::Display for WalkNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkNote::Loop(p) => write!(
                f,
                "{}: a symbolic link loop (it leads back to a directory above it); not followed",
                p.display()
            ),
            WalkNote::BadLink(p, e) => write!(f, "{}: skipped: {e}", p.display()),
        }
    }
}

/// Walks directories visiting each directory and each file once, by identity
/// ((device, inode) where there is one): a second link to a directory already walked is
/// not walked again, a second name of a file already listed is not listed again, and a
/// link to an ancestor is noted as a loop. Iterative: no depth of directories can overflow
/// the stack.
#[derive(Debug, Default)]
pub struct Walk {
    dirs: HashSet<FileId>,
    files: HashSet<FileId>,
    notes: Vec<WalkNote>,
}

impl Walk {
    /// A walk that has seen nothing yet.
    pub fn new() -> Walk {
        Walk::default()
    }

    /// Whether `path` names a file not seen before (by this walk's [`Walk::files`] or
    /// earlier calls); a path that cannot be examined counts as new, so that reading it
    /// reports the error.
    pub fn first_visit_file(&mut self, path: &Path) -> bool {
        match FileId::of(path) {
            Ok(id) => self.files.insert(id),
            Err(_) => true,
        }
    }

    /// The regular files below `dir` for which `keep` holds, in no particular order,
    /// descending at most `depth` levels (`Some(1)`: the directory's own entries; `None`:
    /// every level). Hidden entries (`.name`) are skipped. Fails only when `dir` itself
    /// cannot be read.
    pub fn files(
        &mut self,
        dir: &Path,
        depth: Option<usize>,
        keep: &dyn Fn(&Path) -> bool,
    ) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let id = FileId::of(dir)?;
        if !self.dirs.insert(id) {
            return Ok(out);
        }
        let mut todo: Vec<(PathBuf, usize)> = vec![(dir.to_path_buf(), 1)];
        let mut first = true;
        while let Some((d, level)) = todo.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if first => return Err(e),
                Err(e) => {
                    self.notes.push(WalkNote::BadLink(d, e.to_string()));
                    continue;
                }
            };
            first = false;
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let path = entry.path();
                if path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
                {
                    continue;
                }
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        // A dangling link is not a rule or an input: skipped, as before;
                        // a link that resolves to itself is worth a word.
                        if entry.file_type().is_ok_and(|t| t.is_symlink())
                            && e.raw_os_error() == Some(ELOOP)
                        {
                            self.notes.push(WalkNote::BadLink(path, e.to_string()));
                        }
                        continue;
                    }
                };
                if meta.is_dir() {
                    if depth.is_some_and(|max| level >= max) {
                        continue;
                    }
                    let Ok(id) = FileId::of(&path) else { continue };
                    if !self.dirs.insert(id) {
                        if leads_above(&path) {
                            self.notes.push(WalkNote::Loop(path));
                        }
                        continue;
                    }
                    todo.push((path, level + 1));
                } else if meta.is_file() && keep(&path) {
                    let Ok(id) = FileId::of(&path) else { continue };
                    if self.files.insert(id) {
                        out.push(path);
                    }
                }
            }
        }
        Ok(out)
    }

    /// What the walks so far left out, to report ([`warn_walk_note`]); emptied.
    pub fn take_notes(&mut self) -> Vec<WalkNote> {
        std::mem::take(&mut self.notes)
    }
}

/// `ELOOP`: too many levels of symbolic links.
#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(all(unix, not(target_os = "linux")))]
const ELOOP: i32 = 62;
#[cfg(not(unix))]
const ELOOP: i32 = -1;

/// Whether the directory `path` names is one of the directories holding `path`.
fn leads_above(path: &Path) -> bool {
    match (
        std::fs::canonicalize(path),
        path.parent().map(std::fs::canonicalize),
    ) {
        (Ok(target), Some(Ok(parent))) => parent.starts_with(target),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("betrace-sources-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const RULE: &str = "rules:\n  - id: r\n    name: R\n    severity: low\n    condition: x\n";

    #[cfg(unix)]
    #[test]
    fn links_to_an_ancestor_are_not_followed_and_each_file_is_read_once() {
        use std::os::unix::fs::symlink;
        let d = tempdir("loops");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/r.yaml"), RULE).unwrap();
        std::fs::write(d.join("a/b/s.yaml"), RULE.replace("id: r", "id: s")).unwrap();
        // Two links to an ancestor (exponential when followed) and one to a file.
        symlink(d.join("a"), d.join("a/b/up1")).unwrap();
        symlink(d.join("a"), d.join("a/b/up2")).unwrap();
        symlink(d.join("a/r.yaml"), d.join("a/b/again.yaml")).unwrap();
        symlink("self.yaml", d.join("a/self.yaml")).unwrap();

        let spec = format!("{}/**/*.yaml", d.display());
        let files = read_sources(&[spec.as_str()]).unwrap();
        let mut names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");

        let mut walk = Walk::new();
        let found = walk.files(&d, None, &|_: &Path| true).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        let notes = walk.take_notes();
        assert_eq!(
            notes
                .iter()
                .filter(|n| matches!(n, WalkNote::Loop(_)))
                .count(),
            2,
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| matches!(n, WalkNote::BadLink(..))),
            "{notes:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn one_file_named_twice_is_read_once() {
        use std::os::unix::fs::symlink;
        let d = tempdir("twice");
        std::fs::write(d.join("r.yaml"), RULE).unwrap();
        symlink(d.join("r.yaml"), d.join("link.yaml")).unwrap();
        let dir = d.display().to_string();
        let file = format!("{dir}/r.yaml");
        assert_eq!(
            read_sources(&[dir.as_str(), file.as_str()]).unwrap().len(),
            1
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn globs_match_component_by_component() {
        let d = tempdir("glob");
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        std::fs::write(d.join("x/a.yaml"), RULE).unwrap();
        std::fs::write(d.join("x/y/b.yaml"), RULE.replace("id: r", "id: b")).unwrap();
        let one = format!("{}/x/*.yaml", d.display());
        let names: Vec<String> = read_sources(&[one.as_str()])
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, vec![format!("{}/x/a.yaml", d.display())]);
        let deep = format!("{}/**/*.yaml", d.display());
        assert_eq!(read_sources(&[deep.as_str()]).unwrap().len(), 2);
        let none = format!("{}/*/zz*.yaml", d.display());
        assert!(matches!(
            read_sources(&[none.as_str()]),
            Err(SourceError::Empty(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
