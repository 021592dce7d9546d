//! Archive mode as an archivist meets it: a generated archive of 60 inputs (50 articles in
//! nested folders, bad files of every kind, an HTML page, a JSONL feed, a hidden file, an
//! English article), run whole, interrupted by SIGINT and by SIGKILL and resumed, changed and
//! rerun, and split into shards, always with the real binary and the extractive engine.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{sample, Sandbox, SAMPLES};
use predicates::str::contains;
use serde_json::Value;

const RUN: &[&str] = &["batch", "--mode", "summarize", "--engine", "extractive"];
/// Articles that end done, failed and skipped in the archive.
const DONE: usize = 56;
const FAILED: usize = 3;
const SKIPPED: usize = 1;
const INPUTS: usize = DONE + FAILED + SKIPPED;

const ENGLISH: &str = "Russian President Vladimir Putin arrived in Pyongyang on Wednesday for \
    his first visit to North Korea in twenty-four years.\n\
    The two countries are expected to sign a strategic partnership agreement, officials said, \
    as Western governments watch the growing military cooperation with concern.\n";

const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8">
<title>Sommet à Pyongyang | Le Quotidien</title></head><body>
<header><a href="/">Le Quotidien</a><nav><a>Accueil</a><a>International</a></nav></header>
<main><article>
<h1>Sommet historique à Pyongyang</h1>
<p class="chapo">Vladimir Poutine et Kim Jong-un ont signé mercredi un accord de partenariat stratégique.</p>
<div class="share-buttons"><a>Partager sur Facebook</a><a>Partager sur X</a></div>
<p>Le président russe est arrivé à Pyongyang pour sa première visite en Corée du Nord depuis vingt-quatre ans.</p>
<p>Les deux dirigeants se sont engagés à se porter mutuellement assistance en cas d’agression contre l’un des deux pays.</p>
<ul><li>Coopération militaire et technique renforcée entre les deux pays.</li><li>Échanges commerciaux payés en roubles et en wons.</li></ul>
<p>Les capitales occidentales et Séoul observent avec inquiétude ce rapprochement entre Moscou et Pyongyang.</p>
<section class="comments"><h2>Commentaires</h2><p>Jean : quelle honte, vraiment.</p></section>
</article></main>
<footer>© Le Quotidien — mentions légales</footer>
</body></html>"#;

/// Build the archive under `archive/` in the sandbox; returns its path.
fn archive(sandbox: &Sandbox) -> PathBuf {
    let root = sandbox.path().join("archive");
    let write = |rel: &str, bytes: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    for i in 0..50 {
        let name = SAMPLES[i % SAMPLES.len()];
        let mut text = std::fs::read_to_string(sample(name)).unwrap();
        if i % 3 == 1 {
            text.push_str(&format!(
                "\nMise à jour : cet article a été complété le {} juin avec de nouvelles précisions.\n",
                i % 28 + 1
            ));
        }
        write(
            &format!("{}/{:02}/{i:02}-{name}", 2020 + i % 4, i % 12 + 1),
            text.as_bytes(),
        );
    }
    write("bad/empty.txt", b"");
    write(
        "bad/binary.txt",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00!\x00\xff\xfe",
    );
    let utf8 = std::fs::read_to_string(sample(SAMPLES[1])).unwrap();
    let (latin, _, lossy) = encoding_rs::WINDOWS_1252.encode(&utf8);
    assert!(!lossy);
    write("legacy/latin1.txt", &latin);
    write("web/sommet.html", PAGE.as_bytes());
    write("en/english.txt", ENGLISH.as_bytes());
    write(".hidden.txt", utf8.as_bytes());
    write(".drafts/draft.txt", utf8.as_bytes());
    write("notes/photo.jpg", b"\xff\xd8\xff\xe0");
    let record = |id: &str, field: &str, body: &str| {
        let mut map = serde_json::Map::new();
        map.insert("id".into(), id.into());
        map.insert(field.into(), body.into());
        Value::Object(map).to_string()
    };
    let feed = [
        record(
            "dépêche-1",
            "text",
            &std::fs::read_to_string(sample(SAMPLES[2])).unwrap(),
        ),
        record(
            "dépêche-2",
            "text",
            &std::fs::read_to_string(sample(SAMPLES[3])).unwrap(),
        ),
        "{\"id\": \"broken\", \"text\": \"unterminated".to_string(),
        record("page", "html", PAGE),
        record(
            "../../etc/passwd",
            "text",
            &std::fs::read_to_string(sample(SAMPLES[4])).unwrap(),
        ),
    ];
    write("feeds/agence.jsonl", (feed.join("\n") + "\n").as_bytes());
    root
}

