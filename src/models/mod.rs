//! Models: which one a name means (registry, Hub id or local folder), where its files are
//! (cache or download), and a check that they are all there and parse.

pub mod attention;
pub mod files;
pub mod gemv;
pub mod gguf;
pub mod hub;
pub mod layers;
pub mod llm;
pub mod marian;
pub mod qwen2;
pub mod qwen2_gguf;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use hub::{Hub, HubError};
use registry::{Manifest, Registry, RepoFiles, Task};

/// What a model is asked to do, and the flag that named it (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Translation,
    Summary,
}

impl Role {
    pub fn flag(self) -> &'static str {
        match self {
            Role::Translation => "--translation-model",
            Role::Summary => "--summary-model",
        }
    }

    fn task(self) -> Task {
        match self {
            Role::Translation => Task::Translation,
            Role::Summary => Task::Summarization,
        }
    }
}

/// The files an architecture needs in a folder in Hugging Face layout.
#[derive(Debug, Clone, Copy)]
pub struct FilePlan {
    pub architecture: &'static str,
    pub task: Task,
    pub required: &'static [&'static str],
    /// Weights: the first of these that exists is used.
    pub weights: &'static [&'static str],
    pub optional: &'static [&'static str],
}

const PLANS: &[FilePlan] = &[FilePlan {
    architecture: "marian",
    task: Task::Translation,
    required: &["config.json", "source.spm", "target.spm", "vocab.json"],
    weights: &["model.safetensors", "pytorch_model.bin"],
    optional: &[
        "generation_config.json",
        "target_vocab.json",
        "tokenizer_config.json",
    ],
}];

/// The files of any decoder-only LLM in `llm::ARCHITECTURES` (Hugging Face layout).
const LLM_PLAN: FilePlan = FilePlan {
    architecture: "",
    task: Task::Summarization,
    required: &["config.json", "tokenizer.json", "tokenizer_config.json"],
    weights: &["model.safetensors", "model.safetensors.index.json"],
    optional: &["generation_config.json", "chat_template.jinja"],
};

/// Files that sit beside a `.gguf` file given on its own: the tokenizer and its chat
/// template are required (GGUF files carry a vocabulary but precis reads tokenizer.json).
const GGUF_REQUIRED: &[&str] = &["tokenizer.json", "tokenizer_config.json"];
const GGUF_OPTIONAL: &[&str] = &[
    "config.json",
    "generation_config.json",
    "chat_template.jinja",
];

fn plan(architecture: &str) -> Option<FilePlan> {
    if let Some(arch) = llm::architecture(architecture) {
        return Some(FilePlan {
            architecture: arch.name,
            ..LLM_PLAN
        });
    }
    PLANS
        .iter()
        .find(|p| p.architecture == architecture)
        .copied()
}

fn known_architectures() -> Vec<&'static str> {
    PLANS
        .iter()
        .map(|p| p.architecture)
        .chain(llm::architecture_names())
        .collect()
}

/// What the user named.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    Registry(Box<Manifest>),
    Hub { repo: String, revision: String },
    Local(PathBuf),
}

/// Read a model argument: an existing path wins, then a registry name, then `org/name[@rev]`.
pub fn parse_spec(arg: &str, registry: &Registry) -> Result<ModelSpec> {
    let path = Path::new(arg);
    if path.exists() {
        return Ok(ModelSpec::Local(path.to_path_buf()));
    }
    let looks_like_path =
        arg.starts_with(['/', '.', '~']) || arg.ends_with(".gguf") || arg.contains('\\');
    if looks_like_path {
        return Err(Error::ModelFolder {
            path: path.to_path_buf(),
            problem: "no such file or folder".into(),
        });
    }
    if let Some(manifest) = registry.get(arg) {
        return Ok(ModelSpec::Registry(Box::new(manifest.clone())));
    }
    let (repo, revision) = arg.split_once('@').unwrap_or((arg, "main"));
    let valid_part = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((org, name)) if valid_part(org) && valid_part(name) && !revision.is_empty() => {
            Ok(ModelSpec::Hub {
                repo: repo.to_string(),
                revision: revision.to_string(),
            })
        }
        _ => Err(Error::UnknownModel {
            name: arg.to_string(),
        }),
    }
}

