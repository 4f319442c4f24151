//! Which files a run reads, and whether an output would overwrite one of them.
//!
//! `--output` and `--report` are created (truncated) before the run starts; naming a trace
//! input, a file inside an input directory, a rule file or the other output would destroy
//! it. Files are compared by canonical path, and by device and inode where the platform
//! has them, so a symlink or a hard link to a file that is read is caught too.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use betrace::diagnostic::terminal::escape;

/// A file as the outputs check sees it: where it is, once links are resolved, and which
/// file it is on its device (when it exists).
#[derive(Debug, Clone)]
pub struct Place {
    canonical: PathBuf,
    id: Option<FileId>,
}

/// Device and inode: the same file, whatever the path (a hard link) — where the platform
/// has them.
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(m: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Metadata) -> Option<FileId> {
    None
}

impl Place {
    /// Where `path` is: the canonical path of the file, or of its directory joined with its
    /// name when it does not exist yet; `None` when its directory does not exist either.
    pub fn of(path: &str) -> Option<Place> {
        let p = Path::new(path);
        if let Ok(canonical) = p.canonicalize() {
            let id = std::fs::metadata(&canonical)
                .ok()
                .as_ref()
                .and_then(file_id);
            return Some(Place { canonical, id });
        }
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = parent.canonicalize().ok()?;
        Some(Place {
            canonical: dir.join(p.file_name()?),
            id: None,
        })
    }

    fn same(&self, other: &Place) -> bool {
        self.canonical == other.canonical || (self.id.is_some() && self.id == other.id)
    }
}

/// Refuses outputs (flag, path) that name a file the run reads — an input, a file inside an
/// input directory, a rule file — or each other, before anything is created. `inputs` are
/// the trace inputs as given (`-` is standard input), `rule_files` the rule files after
/// directory and glob expansion.
pub fn check_outputs(
    outputs: &[(&str, &str)],
    inputs: &[String],
    rule_files: &[&str],
) -> Result<(), String> {
    let places: Vec<_> = outputs
        .iter()
        .map(|&(flag, path)| (flag, path, Place::of(path)))
        .collect();
    for (i, (flag, path, place)) in places.iter().enumerate() {
        let Some(place) = place else { continue };
        let shown = escape(path);
        for (other_flag, other_path, other) in &places[..i] {
            if other.as_ref().is_some_and(|o| o.same(place)) {
                return Err(format!(
                    "{flag} {shown} and {other_flag} {} name the same file",
                    escape(other_path)
                ));
            }
        }
        for rules in rule_files {
            if Place::of(rules).is_some_and(|r| r.same(place)) {
                return Err(format!(
                    "{flag} {shown} is the rule file {}: writing it would destroy the rules",
                    escape(rules)
                ));
            }
        }
        for input in inputs.iter().filter(|i| *i != "-") {
            let Some(read) = Place::of(input) else {
                continue;
            };
            if read.same(place) {
                return Err(format!(
                    "{flag} {shown} is also an input: writing it would destroy it before it is read"
                ));
            }
            if read.canonical.is_dir()
                && (place.canonical.starts_with(&read.canonical)
                    || place
                        .id
                        .is_some_and(|id| files_below(&read.canonical).contains(&id)))
            {
                return Err(format!(
                    "{flag} {shown} is inside the input directory {}: it would be read back as input; write it elsewhere",
                    escape(input)
                ));
            }
        }
    }
    Ok(())
}

/// The files below `dir` (following links, each directory visited once, so a symlink loop
/// ends), by device and inode.
fn files_below(dir: &Path) -> HashSet<FileId> {
    let mut files = HashSet::new();
    walk(dir, &mut |_, m| {
        if let Some(id) = file_id(m) {
            files.insert(id);
        }
    });
    files
}

/// Calls `visit` on every file below `root` (or `root` itself, if it is a file), following
/// symlinks but entering each directory once: a link to an ancestor neither loops nor
/// counts a file twice.
pub fn walk(root: &Path, visit: &mut dyn FnMut(&Path, &Metadata)) {
    let mut seen_dirs: HashSet<FileId> = HashSet::new();
    let mut seen_paths: HashSet<PathBuf> = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            let first = match file_id(&m) {
                Some(id) => seen_dirs.insert(id),
                None => p.canonicalize().is_ok_and(|c| seen_paths.insert(c)),
            };
            if !first {
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(Result::ok).map(|e| e.path()));
            }
        } else {
            visit(&p, &m);
        }
    }
}