fn run(sandbox: &Sandbox, out: &str, extra: &[&str]) -> Output {
    sandbox
        .precis()
        .args(RUN)
        .args(extra)
        .args(["archive", "-o", out])
        .output()
        .unwrap()
}

/// The manifest's lines by input.
fn manifest(out: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    let mut lines = BTreeMap::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).expect("whole JSON lines");
        let input = value["input"].as_str().unwrap().to_string();
        assert!(
            lines.insert(input.clone(), value).is_none(),
            "two lines for {input}"
        );
    }
    lines
}

/// A manifest line without its timings (which differ between runs).
fn timeless(line: &Value) -> Value {
    let mut line = line.clone();
    line.as_object_mut().unwrap().remove("timings");
    line
}

/// Every file under `dir`, relative, with its bytes (the manifest left out).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel != "manifest.jsonl" && rel != ".precis-lock" {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
    }
    out
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An uninterrupted run: the reference for the others.
fn reference(sandbox: &Sandbox) -> PathBuf {
    let out = run(sandbox, "reference", &[]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    sandbox.path().join("reference")
}

#[test]
fn a_whole_run_gives_one_result_per_article_and_one_line_per_input() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    let out = run(&sandbox, "out", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(
        err.contains(&format!("{FAILED} of {INPUTS} articles failed")),
        "{err}"
    );
    assert!(err.contains("precis batch status out"), "{err}");
    let out_dir = sandbox.path().join("out");
    let lines = manifest(&out_dir);
    assert_eq!(lines.len(), INPUTS);
    let count = |s: &str| lines.values().filter(|l| l["status"] == s).count();
    assert_eq!(
        (count("done"), count("failed"), count("skipped")),
        (DONE, FAILED, SKIPPED)
    );

    let reason = |input: &str| lines[input]["error"].as_str().unwrap().to_string();
    assert!(reason("bad/empty.txt").contains("the file is empty"));
    assert!(reason("bad/binary.txt").contains("not a text article"));
    assert!(reason("feeds/agence.jsonl#L3").contains("line 3 is not valid JSON"));
    assert_eq!(
        reason("en/english.txt"),
        "detected English (eng); precis reads French articles; \
         pass --lang fr to process it as French anyway"
    );
    assert!(!lines
        .keys()
        .any(|k| k.contains("hidden") || k.contains("draft") || k.contains("photo")));

    // Every done article has its two results, and nothing else is in OUT.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for line in lines.values() {
        let outputs: Vec<&str> = line["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(
            outputs.len(),
            if line["status"] == "done" { 2 } else { 0 },
            "{line}"
        );
        assert_eq!(line["sha256"].as_str().unwrap().len(), 64);
        expected.extend(outputs.into_iter().map(String::from));
    }
    let written: BTreeSet<String> = files(&out_dir).into_keys().collect();
    assert_eq!(written, expected);
    assert!(written.contains("2021/02/01-02-visite-historique-a-pyongyang.json"));

    // The id that tried to climb out stays inside, and nothing was written elsewhere.
    assert_eq!(
        lines["feeds/agence.jsonl#../../etc/passwd"]["output"][0],
        "feeds/agence/_etc_passwd.json"
    );
    let outside: Vec<PathBuf> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let names: BTreeSet<String> = outside
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["archive".into(), "out".into()]),
        "{names:?}"
    );
}