/// A model whose files are all on disk and parse.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The name as the user gave it.
    pub name: String,
    /// What reproduces this result: `repo@commit` (joined by ` + ` when a model takes files
    /// from several repos), or `local:/abs/path#sha256:…` for a local folder.
    pub id: String,
    pub architecture: String,
    /// File name in the model's layout → path on disk.
    pub files: BTreeMap<String, PathBuf>,
    /// The manifest's default generation settings (empty for a model from outside the registry).
    pub generation: toml::Table,
}

impl ResolvedModel {
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files.get(name).map(PathBuf::as_path)
    }
}

/// Turns model arguments into resolved models, downloading when allowed.
pub struct Resolver {
    pub hub: Hub,
    pub registry: Registry,
    pub quiet: bool,
}

impl Resolver {
    pub fn from_env(quiet: bool) -> Result<Resolver> {
        Ok(Resolver {
            hub: Hub::from_env(),
            registry: Registry::builtin()?,
            quiet,
        })
    }

    /// Resolve a model argument for a role, fetching missing files unless offline, and check
    /// every file before returning.
    pub fn resolve(&self, arg: &str, role: Role) -> Result<ResolvedModel> {
        let resolved = match parse_spec(arg, &self.registry)? {
            ModelSpec::Registry(manifest) => self.resolve_manifest(&manifest, role.flag())?,
            ModelSpec::Hub { repo, revision } => self.resolve_hub(arg, &repo, &revision, role)?,
            ModelSpec::Local(path) => resolve_local(&path)?,
        };
        check_role(&resolved, role)?;
        for path in resolved.files.values() {
            files::check(path)?;
        }
        Ok(resolved)
    }

    /// Resolve from the cache alone: never downloads.
    pub fn resolve_cached(&self, arg: &str, role: Role) -> Result<ResolvedModel> {
        Resolver {
            hub: self
                .hub
                .offline("only models already in the cache are used for this"),
            registry: self.registry.clone(),
            quiet: true,
        }
        .resolve(arg, role)
    }

    /// A registry model: every file its manifest lists, from the cache or the Hub.
    pub fn resolve_manifest(&self, manifest: &Manifest, flag: &str) -> Result<ResolvedModel> {
        let mut files = BTreeMap::new();
        let mut ids = Vec::new();
        for source in &manifest.sources {
            for file in &source.files {
                let path = self.fetch(&manifest.name, source, file, flag)?;
                files.insert(file.clone(), path);
            }
            let commit = self
                .hub
                .cached_commit(&source.repo, &source.revision)
                .unwrap_or_else(|| source.revision.clone());
            ids.push(format!("{}@{commit}", source.repo));
        }
        Ok(ResolvedModel {
            name: manifest.name.clone(),
            id: ids.join(" + "),
            architecture: manifest.architecture.clone(),
            files,
            generation: manifest.generation.clone(),
        })
    }

    /// A Hub id with no manifest: the architecture's files, as far as the repo has them.
    fn resolve_hub(
        &self,
        arg: &str,
        repo: &str,
        revision: &str,
        role: Role,
    ) -> Result<ResolvedModel> {
        let source = |files: Vec<String>| RepoFiles {
            repo: repo.to_string(),
            revision: revision.to_string(),
            files,
        };
        let config = self.fetch(arg, &source(vec![]), "config.json", role.flag())?;
        let architecture = architecture_of(&config)?;
        let plan = plan(&architecture).ok_or_else(|| unsupported(&config, &architecture))?;
        let available = |file: &str| -> Result<bool> {
            if self.hub.cached_file(repo, revision, file).is_some() {
                return Ok(true);
            }
            // Not cached: ask for it; a missing optional file is no error.
            Ok(self.hub.offline.is_none()
                && self.hub.download(repo, revision, file, self.quiet).is_ok())
        };
        let mut wanted: Vec<String> = plan.required.iter().map(|f| f.to_string()).collect();
        let weights = plan.weights.iter().find(|w| available(w).unwrap_or(false));
        wanted.push(weights.unwrap_or(&plan.weights[0]).to_string());
        for optional in plan.optional {
            if available(optional)? {
                wanted.push(optional.to_string());
            }
        }
        let manifest = Manifest {
            name: arg.to_string(),
            task: plan.task,
            description: String::new(),
            source_languages: vec![],
            target_languages: vec![],
            architecture,
            license: String::new(),
            size_mb: 0,
            sources: vec![source(wanted)],
            generation: Default::default(),
        };
        self.resolve_manifest(&manifest, role.flag())
    }

