//! Progress of an archive run on stderr: a bar on a terminal (articles, sentences/s, ETA),
//! a plain line every few seconds otherwise (cluster logs), nothing with `-q`; and the closing
//! line that says what the run did.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::manifest::Status;

/// Where progress goes.
enum Display {
    Quiet,
    Bar(ProgressBar),
    Lines { every: Duration, last: Instant },
}

/// Counts of the run so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Done in an earlier run and unchanged: not redone.
    pub resumed: usize,
    pub sentences: usize,
}

impl Counts {
    /// Articles this run has dealt with, resumed ones included.
    pub fn finished(&self) -> usize {
        self.done + self.failed + self.skipped + self.resumed
    }

    fn processed(&self) -> usize {
        self.done + self.failed + self.skipped
    }
}

pub struct Progress {
    display: Display,
    start: Instant,
    pub total: usize,
    pub counts: Counts,
}

impl Progress {
    pub fn new(total: usize, quiet: bool, every: Duration) -> Progress {
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed}] {wide_bar} {pos}/{len} articles · {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            Display::Bar(bar)
        } else {
            Display::Lines {
                every,
                last: Instant::now(),
            }
        };
        Progress {
            display,
            start: Instant::now(),
            total,
            counts: Counts::default(),
        }
    }

    pub fn resumed(&mut self) {
        self.counts.resumed += 1;
        self.tick();
    }

    pub fn finished(&mut self, status: Status, sentences: usize) {
        match status {
            Status::Done => self.counts.done += 1,
            Status::Failed => self.counts.failed += 1,
            Status::Skipped => self.counts.skipped += 1,
        }
        self.counts.sentences += sentences;
        self.tick();
    }

    /// A message for the user (a failed article), above the bar.
    pub fn note(&self, message: &str) {
        match &self.display {
            Display::Quiet => {}
            Display::Bar(bar) => bar.println(message),
            Display::Lines { .. } => eprintln!("{message}"),
        }
    }

    fn tick(&mut self) {
        let line = self.status_line();
        match &mut self.display {
            Display::Quiet => {}
            Display::Bar(bar) => {
                bar.set_position(self.counts.finished() as u64);
                bar.set_message(line);
            }
            Display::Lines { every, last } => {
                if last.elapsed() >= *every {
                    *last = Instant::now();
                    eprintln!(
                        "precis batch: {}/{} articles · {line}",
                        self.counts.finished(),
                        self.total
                    );
                }
            }
        }
    }

    /// Failures, speed and time left, from the articles processed (not resumed) so far.
    fn status_line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let c = &self.counts;
        let rate = c.processed() as f64 / secs;
        let left = self.total.saturating_sub(c.finished());
        let eta = match rate > 0.0 {
            true => human(Duration::from_secs_f64(left as f64 / rate)),
            false => "?".into(),
        };
        format!(
            "{} failed, {} skipped · {:.1} sentences/s · ETA {eta}",
            c.failed,
            c.skipped,
            c.sentences as f64 / secs
        )
    }

    /// Clear the bar and print what the run did (unless quiet).
    pub fn finish(&self, out: &std::path::Path) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
        if matches!(self.display, Display::Quiet) {
            return;
        }
        let c = &self.counts;
        let secs = self.start.elapsed().as_secs_f64();
        eprintln!(
            "precis batch: {} of {} articles: {} done, {} unchanged since the last run, \
             {} failed, {} skipped in {:.1} s ({:.1} articles/s); manifest: {}",
            c.finished(),
            self.total,
            c.done,
            c.resumed,
            c.failed,
            c.skipped,
            secs,
            c.processed() as f64 / secs.max(1e-3),
            out.join(super::manifest::FILE).display()
        );
    }
}

/// `1h02m`, `3m05s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }
}