#[test]
fn html_pages_and_legacy_encodings_read_like_clean_text() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    run(&sandbox, "out", &[]);
    let out = sandbox.path().join("out");
    let read = |rel: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.join(rel)).unwrap()).unwrap()
    };
    let page = read("web/sommet.json");
    assert_eq!(page["title"], "Sommet historique à Pyongyang");
    let text = page["summary"]["bullets"].to_string();
    assert!(text.contains("accord de partenariat stratégique"), "{text}");
    for junk in ["Partager", "Accueil", "honte", "mentions légales"] {
        assert!(!text.contains(junk), "{junk} in {text}");
    }
    let removed = page["removed"].to_string();
    assert!(
        removed.contains("Partager sur Facebook") && removed.contains("quelle honte"),
        "{removed}"
    );
    // The same page from the JSONL feed gives the same summary.
    assert_eq!(read("feeds/agence/page.json")["summary"], page["summary"]);
    // Windows-1252 bytes read as the UTF-8 original.
    let latin = read("legacy/latin1.json");
    assert_eq!(latin["encoding"], "windows-1252");
    let original = read("2022/07/06-02-visite-historique-a-pyongyang.json");
    assert_eq!(latin["summary"], original["summary"]);
    assert_eq!(latin["language"]["code"], "fra");
    let md = std::fs::read_to_string(out.join("web/sommet.md")).unwrap();
    assert!(
        md.starts_with(
            "# Sommet historique à Pyongyang\n\nSource: `web/sommet.html`\n\n## Summary\n\n- "
        ),
        "{md}"
    );
}

/// Spawn an interruptible run (slowed down so it can be caught in the middle); signal it
/// once some articles are recorded; return its output.
fn interrupted(sandbox: &Sandbox, signal: Option<i32>) -> Output {
    let mut child = sandbox
        .precis_process()
        .args(RUN)
        .args(["archive", "-o", "out"])
        .env("PRECIS_BATCH_TEST_DELAY_MS", "25")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = sandbox.path().join("out/manifest.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&manifest).map_or(0, |t| t.lines().count());
        if lines >= 15 {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    match signal {
        Some(sig) => assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0),
        None => child.kill().unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// After a resume, OUT holds exactly what an uninterrupted run wrote.
fn assert_same_as_reference(sandbox: &Sandbox) {
    let reference = sandbox.path().join("reference");
    let out = sandbox.path().join("out");
    let (want, got) = (files(&reference), files(&out));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(
            got[name] == *bytes,
            "{name} differs from the uninterrupted run's"
        );
    }
    let (want, got) = (manifest(&reference), manifest(&out));
    assert_eq!(want.len(), INPUTS);
    assert_eq!(
        want.values().map(timeless).collect::<Vec<_>>(),
        got.values().map(timeless).collect::<Vec<_>>()
    );
    let raw = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    assert_eq!(raw.lines().count(), INPUTS, "compacted: one line per input");
}

#[test]
fn ctrl_c_stops_after_the_article_in_flight_and_the_same_command_resumes() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    reference(&sandbox);
    let out = interrupted(&sandbox, Some(libc::SIGINT));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("stopping after the article in flight"),
        "{err}"
    );
    assert!(
        err.contains("To resume, run the same command again:"),
        "{err}"
    );
    assert!(
        err.contains("precis batch --mode summarize --engine extractive archive -o out"),
        "{err}"
    );
    let partial = manifest(&sandbox.path().join("out"));
    assert!((15..INPUTS).contains(&partial.len()), "{}", partial.len());
    // Every result present is whole: an interrupted run leaves no half file behind.
    for (name, bytes) in files(&sandbox.path().join("out")) {
        assert!(!name.contains(".precis-"), "temporary file {name}");
        if name.ends_with(".json") {
            serde_json::from_slice::<Value>(&bytes).expect("whole JSON");
        }
    }

    let resumed = run(&sandbox, "out", &[]);
    let err = stderr(&resumed);
    assert_eq!(resumed.status.code(), Some(12), "{err}");
    let unchanged = partial.values().filter(|l| l["status"] == "done").count();
    assert!(
        err.contains(&format!("{unchanged} unchanged since the last run")),
        "{err}"
    );
    assert_same_as_reference(&sandbox);
}

#[test]
fn a_killed_run_leaves_only_whole_files_and_resumes_to_the_same_result() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    reference(&sandbox);
    let out = interrupted(&sandbox, None);
    assert_eq!(out.status.code(), None, "killed by a signal");
    for (name, bytes) in files(&sandbox.path().join("out")) {
        if name.ends_with(".json") && !name.contains(".precis-") {
            serde_json::from_slice::<Value>(&bytes).expect("whole JSON");
        }
    }
    let resumed = run(&sandbox, "out", &[]);
    assert_eq!(resumed.status.code(), Some(12), "{}", stderr(&resumed));
    assert_same_as_reference(&sandbox);
    assert!(files(&sandbox.path().join("out"))
        .keys()
        .all(|n| !n.contains(".precis-")));
}