    /// One file from the cache, or downloaded into it.
    fn fetch(&self, model: &str, source: &RepoFiles, file: &str, flag: &str) -> Result<PathBuf> {
        if let Some(path) = self.hub.cached_file(&source.repo, &source.revision, file) {
            return Ok(path);
        }
        tracing::info!("fetching {file} of {}@{}", source.repo, source.revision);
        self.hub
            .download(&source.repo, &source.revision, file, self.quiet)
            .map_err(|e| match e {
                HubError::Offline(why) => {
                    Error::ModelNotCached(Box::new(crate::error::MissingModel {
                        model: model.to_string(),
                        repo: source.repo.clone(),
                        revision: source.revision.clone(),
                        file: file.to_string(),
                        cache: self.hub.cache_dir.clone(),
                        why,
                        flag: flag.to_string(),
                        alternative: alternative(flag),
                    }))
                }
                other => Error::Download(Box::new(crate::error::DownloadFailed {
                    model: model.to_string(),
                    repo: source.repo.clone(),
                    revision: source.revision.clone(),
                    file: file.to_string(),
                    endpoint: self.hub.endpoint.clone(),
                    flag: flag.to_string(),
                    source: Box::new(other),
                })),
            })
    }

    /// Where a registry model's files are cached, without fetching: (file, path if cached).
    pub fn cached_files(&self, manifest: &Manifest) -> Vec<(String, Option<PathBuf>)> {
        manifest
            .sources
            .iter()
            .flat_map(|s| {
                s.files
                    .iter()
                    .map(|f| (f.clone(), self.hub.cached_file(&s.repo, &s.revision, f)))
            })
            .collect()
    }
}

/// A way to do without the model, where there is one.
fn alternative(flag: &str) -> String {
    if flag == Role::Summary.flag() {
        ", or\n  - summarize without any model: `--engine extractive`".into()
    } else {
        String::new()
    }
}

/// A local folder in Hugging Face layout.
fn resolve_local(path: &Path) -> Result<ResolvedModel> {
    let folder_err = |problem: String| Error::ModelFolder {
        path: path.to_path_buf(),
        problem,
    };
    if path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return resolve_gguf_file(path);
    }
    if !path.is_dir() {
        return Err(folder_err(
            "not a folder: give the folder that holds config.json and the weights, \
             or a .gguf file with tokenizer.json and tokenizer_config.json beside it"
                .into(),
        ));
    }
    let config = path.join("config.json");
    if !config.is_file() {
        return Err(folder_err(
            "no config.json: a model folder in Hugging Face layout has config.json beside its weights and tokenizer files".into(),
        ));
    }
    let architecture = architecture_of(&config)?;
    let plan = plan(&architecture).ok_or_else(|| unsupported(&config, &architecture))?;
    let mut files = BTreeMap::new();
    for name in plan.required.iter().chain(plan.optional) {
        let file = path.join(name);
        if file.is_file() {
            files.insert(name.to_string(), file);
        } else if plan.required.contains(name) {
            return Err(folder_err(format!(
                "missing {name}: a {architecture} model needs {}, and one of {}",
                plan.required.join(", "),
                plan.weights.join(" or ")
            )));
        }
    }
    match plan.weights.iter().find(|w| path.join(w).is_file()) {
        Some(weights) => {
            files.insert(weights.to_string(), path.join(weights));
        }
        // An LLM folder may hold a GGUF file instead of safetensors.
        None => {
            let ggufs = gguf_files_in(path);
            match (plan.task, ggufs.as_slice()) {
                (Task::Summarization, [one]) => {
                    let name = one.file_name().unwrap_or_default().to_string_lossy();
                    files.insert(name.into_owned(), one.clone());
                }
                (Task::Summarization, [_, _, ..]) => {
                    return Err(folder_err(format!(
                    "several .gguf files and no {}: pass the one to use, e.g. `--summary-model {}`",
                    plan.weights[0],
                    ggufs[0].display()
                )))
                }
                _ => {
                    return Err(folder_err(format!(
                        "no weights: expected {}",
                        plan.weights.join(" or ")
                    )))
                }
            }
        }
    }
    local_model(path, architecture, files)
}

