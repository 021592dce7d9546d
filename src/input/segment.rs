//! French sentence segmentation: splits one paragraph of news text into sentences.
//!
//! The approach is rule-based and works in one left-to-right pass. Every run of terminal
//! punctuation (`.`, `!`, `?`, `…`) is a candidate end; the run grows over what belongs to the
//! sentence it ends (more terminal marks, French spaces before `!` and `?`, closing quotes and
//! brackets). The candidate becomes a boundary only when whitespace follows and the next
//! sentence starts like one (an uppercase letter or a digit, possibly behind opening quotes,
//! brackets or a dialogue dash), and, for a lone period, when the word before it is not an
//! abbreviation, an initial or a list number. Boundaries are never placed inside a token, so
//! decimals, URLs, e-mail addresses and dotted acronyms stay whole.

use std::ops::Range;

/// Abbreviations that are followed by what they qualify (a name, a reference), so a period
/// after them never ends a sentence.
const NEVER_FINAL: &[&str] = &[
    "M", "MM", "Mme", "Mmes", "Mlle", "Mlles", "Mr", "Mrs", "Ms", "Dr", "Drs", "Pr", "Prof", "Me",
    "Mes", "Mgr", "Mgrs", "St", "Ste", "Sts", "Stes", "Jr", "Sr", "Cie", "Gal", "Gén", "Col",
    "Cdt", "Lt", "Ch", "Ph", "Th", "cf", "av", "apr", "env", "ex", "vs", "ca", "resp", "éd", "dir",
    "coll", "trad", "janv", "févr", "fév", "avr", "juil", "oct", "nov", "déc", "p", "pp", "s",
    "ss", "t", "v", "r", "n", "f", "ff", "n°", "nᵒ",
];

/// Abbreviations that are also ordinary words or that often end a sentence ("ils étaient
/// sept.", "le vol.", "à 5 km."): a period after them is kept only before a number.
const BEFORE_NUMBER: &[&str] = &[
    "art", "vol", "no", "nos", "chap", "fig", "tome", "sept", "hab", "km", "kg", "tél",
];

/// Dotted forms that look like initials but usually end the sentence they are in.
const MAY_END: &[&str] = &["J.-C"];

/// Straight and curly closing marks that belong to the sentence they follow.
const CLOSERS: &[char] = &['»', '”', '›', ')', ']', '}', '"', '\'', '’'];

/// Marks that may open a sentence before its first letter.
const OPENERS: &[char] = &[
    '«', '“', '„', '‹', '‘', '"', '\'', '(', '[', '{', '-', '–', '—', '―',
];

/// Byte ranges of the sentences of `text`, in order. Each range is trimmed of surrounding whitespace
/// (no range starts or ends with whitespace), ranges never overlap, and every non-whitespace
/// character of `text` lies in exactly one range. Whitespace-only text gives no ranges.
pub fn sentence_spans(text: &str) -> Vec<Range<usize>> {
    let scanner = Scanner::new(text);
    let mut cuts = scanner.boundaries();
    cuts.push(text.len());
    let mut start = 0;
    cuts.into_iter()
        .filter_map(|end| {
            let span = trim(text, start..end);
            start = end;
            span
        })
        .collect()
}

/// The sentences themselves: `sentence_spans` mapped to slices.
pub fn split_sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).into_iter().map(|r| &text[r]).collect()
}

/// `range` without its leading and trailing whitespace, or `None` if nothing is left.
fn trim(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let piece = &text[range.clone()];
    let start = range.start + (piece.len() - piece.trim_start().len());
    let end = range.start + piece.trim_end().len();
    (start < end).then_some(start..end)
}

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

/// How the next sentence would begin, judged from its first letter or digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// An uppercase or uncased letter: a new sentence.
    Upper,
    /// A digit: a new sentence, unless an abbreviation asks for a number.
    Digit,
    /// A lowercase letter, a symbol or nothing: the sentence goes on.
    Other,
}

