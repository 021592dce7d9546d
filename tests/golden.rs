//! Golden tests over the five sample articles: exactly what the pipeline keeps, removes and
//! splits (`inspect`), and which sentences the extractive engine picks.

mod common;

use common::{assert_golden, sample, Sandbox, SAMPLES};

#[test]
fn inspect_json_of_every_sample() {
    let sandbox = Sandbox::new();
    for name in SAMPLES {
        let out = sandbox
            .precis()
            .args(["inspect", "--format", "json"])
            .arg(sample(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stem = name.trim_end_matches(".txt");
        assert_golden(
            &format!("inspect/{stem}.json"),
            &String::from_utf8(out.stdout).unwrap(),
        );
    }
}

#[test]
fn extractive_summary_of_every_sample() {
    let sandbox = Sandbox::new();
    for name in SAMPLES {
        let out = sandbox
            .precis()
            .args(["summarize", "--engine", "extractive", "-q"])
            .arg(sample(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stem = name.trim_end_matches(".txt");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("- ")).count(),
            5,
            "{name}: {text}"
        );
        assert_golden(&format!("summarize/{stem}.extractive.md"), &text);
    }
}