/// A model from local files, named by its path and identified as
/// `local:/absolute/path#sha256:…` (a hash of the files' contents).
fn local_model(
    path: &Path,
    architecture: String,
    files: BTreeMap<String, PathBuf>,
) -> Result<ResolvedModel> {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(ResolvedModel {
        name: path.display().to_string(),
        id: format!(
            "local:{}#sha256:{}",
            absolute.display(),
            content_hash(&files)?
        ),
        architecture,
        files,
        generation: Default::default(),
    })
}

fn gguf_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "gguf"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// A `.gguf` file given on its own: the architecture from its metadata, the tokenizer files
/// from the folder it sits in.
fn resolve_gguf_file(path: &Path) -> Result<ResolvedModel> {
    let gguf = gguf::GgufFile::open(path)?;
    let architecture = gguf
        .architecture()
        .ok_or_else(|| Error::ModelFile {
            path: path.to_path_buf(),
            what: "the GGUF metadata has no general.architecture".into(),
            source: None,
        })?
        .to_string();
    if llm::architecture(&architecture).is_none() {
        return Err(unsupported(path, &architecture));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = BTreeMap::new();
    files.insert(file_name, path.to_path_buf());
    for name in GGUF_REQUIRED.iter().chain(GGUF_OPTIONAL) {
        let file = dir.join(name);
        if file.is_file() {
            files.insert(name.to_string(), file);
        } else if GGUF_REQUIRED.contains(name) {
            return Err(Error::ModelFolder {
                path: dir.to_path_buf(),
                problem: format!(
                    "missing {name} beside {}: a GGUF model needs {} in its folder \
                     (take them from the original Hugging Face repo of the model)",
                    path.display(),
                    GGUF_REQUIRED.join(" and ")
                ),
            });
        }
    }
    local_model(path, architecture, files)
}

/// Files above this size are fingerprinted by their length and sampled chunks rather than
/// hashed whole, so that naming a multi-GB local model costs milliseconds, not seconds.
const FULL_HASH_LIMIT: u64 = 64 << 20;
const SAMPLE: usize = 1 << 20;

/// A short content hash of a model's files, so that a local model's outputs can be traced.
fn content_hash(files: &BTreeMap<String, PathBuf>) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut hasher = Sha256::new();
    for (name, path) in files {
        let io = |e| Error::Io {
            path: path.clone(),
            source: e,
        };
        hasher.update(name.as_bytes());
        let len = std::fs::metadata(path).map_err(io)?.len();
        hasher.update(len.to_le_bytes());
        let mut file = std::fs::File::open(path).map_err(io)?;
        if len <= FULL_HASH_LIMIT {
            std::io::copy(&mut file, &mut hasher).map_err(io)?;
            continue;
        }
        let mut buf = vec![0u8; SAMPLE];
        for offset in [0, len / 2, len - SAMPLE as u64] {
            file.seek(SeekFrom::Start(offset)).map_err(io)?;
            file.read_exact(&mut buf).map_err(io)?;
            hasher.update(&buf);
        }
    }
    Ok(files::hex(&hasher.finalize())[..16].to_string())
}

