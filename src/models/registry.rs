//! The model registry: the manifests in `models/*.toml`, compiled into the binary so that
//! precis knows its models wherever it runs.

use serde::Deserialize;

use crate::error::{Error, Result};

/// The manifests shipped with precis, as (file name, contents).
const BUILTIN: &[(&str, &str)] = &[
    (
        "opus-mt-fr-en.toml",
        include_str!("../../models/opus-mt-fr-en.toml"),
    ),
    (
        "qwen2.5-1.5b-instruct.toml",
        include_str!("../../models/qwen2.5-1.5b-instruct.toml"),
    ),
    (
        "qwen2.5-1.5b-instruct-bf16.toml",
        include_str!("../../models/qwen2.5-1.5b-instruct-bf16.toml"),
    ),
];

/// The default summary model on the CPU: 4-bit GGUF, fast and small.
pub const DEFAULT_SUMMARY_MODEL_CPU: &str = "qwen2.5-1.5b-instruct";
/// The default summary model on a GPU: the original half-precision weights.
pub const DEFAULT_SUMMARY_MODEL_GPU: &str = "qwen2.5-1.5b-instruct-bf16";

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Translation,
    Summarization,
}

/// One Hub repository and the files taken from it, pinned to a revision.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepoFiles {
    pub repo: String,
    pub revision: String,
    pub files: Vec<String>,
}

/// A model manifest: everything needed to fetch, check and run one model.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub task: Task,
    pub description: String,
    pub source_languages: Vec<String>,
    pub target_languages: Vec<String>,
    pub architecture: String,
    pub license: String,
    /// Approximate download size.
    pub size_mb: u64,
    #[serde(rename = "source")]
    pub sources: Vec<RepoFiles>,
    /// Default generation settings (the model's own where it has them).
    #[serde(default)]
    pub generation: toml::Table,
}

impl Manifest {
    /// `repo@revision` of the first source, for display.
    pub fn origin(&self) -> String {
        self.sources
            .iter()
            .map(|s| format!("{}@{}", s.repo, s.revision))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The registry of known models.
#[derive(Debug, Clone)]
pub struct Registry {
    manifests: Vec<Manifest>,
}

impl Registry {
    /// The manifests built into this binary.
    pub fn builtin() -> Result<Registry> {
        let manifests = BUILTIN
            .iter()
            .map(|(file, text)| parse(file, text))
            .collect::<Result<Vec<_>>>()?;
        Ok(Registry { manifests })
    }

    pub fn get(&self, name: &str) -> Option<&Manifest> {
        self.manifests.iter().find(|m| m.name == name)
    }

    pub fn all(&self) -> &[Manifest] {
        &self.manifests
    }
}

/// Parse one manifest, checking what serde cannot.
pub fn parse(file: &str, text: &str) -> Result<Manifest> {
    let manifest: Manifest = toml::from_str(text).map_err(|source| Error::Manifest {
        file: file.to_string(),
        source,
    })?;
    if manifest.sources.is_empty() || manifest.sources.iter().any(|s| s.files.is_empty()) {
        return Err(Error::Unsupported {
            what: format!("models/{file}: every manifest needs a [[source]] with files"),
        });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse() {
        let registry = Registry::builtin().unwrap();
        let marian = registry.get("opus-mt-fr-en").unwrap();
        assert_eq!(marian.task, Task::Translation);
        assert_eq!(marian.sources[0].repo, "Helsinki-NLP/opus-mt-fr-en");
        assert_eq!(marian.sources[0].revision, "refs/pr/4");
        assert!(marian.sources[0]
            .files
            .contains(&"model.safetensors".to_string()));
        let qwen = registry.get("qwen2.5-1.5b-instruct").unwrap();
        assert_eq!(qwen.architecture, "qwen2");
        assert_eq!(qwen.sources.len(), 2);
        for name in [DEFAULT_SUMMARY_MODEL_CPU, DEFAULT_SUMMARY_MODEL_GPU] {
            assert_eq!(registry.get(name).unwrap().task, Task::Summarization);
        }
    }

    /// A manifest dropped into models/ but not listed in BUILTIN would be silently ignored.
    #[test]
    fn every_manifest_file_is_built_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut built_in: Vec<String> = BUILTIN.iter().map(|(f, _)| f.to_string()).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse("x.toml", "name = 'x'\nbogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("models/x.toml"));
    }
}
