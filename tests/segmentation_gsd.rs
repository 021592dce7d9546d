//! Sentence segmentation scored against the UD French GSD test split (416 gold sentences).
//!
//! Protocol, the one under which pysbd (language "fr") scores F1 0.980 and a naive split at
//! whitespace after `.` `!` `?` `…` scores 0.968: keep the gold sentences that end in terminal
//! punctuation (last character, once trailing closing quotes and brackets are stripped, is one
//! of `.` `!` `?` `…`), in file order; join them five at a time with one space into paragraphs;
//! a boundary is the byte offset where a sentence ends inside its paragraph (the paragraph end
//! does not count); precision, recall and F1 are pooled over all paragraphs.

use std::collections::BTreeSet;

use precis::input::segment::sentence_spans;

const SENTENCES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/fr_gsd-ud-test.sentences.txt"
);
const PARAGRAPH_LEN: usize = 5;
const CLOSERS: &[char] = &['»', '”', '"', '\'', ')', ']', '’'];

/// Counts of boundaries found and missed.
#[derive(Default)]
struct Tally {
    true_pos: usize,
    false_pos: usize,
    false_neg: usize,
}

fn gold_sentences() -> Vec<String> {
    let text = std::fs::read_to_string(SENTENCES).expect("read the GSD test sentences");
    text.lines()
        .map(str::trim)
        .filter(|s| ends_in_terminal(s))
        .map(String::from)
        .collect()
}

fn ends_in_terminal(sentence: &str) -> bool {
    let core = sentence.trim_end_matches(CLOSERS).trim_end();
    core.ends_with(['.', '!', '?', '…'])
}

/// Inner sentence ends of a paragraph: every end but the paragraph's own.
fn inner_ends(ends: impl Iterator<Item = usize>, paragraph: &str) -> BTreeSet<usize> {
    ends.filter(|&end| end < paragraph.len()).collect()
}

/// A few characters on each side of byte `at`, to show an error.
fn context(paragraph: &str, at: usize) -> String {
    let (before, after) = paragraph.split_at(at);
    let skip = before.chars().count().saturating_sub(40);
    let before: String = before.chars().skip(skip).collect();
    let after: String = after.chars().take(25).collect();
    format!("…{before}|{after}…")
}

fn score_paragraph(sentences: &[String], tally: &mut Tally) {
    let paragraph = sentences.join(" ");
    let gold_ends = sentences.iter().scan(0, |offset, sentence| {
        let end = *offset + sentence.len();
        *offset = end + 1;
        Some(end)
    });
    let gold = inner_ends(gold_ends, &paragraph);
    let found = inner_ends(
        sentence_spans(&paragraph).into_iter().map(|r| r.end),
        &paragraph,
    );
    for &end in found.symmetric_difference(&gold) {
        let kind = if gold.contains(&end) {
            "missed"
        } else {
            "extra"
        };
        eprintln!("{kind:6} {}", context(&paragraph, end));
    }
    let true_pos = found.intersection(&gold).count();
    tally.true_pos += true_pos;
    tally.false_pos += found.len() - true_pos;
    tally.false_neg += gold.len() - true_pos;
}

#[test]
fn gsd_test_split_f1() {
    let sentences = gold_sentences();
    let mut tally = Tally::default();
    for paragraph in sentences.chunks(PARAGRAPH_LEN) {
        score_paragraph(paragraph, &mut tally);
    }
    let Tally {
        true_pos,
        false_pos,
        false_neg,
    } = tally;
    let precision = true_pos as f64 / (true_pos + false_pos) as f64;
    let recall = true_pos as f64 / (true_pos + false_neg) as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    eprintln!(
        "GSD test: {} sentences kept, {} boundaries: P={precision:.4} R={recall:.4} F1={f1:.4} \
         (tp={true_pos} fp={false_pos} fn={false_neg})",
        sentences.len(),
        true_pos + false_neg,
    );
    assert!(f1 >= 0.985, "F1 {f1:.4} is below 0.985");
}
