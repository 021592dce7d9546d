//! `precis models`: the registry, the cache, downloads and integrity checks.

use serde::Serialize;

use crate::cli::{Format, ModelsCommand};
use crate::error::{Error, Result};
use crate::models::registry::{Manifest, Task};
use crate::models::{files, parse_spec, ModelSpec, Resolver, Role};
use crate::output::{self, Sink};

pub fn run(cmd: ModelsCommand, quiet: bool) -> Result<()> {
    let resolver = Resolver::from_env(quiet)?;
    match cmd {
        ModelsCommand::List { format } => list(&resolver, format),
        ModelsCommand::Pull { model } => pull(&resolver, &model),
        ModelsCommand::Path { model } => path(&resolver, &model),
        ModelsCommand::Verify { models } => verify(&resolver, &models),
    }
}

/// Whether a registry model's files are all, some or none in the cache.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Cached {
    Yes,
    Partial,
    No,
}

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    task: Task,
    architecture: &'a str,
    languages: String,
    size_mb: u64,
    cached: Cached,
    source: String,
    license: &'a str,
}

fn cached(resolver: &Resolver, manifest: &Manifest) -> Cached {
    let files = resolver.cached_files(manifest);
    match files.iter().filter(|(_, p)| p.is_some()).count() {
        0 => Cached::No,
        n if n == files.len() => Cached::Yes,
        _ => Cached::Partial,
    }
}

fn list(resolver: &Resolver, format: Format) -> Result<()> {
    let rows: Vec<Row> = resolver
        .registry
        .all()
        .iter()
        .map(|m| Row {
            name: &m.name,
            task: m.task,
            architecture: &m.architecture,
            languages: format!(
                "{}→{}",
                m.source_languages.join(","),
                m.target_languages.join(",")
            ),
            size_mb: m.size_mb,
            cached: cached(resolver, m),
            source: m.origin(),
            license: &m.license,
        })
        .collect();
    let rendered = match format {
        Format::Json => output::json(&rows, format, 1),
        Format::Jsonl => rows.iter().map(|r| output::json(r, format, 2)).collect(),
        Format::Md | Format::Text => table(&rows, &resolver.hub.cache_dir),
    };
    let mut sink = Sink::new(None, 1)?;
    sink.write("models", format, &rendered)?;
    sink.finish()
}

fn table(rows: &[Row], cache: &std::path::Path) -> String {
    let mut out = format!(
        "{:<24} {:<14} {:<12} {:>8}  {:<7} SOURCE\n",
        "NAME", "TASK", "LANGS", "SIZE", "CACHED"
    );
    for r in rows {
        let task = serde_json::to_value(r.task).unwrap_or_default();
        out.push_str(&format!(
            "{:<24} {:<14} {:<12} {:>5} MB  {:<7} {}\n",
            r.name,
            task.as_str().unwrap_or_default(),
            r.languages,
            r.size_mb,
            serde_json::to_value(r.cached)
                .unwrap_or_default()
                .as_str()
                .unwrap_or_default(),
            r.source
        ));
    }
    out.push_str(&format!("\ncache: {}\n", cache.display()));
    out
}

fn role_of(task: Task) -> Role {
    match task {
        Task::Translation => Role::Translation,
        Task::Summarization => Role::Summary,
    }
}

fn pull(resolver: &Resolver, name: &str) -> Result<()> {
    let model = match parse_spec(name, &resolver.registry)? {
        ModelSpec::Registry(m) => resolver.resolve(name, role_of(m.task))?,
        ModelSpec::Hub { .. } => resolver
            .resolve(name, Role::Translation)
            .or_else(|_| resolver.resolve(name, Role::Summary))?,
        ModelSpec::Local(path) => {
            return Err(Error::Usage(format!(
                "{}: is a local path; `models pull` downloads registry models and Hub ids",
                path.display()
            )))
        }
    };
    eprintln!("{name}: {} files ready ({})", model.files.len(), model.id);
    Ok(())
}

fn path(resolver: &Resolver, name: &str) -> Result<()> {
    let manifest = match parse_spec(name, &resolver.registry)? {
        ModelSpec::Registry(m) => *m,
        ModelSpec::Local(path) => {
            println!("{}", path.display());
            return Ok(());
        }
        ModelSpec::Hub { repo, revision } => {
            let commit = resolver
                .hub
                .cached_commit(&repo, &revision)
                .ok_or_else(|| not_cached(resolver, name, &repo, &revision, "config.json"))?;
            println!("{}", resolver.hub.snapshot_dir(&repo, &commit).display());
            return Ok(());
        }
    };
    let mut out = String::new();
    for source in &manifest.sources {
        for file in &source.files {
            if resolver
                .hub
                .cached_file(&source.repo, &source.revision, file)
                .is_none()
            {
                return Err(not_cached(
                    resolver,
                    name,
                    &source.repo,
                    &source.revision,
                    file,
                ));
            }
        }
        let commit = resolver
            .hub
            .cached_commit(&source.repo, &source.revision)
            .unwrap_or_default();
        out.push_str(&format!(
            "{}\n",
            resolver.hub.snapshot_dir(&source.repo, &commit).display()
        ));
    }
    print!("{out}");
    Ok(())
}

fn not_cached(resolver: &Resolver, name: &str, repo: &str, revision: &str, file: &str) -> Error {
    Error::ModelNotCached(Box::new(crate::error::MissingModel {
        model: name.to_string(),
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: file.to_string(),
        cache: resolver.hub.cache_dir.clone(),
        why: "it has not been pulled".into(),
        flag: "--translation-model or --summary-model".into(),
        alternative: String::new(),
    }))
}

/// Check every cached file of the named models (all cached registry models by default).
fn verify(resolver: &Resolver, names: &[String]) -> Result<()> {
    let names: Vec<String> = if names.is_empty() {
        resolver
            .registry
            .all()
            .iter()
            .filter(|m| cached(resolver, m) != Cached::No)
            .map(|m| m.name.clone())
            .collect()
    } else {
        names.to_vec()
    };
    if names.is_empty() {
        eprintln!("no registry model is cached yet (see `precis models list`)");
        return Ok(());
    }
    let mut problems = 0;
    for name in &names {
        let files = match parse_spec(name, &resolver.registry)? {
            ModelSpec::Registry(m) => resolver.cached_files(&m),
            ModelSpec::Local(_) | ModelSpec::Hub { .. } => {
                let model = resolver
                    .resolve_cached(name, Role::Translation)
                    .or_else(|_| resolver.resolve_cached(name, Role::Summary))?;
                model.files.into_iter().map(|(f, p)| (f, Some(p))).collect()
            }
        };
        for (file, path) in files {
            let verdict = match path {
                None => Err("missing: run `precis models pull` again".to_string()),
                Some(p) => files::check(&p)
                    .and_then(|desc| {
                        files::check_blob_checksum(&p).map(|sum| {
                            if sum {
                                format!("{desc}, sha256 ok")
                            } else {
                                desc
                            }
                        })
                    })
                    .map_err(|e| crate::error_chain(&e)),
            };
            match verdict {
                Ok(desc) => println!("ok    {name}  {file}  {desc}"),
                Err(why) => {
                    problems += 1;
                    println!("FAIL  {name}  {file}  {why}");
                }
            }
        }
    }
    if problems > 0 {
        return Err(Error::ModelFile {
            path: resolver.hub.cache_dir.clone(),
            what: format!("{problems} model file(s) failed verification (see above); `precis models pull NAME` fetches them again"),
            source: None,
        });
    }
    Ok(())
}