#[test]
fn changed_inputs_and_options_are_redone_and_the_rest_skipped() {
    let sandbox = Sandbox::new();
    let root = archive(&sandbox);
    run(&sandbox, "out", &[]);
    let out = sandbox.path().join("out");
    let changed = root.join("2020/01/00-01-poutine-en-coree-du-nord.txt");
    let before = std::fs::read(out.join("2020/01/00-01-poutine-en-coree-du-nord.json")).unwrap();
    let mut text = std::fs::read_to_string(&changed).unwrap();
    text = text.replacen("Poutine", "Vladimir Poutine", 1);
    std::fs::write(&changed, text).unwrap();

    let rerun = run(&sandbox, "out", &[]);
    let err = stderr(&rerun);
    // Failed and skipped inputs are always retried; done and unchanged ones are not.
    assert!(
        err.contains(&format!(
            "{INPUTS} of {INPUTS} articles: 1 done, {} unchanged",
            DONE - 1
        )),
        "{err}"
    );
    let after = std::fs::read(out.join("2020/01/00-01-poutine-en-coree-du-nord.json")).unwrap();
    assert_ne!(before, after);

    let fewer = run(&sandbox, "out", &["--bullets", "2"]);
    let err = stderr(&fewer);
    assert!(err.contains(&format!("{DONE} done, 0 unchanged")), "{err}");
    let digest: Value =
        serde_json::from_slice(&std::fs::read(out.join("web/sommet.json")).unwrap()).unwrap();
    assert_eq!(digest["summary"]["bullets"].as_array().unwrap().len(), 2);
    assert_eq!(manifest(&out).len(), INPUTS);
}

#[test]
fn shards_partition_the_inputs_and_status_adds_them_up() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    let mut seen = BTreeSet::new();
    for k in 1..=3 {
        let dir = format!("out-{k}");
        let out = run(&sandbox, &dir, &["--shard", &format!("{k}/3"), "-q"]);
        assert!(
            matches!(out.status.code(), Some(0 | 12)),
            "{}",
            stderr(&out)
        );
        let lines = manifest(&sandbox.path().join(&dir));
        assert!(lines.len() > 5, "shard {k} holds {} inputs", lines.len());
        for input in lines.into_keys() {
            assert!(seen.insert(input.clone()), "{input} in two shards");
        }
    }
    assert_eq!(seen.len(), INPUTS);

    let status = sandbox
        .precis()
        .args([
            "batch", "status", "--format", "json", "out-1", "out-2", "out-3",
        ])
        .output()
        .unwrap();
    assert!(status.status.success());
    let report: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["total"]["articles"], INPUTS);
    assert_eq!(report["total"]["done"], DONE);
    assert_eq!(report["total"]["failed"], FAILED);
    assert_eq!(report["total"]["skipped"], SKIPPED);
    assert_eq!(report["duplicates"], 0);
    assert_eq!(report["outputs"].as_array().unwrap().len(), 3);
    assert!(report["total"]["articles_per_second"].as_f64().unwrap() > 0.0);

    sandbox
        .precis()
        .args(["batch", "status", "out-1", "out-2", "out-3"])
        .assert()
        .success()
        .stdout(contains(format!(
            "{INPUTS} articles: {DONE} done, {FAILED} failed, {SKIPPED} skipped"
        )))
        .stdout(contains("from 3 outputs:"))
        .stdout(contains("bad/empty.txt ["))
        .stdout(contains("articles/s per worker"));
}

