//! The output folder on disk: every file is written under a temporary name in its final
//! folder, fsync'd, then renamed, so a killed run leaves whole files or none. Temporary names
//! (`.precis-*.tmp`) are hidden, and a run removes any left by a killed one before it starts;
//! a lock file keeps two runs from sharing one folder.

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const TEMP_PREFIX: &str = ".precis-";
const TEMP_SUFFIX: &str = ".tmp";
/// Held locked (advisory, released when the process dies) while a run uses the folder.
const LOCK_FILE: &str = ".precis-lock";

/// Write `bytes` to `path` atomically, creating its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let output_error = |source| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(output_error)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(output_error)?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(output_error)?;
    tmp.persist(path).map_err(|e| output_error(e.error))?;
    Ok(())
}

/// Create the output folder if needed and lock it for this run.
pub fn open_output(out: &Path) -> Result<File> {
    let output_error = |source| Error::Output {
        path: out.to_path_buf(),
        source,
    };
    if out.exists() && !out.is_dir() {
        return Err(output_error(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it exists and is not a folder; -o takes a folder for `precis batch`",
        )));
    }
    std::fs::create_dir_all(out).map_err(output_error)?;
    let lock = File::create(out.join(LOCK_FILE)).map_err(output_error)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::OutputInUse {
            dir: out.to_path_buf(),
        }),
        // File systems without locks (some network mounts): go on without.
        Err(std::fs::TryLockError::Error(err)) => {
            tracing::warn!(
                "{}: cannot lock ({err}); make sure no other run uses it",
                out.display()
            );
            Ok(lock)
        }
    }
}

/// Remove temporary files a killed run left anywhere under OUT; returns how many.
pub fn remove_stale_temps(out: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(out)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file()
            && name.starts_with(TEMP_PREFIX)
            && name.ends_with(TEMP_SUFFIX)
        {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Output {
                path: entry.path().to_path_buf(),
                source,
            })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A relative path read back from a manifest, if it stays inside OUT: plain components
/// only (a hand-edited manifest must not make precis delete files elsewhere).
pub fn inside(out: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !relative.is_empty()).then(|| out.join(rel))
}

/// Remove results that an article no longer has (it failed this time, or was renamed).
pub fn remove_outputs(out: &Path, relatives: &[String]) -> Result<()> {
    for path in relatives.iter().filter_map(|r| inside(out, r)) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Output { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_and_stale_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let _lock = open_output(&out).unwrap();
        write_atomic(&out.join("a/b.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(out.join("a/b.json")).unwrap(), b"{}");
        std::fs::write(out.join("a/.precis-x1y2.tmp"), "half").unwrap();
        std::fs::write(out.join("a/.keep"), "user's").unwrap();
        assert_eq!(remove_stale_temps(&out).unwrap(), 1);
        let mut names: Vec<String> = std::fs::read_dir(out.join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".keep", "b.json"]);
    }

    #[test]
    fn a_second_run_on_the_same_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open_output(dir.path()).unwrap();
        let second = open_output(dir.path()).unwrap_err();
        assert!(matches!(second, Error::OutputInUse { .. }), "{second}");
    }

    #[test]
    fn paths_from_a_manifest_stay_inside() {
        let out = Path::new("/out");
        assert_eq!(
            inside(out, "a/b.json"),
            Some(PathBuf::from("/out/a/b.json"))
        );
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert_eq!(inside(out, bad), None, "{bad}");
        }
    }
}
