//! `precis batch status OUT…`: what one or more archive runs did, from their manifests alone,
//! so it works on shared storage while shards still run, and merges the shards of one job.
//!
//! An input found in several outputs (shards that overlap, or the same archive run twice into
//! different folders) is counted once, its best outcome winning (done, then skipped, then
//! failed), and the overlap is reported. Throughput is per worker: articles over the time
//! spent on them, from the manifests' timings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::manifest::{self, Line, Status};
use crate::cli::{BatchStatusArgs, StatusFormat};
use crate::error::{Error, Result};

/// Totals of one output folder, or of all of them.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Totals {
    pub articles: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub sentences: usize,
    /// Time spent on the articles, from the manifest's timings.
    pub seconds: f64,
    pub articles_per_second: Option<f64>,
}

impl Totals {
    fn add(&mut self, line: &Line) {
        self.articles += 1;
        match line.status {
            Status::Done => self.done += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
        self.sentences += line.sentences;
        self.seconds += line.timings.get("total").unwrap_or(0.0) / 1000.0;
    }

    fn close(mut self) -> Totals {
        self.seconds = (self.seconds * 1000.0).round() / 1000.0;
        self.articles_per_second = (self.seconds > 0.0)
            .then(|| (self.articles as f64 / self.seconds * 10.0).round() / 10.0);
        self
    }
}

/// One failed or skipped article.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub input: String,
    pub output_dir: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputTotals {
    pub dir: PathBuf,
    #[serde(flatten)]
    pub totals: Totals,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub total: Totals,
    pub outputs: Vec<OutputTotals>,
    /// Inputs found in more than one output folder.
    pub duplicates: usize,
    pub failures: Vec<Problem>,
    pub skipped: Vec<Problem>,
}

/// Run `precis batch status`.
pub fn status(args: &BatchStatusArgs) -> Result<()> {
    let report = report(&args.outputs)?;
    let text = match args.format {
        StatusFormat::Json => {
            serde_json::to_string_pretty(&report).expect("reports serialize") + "\n"
        }
        StatusFormat::Text => render(&report),
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Output {
            path: PathBuf::from("<stdout>"),
            source,
        })
}

fn rank(status: Status) -> u8 {
    match status {
        Status::Done => 2,
        Status::Skipped => 1,
        Status::Failed => 0,
    }
}

/// Read and merge the manifests of `dirs`.
pub fn report(dirs: &[PathBuf]) -> Result<Report> {
    let mut merged: BTreeMap<String, (usize, Line)> = BTreeMap::new();
    let mut outputs = Vec::new();
    let mut duplicates = 0;
    for (i, dir) in dirs.iter().enumerate() {
        let path = dir.join(manifest::FILE);
        if !path.is_file() {
            return Err(Error::ManifestMissing { dir: dir.clone() });
        }
        let latest = manifest::read(&path)?;
        let mut totals = Totals::default();
        for (input, line) in latest.lines {
            totals.add(&line);
            match merged.get(&input) {
                Some((_, kept)) => {
                    duplicates += 1;
                    if rank(line.status) > rank(kept.status) {
                        merged.insert(input, (i, line));
                    }
                }
                None => {
                    merged.insert(input, (i, line));
                }
            }
        }
        outputs.push(OutputTotals {
            dir: dir.clone(),
            totals: totals.close(),
        });
    }
    let mut total = Totals::default();
    let (mut failures, mut skipped) = (Vec::new(), Vec::new());
    for (input, (i, line)) in merged {
        total.add(&line);
        let problem = || Problem {
            input: input.clone(),
            output_dir: dirs[i].clone(),
            reason: line.error.clone().unwrap_or_default(),
        };
        match line.status {
            Status::Failed => failures.push(problem()),
            Status::Skipped => skipped.push(problem()),
            Status::Done => {}
        }
    }
    Ok(Report {
        total: total.close(),
        outputs,
        duplicates,
        failures,
        skipped,
    })
}

fn rate(t: &Totals) -> String {
    match t.articles_per_second {
        Some(r) => format!("{r:.1} articles/s"),
        None => "no timings".into(),
    }
}

/// The text report.
pub fn render(report: &Report) -> String {
    let t = &report.total;
    let mut out = format!(
        "{} articles: {} done, {} failed, {} skipped; {} sentences\n\
         throughput: {} per worker ({:.1} s of processing)\n",
        t.articles,
        t.done,
        t.failed,
        t.skipped,
        t.sentences,
        rate(t),
        t.seconds
    );
    if report.outputs.len() > 1 {
        out.push_str(&format!("from {} outputs:\n", report.outputs.len()));
        for o in &report.outputs {
            let t = &o.totals;
            out.push_str(&format!(
                "  {}: {} articles, {} done, {} failed, {} skipped, {}\n",
                o.dir.display(),
                t.articles,
                t.done,
                t.failed,
                t.skipped,
                rate(t)
            ));
        }
    }
    if report.duplicates > 0 {
        out.push_str(&format!(
            "warning: {} inputs appear in more than one output (overlapping shards?); \
             each is counted once\n",
            report.duplicates
        ));
    }
    for (heading, problems) in [("failed", &report.failures), ("skipped", &report.skipped)] {
        if !problems.is_empty() {
            out.push_str(&format!("{heading}:\n"));
        }
        for p in problems.iter() {
            let dir = match report.outputs.len() {
                1 => String::new(),
                _ => format!(" [{}]", p.output_dir.display()),
            };
            out.push_str(&format!("  {}{dir}: {}\n", p.input, p.reason));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Timings;

    fn line(input: &str, status: Status, ms: f64) -> Line {
        let mut timings = Timings::default();
        timings.set("total", ms);
        Line {
            input: input.into(),
            sha256: "s".into(),
            status,
            error: (status != Status::Done).then(|| format!("{input} went wrong")),
            output: vec![],
            fingerprint: "f".into(),
            sentences: 10,
            timings,
        }
    }

    fn write(dir: &std::path::Path, lines: &[Line]) {
        std::fs::create_dir_all(dir).unwrap();
        let mut latest = BTreeMap::new();
        for l in lines {
            latest.insert(l.input.clone(), l.clone());
        }
        manifest::write_compact(&dir.join(manifest::FILE), &latest).unwrap();
    }

    #[test]
    fn shards_merge_into_one_total_with_overlaps_counted_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write(
            &a,
            &[
                line("x", Status::Done, 500.0),
                line("y", Status::Failed, 250.0),
            ],
        );
        write(
            &b,
            &[
                line("z", Status::Skipped, 250.0),
                line("y", Status::Done, 500.0),
            ],
        );
        let r = report(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            (
                r.total.articles,
                r.total.done,
                r.total.failed,
                r.total.skipped
            ),
            (3, 2, 0, 1)
        );
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.outputs[0].totals.articles_per_second, Some(2.7));
        assert_eq!(r.skipped[0].reason, "z went wrong");
        let text = render(&r);
        assert!(
            text.starts_with("3 articles: 2 done, 0 failed, 1 skipped"),
            "{text}"
        );
        assert!(
            text.contains("1 inputs appear in more than one output"),
            "{text}"
        );
        let missing = report(&[tmp.path().join("nope")]).unwrap_err();
        assert_eq!(missing.exit_code(), 3);
    }
}
