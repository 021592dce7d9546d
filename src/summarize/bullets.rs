//! Bullets out of a model's raw text: list markers (`-`, `*`, `•`, `–`, `1.`, `1)`) start a
//! bullet, wrapped lines continue it, unmarked lines before the first marker or after a blank
//! line (a preamble such as "Here is a summary:", a closing remark) are dropped, whitespace is normalized, and at
//! most N are kept. Plain data in, plain data out: no model here.

/// The bullets of `raw`, at most `max`.
pub fn parse(raw: &str, max: usize) -> Vec<String> {
    let mut bullets: Vec<String> = Vec::new();
    let mut in_list = false;
    for line in raw.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            // A blank line ends the bullet: what follows unmarked is a closing remark.
            in_list = false;
            continue;
        }
        match strip_marker(trimmed) {
            Some(text) => {
                bullets.push(text.to_string());
                in_list = true;
            }
            // A wrapped line belongs to the bullet above it; a heading or preamble does not.
            None if in_list && !is_heading(trimmed) => {
                let last = bullets.last_mut().expect("in a list");
                last.push(' ');
                last.push_str(trimmed);
            }
            None => {}
        }
    }
    if bullets.is_empty() {
        // No list at all: take the text's lines as they are (a model that wrote sentences).
        bullets = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !is_heading(l))
            .map(str::to_string)
            .collect();
    }
    bullets
        .into_iter()
        .map(|b| normalize(&b))
        .filter(|b| !b.is_empty())
        .take(max)
        .collect()
}

/// The text after a list marker, if the line starts with one.
fn strip_marker(line: &str) -> Option<&str> {
    for marker in ['-', '*', '•', '–', '—', '·', '+'] {
        if let Some(rest) = line.strip_prefix(marker) {
            // `**bold**` and `--` are not markers: a marker is followed by a space.
            return rest
                .starts_with(char::is_whitespace)
                .then(|| rest.trim_start());
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')')) {
            if rest.starts_with(char::is_whitespace) {
                return Some(rest.trim_start());
            }
        }
    }
    None
}

/// A Markdown heading or a bold label line ("**Summary:**", "Résumé :").
fn is_heading(line: &str) -> bool {
    line.starts_with('#')
        || (line.starts_with("**") && line.ends_with("**"))
        || (line.ends_with(':') && line.split_whitespace().count() <= 6)
}

/// Whitespace runs become one space; a bullet made only of punctuation is dropped.
fn normalize(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().any(char::is_alphanumeric) {
        text
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_of_every_kind() {
        let raw = "- one\n* two\n• three\n1. four\n2) five\n– six";
        assert_eq!(
            parse(raw, 10),
            ["one", "two", "three", "four", "five", "six"]
        );
    }

    #[test]
    fn preamble_and_headings_are_dropped_wrapped_lines_joined() {
        let raw = "Here are the key points:\n\n## Summary\n- Kim met\n  Putin in Pyongyang.\n-   Both   signed a pact.\n\nThese are the facts.";
        assert_eq!(
            parse(raw, 5),
            ["Kim met Putin in Pyongyang.", "Both signed a pact."]
        );
    }

    #[test]
    fn capped_at_n() {
        assert_eq!(parse("- a\n- b\n- c", 2), ["a", "b"]);
    }

    #[test]
    fn bold_and_numbers_are_not_markers() {
        assert_eq!(parse("- **Kim**: met Putin", 3), ["**Kim**: met Putin"]);
        assert_eq!(parse("2024 was a year.\n", 3), ["2024 was a year."]);
        assert_eq!(parse("-- \n- ok", 3), ["ok"]);
    }

    #[test]
    fn text_without_a_list_gives_its_lines() {
        assert_eq!(
            parse("First fact.\nSecond fact.", 5),
            ["First fact.", "Second fact."]
        );
        assert!(parse("", 5).is_empty());
        assert!(parse("- …\n- ...", 5).is_empty());
    }

    proptest! {
        #[test]
        fn never_more_than_n_never_empty(raw in "\\PC{0,200}", n in 1usize..8) {
            let bullets = parse(&raw, n);
            prop_assert!(bullets.len() <= n);
            for b in &bullets {
                prop_assert!(!b.trim().is_empty());
                prop_assert_eq!(b.trim(), b.as_str());
            }
        }
    }
}
