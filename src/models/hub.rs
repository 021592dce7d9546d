//! The Hugging Face Hub and its local cache: where files live (the same layout as Python's
//! `huggingface_hub`, so both share one cache), offline mode, and downloads through hf-hub.
//!
//! hf-hub 0.5 reads `HF_HOME` and `HF_ENDPOINT` itself but not `HF_HUB_CACHE`, `HF_TOKEN`
//! or `HF_HUB_OFFLINE`, and sets no timeouts; this module reads all of them and bounds the
//! connection attempt before handing a download to hf-hub.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

/// How long to wait for the Hub to accept a connection before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Downloads are off; the reason, as a phrase ("offline mode is on (HF_HUB_OFFLINE=1)").
    #[error("{0}")]
    Offline(String),
    #[error("the Hub at {endpoint} cannot be reached: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the download failed")]
    Api(#[source] hf_hub::api::sync::ApiError),
}

/// Hub settings from the environment, as Python's huggingface_hub reads them.
#[derive(Debug, Clone)]
pub struct Hub {
    /// The `hub/` cache folder: `models--org--name/{blobs,refs,snapshots}` inside.
    pub cache_dir: PathBuf,
    pub endpoint: String,
    token: Option<String>,
    /// Why downloads are off, when they are: HF_HUB_OFFLINE, or a caller that wants the
    /// cache alone.
    pub offline: Option<String>,
}

impl Hub {
    pub fn from_env() -> Hub {
        Hub::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Resolve settings with `var` as the environment (a test can pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Hub {
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            let path = var("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("token"));
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE")
            .filter(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "on" | "yes" | "true"
                )
            })
            .map(|v| format!("offline mode is on (HF_HUB_OFFLINE={v})"));
        let endpoint = var("HF_ENDPOINT")
            .unwrap_or_else(|| "https://huggingface.co".to_string())
            .trim_end_matches('/')
            .to_string();
        Hub {
            cache_dir,
            endpoint,
            token,
            offline,
        }
    }

    /// The same settings with downloads off; `why` (a phrase) shows in messages.
    pub fn offline(&self, why: &str) -> Hub {
        Hub {
            offline: Some(why.to_string()),
            ..self.clone()
        }
    }

    /// The cache folder of one model repository.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache_dir
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision points to in the cache: a commit hash is its own answer,
    /// a branch or ref name is looked up in `refs/`.
    pub fn cached_commit(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let commit =
            std::fs::read_to_string(self.repo_dir(repo).join("refs").join(revision)).ok()?;
        let commit = commit.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// The snapshot folder of a commit.
    pub fn snapshot_dir(&self, repo: &str, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit)
    }

    /// A file of `repo@revision` if the cache has it.
    pub fn cached_file(&self, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
        let commit = self.cached_commit(repo, revision)?;
        let path = self.snapshot_dir(repo, &commit).join(file);
        path.is_file().then_some(path)
    }

    /// Download one file into the cache (hf-hub writes blobs, snapshot links and the ref),
    /// with a progress bar on stderr unless `quiet`.
    pub fn download(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        quiet: bool,
    ) -> Result<PathBuf, HubError> {
        if let Some(value) = &self.offline {
            return Err(HubError::Offline(value.clone()));
        }
        self.check_reachable()?;
        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(false)
            .with_retries(2)
            .with_user_agent("precis", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(HubError::Api)?;
        let api_repo = api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        api_repo
            .download_with_progress(file, DownloadBar::new(quiet))
            .map_err(HubError::Api)
    }

    /// Fail fast when nothing answers at the endpoint: hf-hub's agent has no connect
    /// timeout, so an unreachable (not refused) host would otherwise hang for minutes.
    fn check_reachable(&self) -> Result<(), HubError> {
        let unreachable = |reason: String| HubError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let (host, port) = host_port(&self.endpoint)
            .ok_or_else(|| unreachable("HF_ENDPOINT is not an http(s) URL".into()))?;
        let addrs: Vec<_> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last = format!("no address for {host}");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(unreachable(last))
    }
}

/// `(host, port)` of an http(s) URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split('/').next()?.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// hf-hub's download progress, drawn with indicatif on stderr (hidden when quiet or when
/// stderr is not a terminal).
struct DownloadBar {
    bar: indicatif::ProgressBar,
}

impl DownloadBar {
    fn new(quiet: bool) -> DownloadBar {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
        };
        DownloadBar { bar }
    }
}

impl hf_hub::api::Progress for DownloadBar {
    fn init(&mut self, size: usize, filename: &str) {
        self.bar.set_length(size as u64);
        self.bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_message(filename.to_string());
    }