struct Scanner<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    /// Char indices of the straight quotes `"` judged to close a quotation, in order.
    closing_quotes: Vec<usize>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let closing_quotes = closing_straight_quotes(&chars);
        Scanner {
            text,
            chars,
            closing_quotes,
        }
    }

    fn char_at(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c)| c)
    }

    fn byte_at(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.text.len(), |&(b, _)| b)
    }

    fn skip_whitespace(&self, mut i: usize) -> usize {
        while self.char_at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    }

    /// Byte offsets where a sentence ends, in order (the end of the text is not included).
    fn boundaries(&self) -> Vec<usize> {
        let mut cuts = Vec::new();
        let mut sentence_start = 0;
        let mut i = 0;
        while i < self.chars.len() {
            if !self.char_at(i).is_some_and(is_terminal) {
                i += 1;
                continue;
            }
            let end = self.mark_end(i);
            if self.ends_sentence(sentence_start, i, end) {
                cuts.push(self.byte_at(end));
                sentence_start = end;
            }
            i = end;
        }
        cuts
    }

    /// End (exclusive char index) of the terminal run starting at `i`, with the marks that
    /// belong to it: more terminal marks, `!` and `?` after a French space, closing quotes
    /// and brackets (guillemets and curly quotes even after a space).
    fn mark_end(&self, i: usize) -> usize {
        let mut end = i + 1;
        loop {
            let next = self.skip_whitespace(end);
            let spaced = next > end;
            match self.char_at(next) {
                Some('!' | '?') => end = next + 1,
                Some(c) if is_terminal(c) && !spaced => end = next + 1,
                Some(c) if self.closes(next, c, spaced) => end = next + 1,
                _ => return end,
            }
        }
    }

    /// Whether `c`, at char `i`, closes a quotation or bracket. Guillemets and curly quotes may
    /// follow a French space; a spaced straight quote is judged by `closing_straight_quotes`;
    /// brackets and apostrophe-like quotes must touch the mark before them.
    fn closes(&self, i: usize, c: char, spaced: bool) -> bool {
        match c {
            '»' | '”' | '›' => true,
            '"' => !spaced || self.closing_quotes.binary_search(&i).is_ok(),
            _ => !spaced && CLOSERS.contains(&c),
        }
    }

    /// Whether the terminal run `mark..end` ends the sentence that began at `sentence_start`.
    fn ends_sentence(&self, sentence_start: usize, mark: usize, end: usize) -> bool {
        if !self.char_at(end).is_some_and(char::is_whitespace) {
            return false;
        }
        let start = self.next_start(end);
        if start == Start::Other {
            return false;
        }
        let lone_period = end == mark + 1 && self.char_at(mark) == Some('.');
        !(lone_period && self.period_is_inner(sentence_start, mark, start))
    }

    /// How the text after char `i` begins, looking past whitespace, opening marks and dashes.
    fn next_start(&self, mut i: usize) -> Start {
        while let Some(c) = self.char_at(i) {
            if c.is_lowercase() {
                return Start::Other;
            } else if c.is_alphabetic() {
                return Start::Upper;
            } else if c.is_numeric() {
                return Start::Digit;
            } else if !c.is_whitespace() && !OPENERS.contains(&c) {
                return Start::Other;
            }
            i += 1;
        }
        Start::Other
    }

    /// Whether the period at char `mark` belongs to the token before it (abbreviation,
    /// initial, dotted acronym, list number) rather than ending the sentence.
    fn period_is_inner(&self, sentence_start: usize, mark: usize, next: Start) -> bool {
        let token_start = self.token_start(mark);
        let token = self.text[self.byte_at(token_start)..self.byte_at(mark)]
            .trim_start_matches(OPENERS)
            .trim_end_matches(CLOSERS);
        if token.is_empty() || MAY_END.contains(&token) {
            return false;
        }
        let word = token.rsplit(['\'', '’']).next().unwrap_or(token);
        let first_in_sentence = token_start == self.skip_whitespace(sentence_start);
        listed(NEVER_FINAL, word)
            || is_initial(word)
            || (next == Start::Digit && listed(BEFORE_NUMBER, word))
            || (first_in_sentence && is_list_label(word))
    }

    /// Char index where the whitespace-delimited token ending before char `i` begins.
    fn token_start(&self, mut i: usize) -> usize {
        while i > 0 && !self.chars[i - 1].1.is_whitespace() {
            i -= 1;
        }
        i
    }
}

/// Char indices of the straight quotes that close a quotation. A quote glued to the word
/// before it closes and one glued to the word after it opens; one with space on both sides
/// closes when a quotation is open, or when no opening quote could be its partner (the next
/// quote opens, or there is none).
fn closing_straight_quotes(chars: &[(usize, char)]) -> Vec<usize> {
    let quotes: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].1 == '"').collect();
    let flank = |i: usize| quote_flank(chars, i);
    quotes
        .iter()
        .enumerate()
        .filter(|&(k, &i)| match flank(i) {
            Flank::Closing => true,
            Flank::Opening => false,
            Flank::Either => {
                let open = k % 2 == 1;
                let partner_opens = quotes
                    .get(k + 1)
                    .is_some_and(|&j| flank(j) == Flank::Opening);
                open || partner_opens
            }
        })
        .map(|(_, &i)| i)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flank {
    Opening,
    Closing,
    Either,
}

/// Which way the straight quote at char `i` leans, from the characters around it.
fn quote_flank(chars: &[(usize, char)], i: usize) -> Flank {
    let open_before = i == 0 || chars[i - 1].1.is_whitespace() || "([{".contains(chars[i - 1].1);
    let open_after = chars
        .get(i + 1)
        .is_none_or(|&(_, c)| c.is_whitespace() || ",;:.!?)]}".contains(c));
    match (open_before, open_after) {
        (true, false) => Flank::Opening,
        (false, true) => Flank::Closing,
        _ => Flank::Either,
    }
}