/// The architecture a config.json declares: `model_type`, else the first `architectures` entry.
fn architecture_of(config: &Path) -> Result<String> {
    let text = std::fs::read_to_string(config).map_err(|e| Error::Io {
        path: config.to_path_buf(),
        source: e,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::ModelFile {
        path: config.to_path_buf(),
        what: "not valid JSON".into(),
        source: Some(Box::new(e)),
    })?;
    let from_arch = || {
        value["architectures"][0].as_str().map(|a| {
            a.trim_end_matches("ForCausalLM")
                .trim_end_matches("MTModel")
                .to_ascii_lowercase()
        })
    };
    value["model_type"]
        .as_str()
        .map(str::to_string)
        .or_else(from_arch)
        .ok_or_else(|| Error::ModelFile {
            path: config.to_path_buf(),
            what: "names no model_type or architectures".into(),
            source: None,
        })
}

fn unsupported(config: &Path, architecture: &str) -> Error {
    let known = known_architectures();
    Error::Unsupported {
        what: format!(
            "{}: architecture '{architecture}' is not supported (precis runs: {})",
            config.display(),
            known.join(", ")
        ),
    }
}

fn check_role(model: &ResolvedModel, role: Role) -> Result<()> {
    match plan(&model.architecture) {
        Some(p) if p.task == role.task() => Ok(()),
        _ => Err(Error::Unsupported {
            what: format!(
                "{} {}: a {} model cannot be used for {}",
                role.flag(),
                model.name,
                model.architecture,
                match role {
                    Role::Translation => "translation (give a Marian/opus-mt model)",
                    Role::Summary => "summaries (give an instruct LLM such as Qwen2.5)",
                }
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let registry = Registry::builtin().unwrap();
        assert!(matches!(
            parse_spec("opus-mt-fr-en", &registry).unwrap(),
            ModelSpec::Registry(_)
        ));
        assert_eq!(
            parse_spec("Helsinki-NLP/opus-mt-de-en@refs/pr/3", &registry).unwrap(),
            ModelSpec::Hub {
                repo: "Helsinki-NLP/opus-mt-de-en".into(),
                revision: "refs/pr/3".into()
            }
        );
        assert_eq!(
            parse_spec("org/name", &registry).unwrap(),
            ModelSpec::Hub {
                repo: "org/name".into(),
                revision: "main".into()
            }
        );
        assert!(matches!(
            parse_spec("nonsense", &registry),
            Err(Error::UnknownModel { .. })
        ));
        assert!(matches!(
            parse_spec("./missing-dir", &registry),
            Err(Error::ModelFolder { .. })
        ));
        assert!(matches!(
            parse_spec("a/b/c", &registry),
            Err(Error::UnknownModel { .. })
        ));
    }

    fn marian_folder(dir: &Path) {
        std::fs::write(dir.join("config.json"), r#"{"model_type": "marian"}"#).unwrap();
        for f in ["source.spm", "target.spm"] {
            std::fs::write(dir.join(f), b"spm").unwrap();
        }
        std::fs::write(dir.join("vocab.json"), r#"{"</s>": 0}"#).unwrap();
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut st = (header.len() as u64).to_le_bytes().to_vec();
        st.extend_from_slice(header);
        st.extend_from_slice(&[0; 4]);
        std::fs::write(dir.join("model.safetensors"), st).unwrap();
    }

    #[test]
    fn local_folder_resolves_with_a_content_hash() {
        let dir = tempfile::tempdir().unwrap();
        marian_folder(dir.path());
        let model = resolve_local(dir.path()).unwrap();
        assert_eq!(model.architecture, "marian");
        assert!(model.id.starts_with("local:/"), "{}", model.id);
        assert!(model.file("model.safetensors").is_some());
        let before = model.id.clone();
        std::fs::write(dir.path().join("vocab.json"), r#"{"</s>": 0, "a": 1}"#).unwrap();
        assert_ne!(resolve_local(dir.path()).unwrap().id, before);
    }

    #[test]
    fn local_folder_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        marian_folder(dir.path());
        std::fs::remove_file(dir.path().join("target.spm")).unwrap();
        let err = resolve_local(dir.path()).unwrap_err().to_string();
        assert!(err.contains("missing target.spm"), "{err}");
    }

    #[test]
    fn offline_registry_model_names_repo_revision_file_and_remedies() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = Resolver {
            hub: Hub::from_vars(|k| match k {
                "HF_HUB_CACHE" => Some(dir.path().display().to_string()),
                "HF_HUB_OFFLINE" => Some("1".into()),
                _ => None,
            }),
            registry: Registry::builtin().unwrap(),
            quiet: true,
        };
        let err = resolver
            .resolve("opus-mt-fr-en", Role::Translation)
            .unwrap_err();
        assert_eq!(err.exit_code(), 8);
        let msg = err.to_string();
        for needle in [
            "opus-mt-fr-en",
            "Helsinki-NLP/opus-mt-fr-en@refs/pr/4",
            "config.json",
            "precis models pull opus-mt-fr-en",
            "--translation-model /path/to/folder",
            "HF_HUB_OFFLINE=1",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in {msg}");
        }
    }

    #[test]
    fn wrong_role_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        marian_folder(dir.path());
        let model = resolve_local(dir.path()).unwrap();
        let err = check_role(&model, Role::Summary).unwrap_err().to_string();
        assert!(err.contains("cannot be used for summaries"), "{err}");
    }
}