    fn update(&mut self, size: usize) {
        self.bar.inc(size as u64);
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hub(vars: &[(&str, &str)]) -> Hub {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Hub::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn cache_dir_follows_python_precedence() {
        assert_eq!(
            hub(&[("HOME", "/h")]).cache_dir,
            Path::new("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            hub(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]).cache_dir,
            Path::new("/x/huggingface/hub")
        );
        assert_eq!(hub(&[("HF_HOME", "/hf")]).cache_dir, Path::new("/hf/hub"));
        assert_eq!(
            hub(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]).cache_dir,
            Path::new("/c")
        );
    }

    #[test]
    fn offline_endpoint_and_token() {
        assert_eq!(
            hub(&[("HF_HUB_OFFLINE", "1")]).offline.as_deref(),
            Some("offline mode is on (HF_HUB_OFFLINE=1)")
        );
        assert_eq!(
            hub(&[("HF_HUB_OFFLINE", "TRUE")]).offline.as_deref(),
            Some("offline mode is on (HF_HUB_OFFLINE=TRUE)")
        );
        assert_eq!(hub(&[("HF_HUB_OFFLINE", "0")]).offline, None);
        let h = hub(&[("HF_ENDPOINT", "http://127.0.0.1:9/"), ("HF_TOKEN", "hf_x")]);
        assert_eq!(h.endpoint, "http://127.0.0.1:9");
        assert_eq!(h.token.as_deref(), Some("hf_x"));
    }

    #[test]
    fn token_file_under_hf_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let h = hub(&[("HF_HOME", dir.path().to_str().unwrap())]);
        assert_eq!(h.token.as_deref(), Some("hf_file"));
    }

    #[test]
    fn cache_lookup_uses_refs_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let h = hub(&[("HF_HUB_CACHE", dir.path().to_str().unwrap())]);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let repo_dir = h.repo_dir("Org/model");
        std::fs::create_dir_all(repo_dir.join("refs/refs/pr")).unwrap();
        std::fs::write(repo_dir.join("refs/refs/pr/4"), commit).unwrap();
        let snap = repo_dir.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(
            h.cached_commit("Org/model", "refs/pr/4").as_deref(),
            Some(commit)
        );
        assert_eq!(
            h.cached_file("Org/model", "refs/pr/4", "config.json"),
            Some(snap.join("config.json"))
        );
        assert_eq!(
            h.cached_file("Org/model", commit, "config.json"),
            Some(snap.join("config.json"))
        );
        assert_eq!(h.cached_file("Org/model", "main", "config.json"), None);
        assert_eq!(h.cached_file("Org/model", "refs/pr/4", "vocab.json"), None);
    }

    #[test]
    fn offline_download_is_refused_without_network() {
        let h = hub(&[("HF_HUB_OFFLINE", "1")]);
        let err = h.download("a/b", "main", "config.json", true).unwrap_err();
        assert!(matches!(err, HubError::Offline(_)));
    }

    #[test]
    fn closed_port_fails_fast() {
        // Port 9 (discard) on loopback is closed here: the attempt is refused at once.
        let h = hub(&[("HF_ENDPOINT", "http://127.0.0.1:9")]);
        let started = std::time::Instant::now();
        let err = h.download("a/b", "main", "config.json", true).unwrap_err();
        assert!(matches!(err, HubError::Unreachable { .. }), "{err:?}");
        assert!(started.elapsed() < CONNECT_TIMEOUT);
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            host_port("https://huggingface.co"),
            Some(("huggingface.co".into(), 443))
        );
        assert_eq!(
            host_port("http://127.0.0.1:8080/x"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(host_port("http://[::1]:81"), Some(("::1".into(), 81)));
        assert_eq!(host_port("ftp://x"), None);
    }
}