/// Whether `word` is in `list`; lowercase entries also match a capitalised word ("Cf"), but
/// not an all-caps acronym ("CA" is a company's turnover, not "circa").
fn listed(list: &[&str], word: &str) -> bool {
    let mut chars = word.chars();
    let uncapitalised: String = chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    list.iter()
        .any(|&entry| entry == word || entry == uncapitalised)
}

/// A single uppercase letter, possibly the last of a dotted or hyphenated run: "J", "U.S.A",
/// "J.-P".
fn is_initial(word: &str) -> bool {
    let last = word.rsplit(['.', '-']).next().unwrap_or(word);
    let mut chars = last.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_uppercase())
}

/// A short item label such as "1" or "b" opening a list item ("1. Le contexte").
fn is_list_label(word: &str) -> bool {
    let short_number = word.len() <= 2 && word.chars().all(|c| c.is_ascii_digit());
    let letter = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
    short_number || letter
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Each case lists the expected sentences separated by " | "; the text under test joins
    /// them with a single space.
    fn assert_cases(cases: &[&str]) {
        for case in cases {
            let expected: Vec<&str> = case.split(" | ").collect();
            let text = expected.join(" ");
            assert_eq!(split_sentences(&text), expected, "in {text:?}");
        }
    }

    #[test]
    fn splits_plain_sentences() {
        assert_cases(&["Il pleut. | Le match est reporté ! | Qui l'eût cru ?"]);
    }

    #[test]
    fn keeps_abbreviations_before_what_they_qualify() {
        assert_cases(&[
            "M. Dupont et MM. Martin et Durand sont venus.",
            "Mme. Durand, Mlle. Petit et Mmes. Roux ont signé.",
            "Le Dr. House et le Pr. Martin consultent Me. Dupond.",
            "Il chante St. Anger à la Ste. Chapelle.",
            "Voir cf. Le Monde, p. 12, pp. 14-16, vol. 3 et n° 5. | Cf. Libération.",
            "Né en 52 av. J.-C. et mort en 14 apr. J.-C. selon les sources.",
            "Une ville d'env. 3 000 hab. située à 12 km. de Paris.",
            "Le 3 janv. Macron et le 5 févr. Scholz, puis le 1er déc. Biden.",
            "Le 11 sept. 2001 et le 3 oct. Sarkozy.",
            "Martin Luther King Jr. Day est férié, dit Dupont et Cie. Martin.",
            "Au XIXe s. Victor Hugo publie Les Misérables.",
        ]);
    }

    #[test]
    fn splits_after_words_that_only_look_like_abbreviations() {
        assert_cases(&[
            "Ils étaient sept. | Le lendemain, plus que deux.",
            "Rome est fondée en 753 av. J.-C. | La ville grandit.",
            "Ils aiment l'art. | Puis ils partent.",
            "Son CA. | Le bénéfice aussi.",
            "Des Cubains, etc. | C'est tout.",
        ]);
    }

    #[test]
    fn keeps_initials_and_dotted_acronyms() {
        assert_cases(&[
            "J. K. Rowling a écrit Harry Potter.",
            "George W. Bush a rencontré Jean-P. Sartre.",
            "Les U.S.A. Washington et l'O.N.U. New York ont réagi.",
            "Kim Jong-un est arrivé. | Il a salué la foule.",
        ]);
    }

    #[test]
    fn keeps_numbers_and_list_labels() {
        assert_cases(&[
            "Le taux passe de 3.5 % à 3,5 % puis 0.8647 le 1er mai.",
            "Elle est née en 1975. | 200 personnes sont venues.",
            "1. Le contexte politique. | 2. Les enjeux.",
        ]);
    }

    #[test]
    fn keeps_urls_and_emails() {
        assert_cases(&[
            "Lisez lemonde.fr ou écrivez à x@y.com pour en savoir plus.",
            "Voir http://www.ex.fr/a?b=1!c puis la suite.",
            "Écrivez à x@y.com. | Merci.",
        ]);
    }

    #[test]
    fn splits_ellipses_only_before_a_sentence_start() {
        assert_cases(&[
            "Il hésita... puis partit.",
            "Odeurs, saveurs, couleurs… tout se mélange.",
            "Il hésita... | Puis il partit.",
            "Il hésita… | « Non », dit-il.",
            "Très déçu... ! | Que dire ?",
        ]);
    }

    #[test]
    fn keeps_quoted_questions_inside_sentences() {
        assert_cases(&[
            "« Vraiment ? » dit-il.",
            "“Vraiment !” s'écria-t-elle.",
            "\"Vraiment ?\" demanda-t-il.",
        ]);
    }

    #[test]
    fn closing_quotes_belong_to_the_sentence_they_end() {
        assert_cases(&[
            "« Il part. » | Puis il revient.",
            "“Il part.” | Puis il revient.",
            "\"Il part.\" | Puis il revient.",
            "Il a dit : « Non ! » | Elle a ri.",
            "Il m'a demandé : « Ça va ? ». | Eglise Saint-Denis.",
            "Il a dit : \" Je pars. \" | Puis il est parti. | \"Le soir\" venait.",
            "Qu'il le dise. \" | \"C'est la panique\".",
        ]);
    }

    #[test]
    fn handles_brackets() {
        assert_cases(&[
            "Il est né en 1950 (à Paris). | Il est mort.",
            "(Il est parti.) | Puis il revient.",
            "Des Cubains, etc.) | C'est à Dakhla.",
            "Il (pourquoi ?) est venu.",
        ]);
    }

    #[test]
    fn handles_interrobangs_and_french_spacing() {
        assert_cases(&["Quoi ?! | Non !", "Quoi ?! non, rien.", "Quoi ? ! | Bon."]);
        let text = "Vraiment\u{202F}? Oui\u{00A0}! Bien\u{00A0}?\u{00A0}! Et\u{00A0}: oui.";
        let expected = [
            "Vraiment\u{202F}?",
            "Oui\u{00A0}!",
            "Bien\u{00A0}?\u{00A0}!",
            "Et\u{00A0}: oui.",
        ];
        assert_eq!(split_sentences(text), expected);
    }

    #[test]
    fn splits_dash_led_dialogue() {
        assert_cases(&[
            "— Tu viens ? | — Oui, j'arrive. | - Alors vite !",
            "— Vraiment ? — demanda-t-il.",
        ]);
    }

    #[test]
    fn needs_space_and_a_sentence_start_after_a_period() {
        assert_cases(&["Il est parti. et puis voilà.", "Il est parti.Puis rien."]);
    }

    #[test]
    fn treats_newlines_as_spaces_and_trims() {
        assert_eq!(
            split_sentences("Il part.\nPuis il revient."),
            ["Il part.", "Puis il revient."]
        );
        assert_eq!(
            split_sentences("Une phrase\nsur deux lignes."),
            ["Une phrase\nsur deux lignes."]
        );
        assert_eq!(sentence_spans("  Il part.  Oui.\t"), [2..10, 12..16]);
        assert!(sentence_spans(" \n\t\u{00A0}\u{202F} ").is_empty());
        assert!(sentence_spans("").is_empty());
    }

    /// Checks the contract of `sentence_spans` on `text`.
    fn check_contract(text: &str) -> Result<(), TestCaseError> {
        let spans = sentence_spans(text);
        let mut previous_end = 0;
        for span in &spans {
            prop_assert!(previous_end <= span.start && span.start < span.end);
            prop_assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
            let piece = &text[span.clone()];
            prop_assert_eq!(piece, piece.trim());
            previous_end = span.end;
        }
        let non_space = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let kept: String = spans.iter().map(|r| non_space(&text[r.clone()])).collect();
        prop_assert_eq!(kept, non_space(text));
        let slices: Vec<&str> = spans.iter().map(|r| &text[r.clone()]).collect();
        prop_assert_eq!(split_sentences(text), slices);
        Ok(())
    }

    /// Words, abbreviations, numbers, punctuation, quotes and spaces to build French-like text.
    const PIECES: &[&str] = &[
        "Le",
        "président",
        "a",
        "dit",
        "M.",
        "Mme",
        "J.",
        "U.S.A.",
        "J.-C.",
        "etc.",
        "p.",
        "sept.",
        "3,5",
        "3.5",
        "1.",
        "lemonde.fr",
        "x@y.com",
        "é",
        "Ça",
        "«",
        "»",
        "\"",
        "“",
        "”",
        "'",
        "’",
        "(",
        ")",
        "[",
        "]",
        "—",
        "-",
        ".",
        "..",
        "...",
        "…",
        "?",
        "!",
        "?!",
        ":",
        ";",
        ",",
        " ",
        " ",
        " ",
        "\u{00A0}",
        "\u{202F}",
        "\n",
        "\t",
    ];

    fn french_like() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..80).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_keeps_the_contract(text in any::<String>()) {
            check_contract(&text)?;
        }

        #[test]
        fn french_like_text_keeps_the_contract(text in french_like()) {
            check_contract(&text)?;
        }

        #[test]
        fn punctuation_soup_keeps_the_contract(text in "[aZ .!?…«»\"“”'()\\-\u{a0}\u{202f}\n]{0,60}") {
            check_contract(&text)?;
        }
    }
}