#[test]
fn options_have_their_effect() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    // --glob keeps matching files of the folders; --format json writes no Markdown;
    // --lang fr takes the English article as French.
    let out = run(
        &sandbox,
        "out",
        &[
            "--glob",
            "en/*",
            "--glob",
            "legacy/**",
            "--format",
            "json",
            "--lang",
            "fr",
            "--progress-every",
            "0",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let out_dir = sandbox.path().join("out");
    let lines = manifest(&out_dir);
    assert_eq!(
        lines.keys().collect::<Vec<_>>(),
        ["en/english.txt", "legacy/latin1.txt"]
    );
    assert!(lines.values().all(|l| l["status"] == "done"));
    let written: Vec<String> = files(&out_dir).into_keys().collect();
    assert_eq!(written, ["en/english.json", "legacy/latin1.json"]);
    // Not a terminal: plain progress lines.
    assert!(err.contains("precis batch: 1/2 articles ·"), "{err}");
    assert!(
        err.contains("precis batch: 2 of 2 articles: 2 done"),
        "{err}"
    );

    // --keep-boilerplate keeps the lines the cleaner would remove.
    let article = "2020/05/04-05-ferme-soutien-de-pyongyang";
    let removed = |dir: &str| -> Value {
        let bytes =
            std::fs::read(sandbox.path().join(dir).join(format!("{article}.json"))).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["removed"].clone()
    };
    run(&sandbox, "cleaned", &["--glob", "2020/05/*", "-q"]);
    run(
        &sandbox,
        "kept",
        &["--glob", "2020/05/*", "--keep-boilerplate", "-q"],
    );
    assert!(removed("cleaned").to_string().contains("Spread the love"));
    assert_eq!(removed("kept"), serde_json::json!([]));

    // -q: nothing on stderr when all is well.
    let quiet = run(&sandbox, "quiet", &["--glob", "legacy/**", "-q"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(stderr(&quiet), "");
}

#[test]
fn an_output_folder_inside_the_archive_is_not_read_as_input() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    for _ in 0..2 {
        let out = run(&sandbox, "archive/results", &[]);
        assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    }
    let lines = manifest(&sandbox.path().join("archive/results"));
    assert_eq!(lines.len(), INPUTS);
    assert!(lines.keys().all(|k| !k.starts_with("results")));
}

#[test]
fn usage_errors_fail_before_any_work() {
    let sandbox = Sandbox::new();
    archive(&sandbox);
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["batch", "--shard", "0/3", "archive", "-o", "o"],
            2,
            "K counts from 1",
        ),
        (&["batch", "missing", "-o", "o"], 3, "missing: no such file"),
        (
            &["batch", "--mode", "translate", "archive", "-o", "o"],
            8,
            "opus-mt-fr-en",
        ),
        (
            &["batch", "--mode", "summarize", "archive", "-o", "o"],
            8,
            "--engine extractive",
        ),
        (&["batch", "status", "archive"], 3, "no manifest.jsonl here"),
        (
            &[
                "batch",
                "--mode",
                "summarize",
                "--engine",
                "extractive",
                "--instruction",
                "Name every person quoted.",
                "archive",
                "-o",
                "o",
            ],
            2,
            "--instruction is read by the LLM summary engine only",
        ),
        // One article's prompt is `precis summarize --dump-prompt`'s job.
        (
            &["batch", "--dump-prompt", "archive", "-o", "o"],
            2,
            "unexpected argument '--dump-prompt'",
        ),
    ];
    for (args, code, message) in cases {
        sandbox
            .precis()
            .args(args)
            .assert()
            .code(code)
            .stderr(contains(message));
    }
    assert!(
        !sandbox.path().join("o").exists(),
        "no output folder for a run that never started"
    );
}

