//! Helpers for tests that run the real `precis` binary: a temporary working directory, an
//! isolated Hugging Face cache, offline mode, and golden-file comparison.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The repository root (where `samples/` and `tests/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample(name: &str) -> PathBuf {
    root().join("samples").join(name)
}

pub const SAMPLES: &[&str] = &[
    "01-poutine-en-coree-du-nord.txt",
    "02-visite-historique-a-pyongyang.txt",
    "03-kim-soutient-moscou.txt",
    "04-sommet-de-pyongyang.txt",
    "05-ferme-soutien-de-pyongyang.txt",
];

/// A sandbox: a temp dir that is the working directory and holds `HF_HOME`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn hf_home(&self) -> PathBuf {
        self.path().join("hf-home")
    }

    /// `precis` with no network: offline, its own empty cache, no token, no log overrides.
    pub fn precis(&self) -> Command {
        Command::from_std(self.precis_process())
    }

    /// The same `precis` as a plain `std::process::Command`, for tests that spawn it and
    /// signal it while it runs.
    pub fn precis_process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_precis"));
        cmd.current_dir(self.path())
            .env("HF_HOME", self.hf_home())
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("HF_TOKEN")
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_HUB_CACHE")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

/// Compare `actual` with the golden file `tests/golden/<name>`; with
/// `PRECIS_UPDATE_GOLDEN=1`, write it instead (then review the diff).
pub fn assert_golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("PRECIS_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}: run `PRECIS_UPDATE_GOLDEN=1 cargo test` and review it",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .collect();
        panic!(
            "{} differs from the output ({} vs {} lines):\n{}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}
