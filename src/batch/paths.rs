//! Output names: where each article's results go under OUT, safely and without collisions.
//!
//! Names come from input paths (relative to their input folder) and from JSONL ids, which
//! are arbitrary strings: `../../etc/passwd`, `/abs`, `C:\x`, `con`, empty. Every component
//! is sanitized on its own so that no name can climb out of OUT, name a device on Windows,
//! or hide as a dotfile; ids stay one component (their slashes become `_`). Sanitizing is
//! lossy, and different inputs can also share a stem (`a.txt` and `a.html`), so stems are
//! claimed in input order, case-insensitively (macOS and Windows folders are), and a later
//! claimant gets a short hash of its input name appended. Input order is sorted, so the
//! same inputs always get the same names.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// Longest component kept, in bytes (file systems allow 255; room is left for the hash
/// suffix, the extension and the temporary name's decoration).
const MAX_COMPONENT_BYTES: usize = 120;

/// Names Windows reserves for devices, with or without an extension.
const WINDOWS_RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Characters that are safe in a file name on Linux, macOS and Windows alike, besides
/// letters and digits of any script.
fn is_safe(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | ',' | '=' | '@' | '(' | ')')
}

/// One safe path component: never empty, `.` or `..`, no separator, no control or
/// reserved character, not hidden, not a Windows device name, not too long.
pub fn sanitize_component(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if is_safe(c) { c } else { '_' };
        // Collapse runs of `_` so that "a / b" stays readable as "a_b".
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    // Leading dots hide a file (and `..` climbs): a leading run of dots and `_` that holds a
    // dot becomes one `_`. Trailing dots and spaces vanish on Windows.
    let body = out.trim_start_matches(['.', '_']);
    let lead = &out[..out.len() - body.len()];
    let body = body.trim_end_matches(['.', '_']);
    let mut out = match (lead.contains('.'), body.is_empty()) {
        (_, true) => "_".to_string(),
        (true, false) => format!("_{body}"),
        (false, false) => format!("{lead}{body}"),
    };
    let device = out.split('.').next().unwrap_or("").to_ascii_lowercase();
    if WINDOWS_RESERVED.contains(&device.as_str()) {
        out.insert(0, '_');
    }
    if out.len() > MAX_COMPONENT_BYTES {
        let hash = short_hash(raw);
        let mut cut = MAX_COMPONENT_BYTES - hash.len() - 1;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out = format!("{}-{hash}", &out[..cut]);
    }
    out
}

/// A relative output stem (no extension) from path-like components, each sanitized.
pub fn sanitize_stem<'a>(components: impl IntoIterator<Item = &'a str>) -> String {
    let parts: Vec<String> = components
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(sanitize_component)
        .collect();
    if parts.is_empty() {
        "_".to_string()
    } else {
        parts.join("/")
    }
}

/// The file name without its last extension (`a.b.txt` → `a.b`; `.txt` alone is kept).
pub fn strip_extension(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// Eight hex digits of SHA-256: short, stable across runs, platforms and Rust versions.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The stems handed out so far in this run.
#[derive(Debug, Default)]
pub struct Claims {
    taken: HashSet<String>,
}

impl Claims {
    /// Claim `stem` for the input named `key`; on a collision, `stem-<hash of key>`.
    pub fn claim(&mut self, stem: &str, key: &str) -> String {
        if self.taken.insert(stem.to_lowercase()) {
            return stem.to_string();
        }
        let hash = short_hash(key);
        let mut n = 1;
        loop {
            let candidate = match n {
                1 => format!("{stem}-{hash}"),
                _ => format!("{stem}-{hash}-{n}"),
            };
            if self.taken.insert(candidate.to_lowercase()) {
                return candidate;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn traversal_absolute_and_odd_names_stay_inside() {
        assert_eq!(sanitize_component("../../etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_component(".."), "_");
        assert_eq!(sanitize_component("."), "_");
        assert_eq!(sanitize_component(""), "_");
        assert_eq!(sanitize_component("/etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_component("C:\\Windows\\x"), "C_Windows_x");
        assert_eq!(sanitize_component(".hidden"), "_hidden");
        assert_eq!(sanitize_component("a\u{0}b\nc"), "a_b_c");
        assert_eq!(sanitize_component("trailing. "), "trailing");
        assert_eq!(sanitize_component("Été à Paris"), "Été_à_Paris");
        assert_eq!(sanitize_component("a*b?c<d>e|f\"g"), "a_b_c_d_e_f_g");
    }

    #[test]
    fn windows_device_names_are_defused() {
        assert_eq!(sanitize_component("CON"), "_CON");
        assert_eq!(sanitize_component("nul.txt"), "_nul.txt");
        assert_eq!(sanitize_component("com1"), "_com1");
        assert_eq!(sanitize_component("console"), "console");
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "é".repeat(200);
        let out = sanitize_component(&long);
        assert!(out.len() <= MAX_COMPONENT_BYTES, "{}", out.len());
        assert!(out.ends_with(&format!("-{}", short_hash(&long))));
        assert_ne!(out, sanitize_component(&format!("{long}x")));
    }

    #[test]
    fn stems_join_sanitized_components() {
        assert_eq!(sanitize_stem(["2024", "05", "a b"]), "2024/05/a_b");
        assert_eq!(sanitize_stem(["feed", "../x"]), "feed/_x");
        assert_eq!(sanitize_stem([]), "_");
        assert_eq!(strip_extension("a.b.txt"), "a.b");
        assert_eq!(strip_extension(".txt"), ".txt");
        assert_eq!(strip_extension("noext"), "noext");
    }

    #[test]
    fn collisions_get_a_stable_hash_suffix_case_insensitively() {
        let mut claims = Claims::default();
        assert_eq!(claims.claim("news/a", "news/a.txt"), "news/a");
        let second = claims.claim("news/a", "news/a.html");
        assert_eq!(second, format!("news/a-{}", short_hash("news/a.html")));
        let third = claims.claim("NEWS/A", "NEWS/A.txt");
        assert_eq!(third, format!("NEWS/A-{}", short_hash("NEWS/A.txt")));
        // A name that happens to equal a suffixed one still gets its own.
        let mut claims = Claims::default();
        let suffixed = format!("a-{}", short_hash("k"));
        claims.claim(&suffixed, "other");
        claims.claim("a", "x");
        assert_eq!(claims.claim("a", "k"), format!("{suffixed}-2"));
    }

    proptest! {
        #[test]
        fn any_id_gives_one_safe_component(id in "\\PC{0,300}") {
            let c = sanitize_component(&id);
            prop_assert!(!c.is_empty() && c.len() <= MAX_COMPONENT_BYTES);
            prop_assert!(!c.starts_with('.'));
            prop_assert!(!c.contains(['/', '\\', ':', '\0']));
            prop_assert!(c != "." && c != "..");
            let device = c.split('.').next().unwrap().to_ascii_lowercase();
            prop_assert!(!WINDOWS_RESERVED.contains(&device.as_str()));
        }
    }
}