/// A digest archive run with a real (tiny) translation model: every sentence translated,
/// batched across articles, the same as `precis translate` gives one article at a time.
#[test]
fn digest_runs_translate_every_article_like_the_single_command() {
    let sandbox = Sandbox::new();
    let model = common::root().join("tests/fixtures/marian/tiny-shared");
    let model = model.to_str().unwrap();
    let dir = sandbox.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    for name in &common::SAMPLES[2..5] {
        std::fs::copy(common::sample(name), dir.join(name)).unwrap();
    }
    let out = sandbox
        .precis()
        .args([
            "batch",
            "--engine",
            "extractive",
            "--translation-model",
            model,
            "--format",
            "json",
            "-q",
        ])
        .args(["small", "-o", "out"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for name in &common::SAMPLES[2..5] {
        let stem = name.trim_end_matches(".txt");
        let digest: Value = serde_json::from_str(
            &std::fs::read_to_string(sandbox.path().join(format!("out/{stem}.json"))).unwrap(),
        )
        .unwrap();
        let single = sandbox
            .precis()
            .args([
                "translate",
                "--format",
                "json",
                "--translation-model",
                model,
            ])
            .arg(common::sample(name))
            .output()
            .unwrap();
        let single: Value = serde_json::from_slice(&single.stdout).unwrap();
        let text = digest.to_string();
        for para in single["paragraphs"].as_array().unwrap() {
            for s in para["sentences"].as_array().unwrap() {
                let target = s["target"].as_str().unwrap();
                assert!(
                    text.contains(&serde_json::to_string(target).unwrap()),
                    "{stem}: {target}"
                );
            }
        }
    }
    let lines = manifest(&sandbox.path().join("out"));
    assert_eq!(lines.len(), 3);
    assert!(lines.values().all(|l| l["status"] == "done"));
}

/// An LLM summary run over the five samples with the tiny random Qwen2 of the tests (its
/// text is gibberish, but greedy decoding makes it the same on every run): every article
/// summarized by the model and recorded, a rerun skips them all, and a changed decoding
/// option redoes them.
#[test]
fn llm_summaries_are_written_resumed_and_redone_when_decoding_changes() {
    let sandbox = Sandbox::new();
    let model = common::root().join("tests/fixtures/qwen2/tiny");
    let dir = sandbox.path().join("articles");
    std::fs::create_dir(&dir).unwrap();
    for name in SAMPLES {
        std::fs::copy(sample(name), dir.join(name)).unwrap();
    }
    let run = |max_new_tokens: &str| -> Output {
        let out = sandbox
            .precis()
            .args(["batch", "--mode", "summarize", "--engine", "llm"])
            .arg("--summary-model")
            .arg(&model)
            .args(["--max-new-tokens", max_new_tokens, "articles", "-o", "out"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    let summary = |out: &Path, name: &str| -> Value {
        let json = out.join(name.replace(".txt", ".json"));
        let digest: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        assert_eq!(digest["summary"]["model"], digest["models"]["summary"]);
        assert!(digest["translation"].is_null() && digest["models"]["translation"].is_null());
        digest["summary"].clone()
    };

    let first = run("16");
    let n = SAMPLES.len();
    assert!(
        stderr(&first).contains(&format!("{n} of {n} articles: {n} done, 0 unchanged")),
        "{}",
        stderr(&first)
    );
    let out = sandbox.path().join("out");
    let lines = manifest(&out);
    assert_eq!(lines.keys().collect::<Vec<_>>(), SAMPLES);
    let mut first_summaries = BTreeMap::new();
    for (name, line) in &lines {
        assert_eq!(line["status"], "done", "{line}");
        let stem = name.trim_end_matches(".txt");
        assert_eq!(
            line["output"],
            serde_json::json!([format!("{stem}.json"), format!("{stem}.md")])
        );
        for stage in ["summarize_ms", "prefill_ms", "generate_ms"] {
            assert!(line["timings"][stage].is_number(), "no {stage} in {line}");
        }
        let s = summary(&out, name);
        assert_eq!(s["engine"], "llm");
        let id = s["model"].as_str().unwrap();
        assert!(id.starts_with("local:") && id.contains("#sha256:"), "{id}");
        assert!(!s["raw"].as_str().unwrap().is_empty(), "{s}");
        assert!(s["bullets"].as_array().unwrap().len() <= 5, "{s}");
        assert!(s["prompt_tokens"].as_u64().unwrap() > 100, "{s}");
        let generated = s["generated_tokens"].as_u64().unwrap();
        match s["stop"].as_str().unwrap() {
            "length" => assert_eq!(generated, 16, "{s}"),
            _ => assert!((1..=16).contains(&generated), "{s}"),
        }
        first_summaries.insert(name.clone(), s);
    }
    assert!(
        first_summaries.values().any(|s| s["stop"] == "length"),
        "every summary ended within 16 tokens: the redo below would change none of them"
    );
    let results = files(&out);

    // The same command again: nothing to do, nothing rewritten.
    let again = run("16");
    assert!(
        stderr(&again).contains(&format!("{n} of {n} articles: 0 done, {n} unchanged")),
        "{}",
        stderr(&again)
    );
    assert_eq!(files(&out), results);
    assert_eq!(
        manifest(&out).values().map(timeless).collect::<Vec<_>>(),
        lines.values().map(timeless).collect::<Vec<_>>()
    );

    // More new tokens: a summary cut at 16 goes on, so every article is redone.
    let longer = run("24");
    assert!(
        stderr(&longer).contains(&format!("{n} of {n} articles: {n} done, 0 unchanged")),
        "{}",
        stderr(&longer)
    );
    let relines = manifest(&out);
    for (name, line) in &relines {
        assert_eq!(line["status"], "done", "{line}");
        assert_ne!(line["fingerprint"], lines[name]["fingerprint"]);
        let s = summary(&out, name);
        if first_summaries[name]["stop"] == "length" {
            assert!(s["generated_tokens"].as_u64().unwrap() > 16, "{s}");
        }
    }
}
