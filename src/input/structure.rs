//! Article structure: turns cleaned lines into a title and typed blocks.
//!
//! The input files carry one paragraph per line, so every non-blank line becomes one block.
//! The only judgement calls are the title (the first line, when it reads like a headline) and
//! the block kind (list item or quotation, recognised by their leading marks). Typography is
//! normalised here so that the later stages never see non-breaking or zero-width characters.

use super::clean::Cleaned;
use super::{Article, Block, BlockKind};

/// A headline longer than this (in characters) is a paragraph, not a title.
const TITLE_MAX_CHARS: usize = 160;

/// Bullet characters that open a list item when followed by a space.
const BULLETS: &[char] = &['•', '◦', '▪', '‣', '-', '–', '—', '*'];

/// Opening and closing quotation marks of a line that is a quotation as a whole.
const QUOTE_PAIRS: &[(char, char)] = &[('«', '»'), ('“', '”'), ('"', '"')];

/// Punctuation that may follow the closing quotation mark of a quoted line.
const AFTER_QUOTE: &[char] = &['.', '!', '?', '…'];

/// Characters that carry no text and vanish: zero-width spaces and joiners, word joiner,
/// byte-order mark, soft hyphen.
const INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
];

/// Build the article from cleaned lines: title, blocks, and the removed lines carried through.
pub fn structure(cleaned: Cleaned) -> Article {
    let lines: Vec<String> = cleaned.lines.iter().map(|l| normalize_line(l)).collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let title = first
        .filter(|&i| is_title(&lines, i))
        .map(|i| lines[i].clone());
    let body_start = match (first, &title) {
        (Some(i), Some(_)) => i + 1,
        _ => 0,
    };
    Article {
        title,
        blocks: blocks(&lines[body_start..]),
        removed: cleaned.removed,
    }
}

/// Build the article from cleaned lines when the title is already known (an HTML page's
/// headline): every line is body.
pub fn structure_with_title(cleaned: Cleaned, title: Option<String>) -> Article {
    let lines: Vec<String> = cleaned.lines.iter().map(|l| normalize_line(l)).collect();
    Article {
        title: title.map(|t| normalize_line(&t)).filter(|t| !t.is_empty()),
        blocks: blocks(&lines),
        removed: cleaned.removed,
    }
}

/// One block per non-blank normalized line.
fn blocks(lines: &[String]) -> Vec<Block> {
    lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| block(l))
        .collect()
}

/// Normalize typography of one line: non-breaking and other Unicode spaces (U+00A0, U+202F,
/// U+2007, U+2009, tabs...) become a plain space, runs of spaces collapse to one, zero-width
/// characters and soft hyphens vanish, the line is trimmed. Apostrophes ’ and quotes are kept
/// as they are.
pub fn normalize_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars().filter(|c| !INVISIBLE.contains(c)) {
        if c.is_whitespace() {
            // Collapse runs; a leading space is never pushed, so the start is already trimmed.
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Whether the normalized line `i` (the first non-blank one) reads like a headline: short, one
/// sentence, not a list item or "> " quotation, and set apart from the body by a blank line or
/// by being at most half as long as the next line. A line with no body after it is never a
/// title: it is the whole text.
fn is_title(lines: &[String], i: usize) -> bool {
    let line = &lines[i];
    let Some(next) = lines[i + 1..].iter().find(|l| !l.is_empty()) else {
        return false;
    };
    let len = line.chars().count();
    let set_apart = lines[i + 1].is_empty() || len * 2 <= next.chars().count();
    len <= TITLE_MAX_CHARS
        && sentence_breaks(line) == 0
        && list_marker(line).is_none()
        && !line.starts_with("> ")
        && set_apart
}

/// Count sentence boundaries inside a line: terminal punctuation, a space, then a capital
/// letter or an opening quote. A single letter before the period is an initial ("M. Kim",
/// "J. Biden"), not the end of a sentence.
fn sentence_breaks(line: &str) -> usize {
    let chars: Vec<char> = line.chars().collect();
    (1..chars.len().saturating_sub(2))
        .filter(|&i| {
            let terminal = matches!(chars[i], '.' | '!' | '?' | '…');
            let opens = chars[i + 2].is_uppercase() || matches!(chars[i + 2], '«' | '“' | '"');
            let initial = chars[i] == '.'
                && chars[i - 1].is_alphabetic()
                && (i < 2 || !chars[i - 2].is_alphanumeric());
            terminal && chars[i + 1] == ' ' && opens && !initial
        })
        .count()
}

/// One block from a normalized, non-blank line.
fn block(line: &str) -> Block {
    if let Some(rest) = list_marker(line) {
        return Block {
            kind: BlockKind::ListItem,
            text: rest.to_string(),
        };
    }
    if let Some(rest) = line.strip_prefix("> ") {
        return Block {
            kind: BlockKind::Quote,
            text: rest.to_string(),
        };
    }
    let kind = if is_quoted(line) {
        BlockKind::Quote
    } else {
        BlockKind::Paragraph
    };
    Block {
        kind,
        text: line.to_string(),
    }
}

/// The text after a list marker ("• ", "- ", "1. ", "2) "...), if the line starts with one.
fn list_marker(line: &str) -> Option<&str> {
    let bullet = line
        .strip_prefix(BULLETS)
        .and_then(|rest| rest.strip_prefix(' '));
    bullet
        .or_else(|| numbered(line))
        .filter(|rest| !rest.is_empty())
}

/// The text after "1. " or "1) ": at most two digits, so that a year opening a sentence
/// ("2024. ...") is not taken for a list.
fn numbered(line: &str) -> Option<&str> {
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if !(1..=2).contains(&digits) {
        return None;
    }
    let rest = &line[digits..];
    rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") "))
}

/// Whether the whole line is one quotation: it opens with a quotation mark whose first
/// closing mark ends the line (trailing punctuation allowed). "« Oui », a-t-il dit, « non »"
/// closes early, so it is a paragraph that contains quotations, not a quotation.
fn is_quoted(line: &str) -> bool {
    QUOTE_PAIRS.iter().any(|&(open, close)| {
        let Some(inner) = line.strip_prefix(open) else {
            return false;
        };
        let body = inner.trim_end_matches(AFTER_QUOTE);
        match body.find(close) {
            Some(at) => at > 0 && at + close.len_utf8() == body.len(),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::clean::clean;
    use super::*;
    use proptest::prelude::*;

    fn article(text: &str) -> Article {
        let lines = text.lines().map(str::to_string).collect();
        structure(Cleaned {
            lines,
            removed: vec!["Spread the love".into()],
        })
    }

    fn kinds(article: &Article) -> Vec<BlockKind> {
        article.blocks.iter().map(|b| b.kind).collect()
    }

    #[test]
    fn normalize_line_fixes_typography() {
        let line = "\t Le\u{a0}«\u{202f}ferme soutien\u{202f}»\u{2009}de  \
                    Pyong\u{ad}yang\u{200b} \u{2007}! ";
        assert_eq!(normalize_line(line), "Le « ferme soutien » de Pyongyang !");
        assert_eq!(normalize_line("l’Ukraine, “neutre”"), "l’Ukraine, “neutre”");
        assert_eq!(normalize_line(" \u{feff}\u{a0} "), "");
    }

    #[test]
    fn headline_before_a_blank_line_is_the_title() {
        let a = article("\n  Kim Soutient Moscou\u{a0}Contre l’Ukraine \n\nKim Jong Un promet.");
        assert_eq!(
            a.title.as_deref(),
            Some("Kim Soutient Moscou Contre l’Ukraine")
        );
        assert_eq!(a.blocks.len(), 1);
        assert_eq!(a.removed, ["Spread the love"]);
    }

    #[test]
    fn short_line_before_a_much_longer_one_is_the_title() {
        let body = "Vladimir Poutine a salué le soutien indéfectible de la Corée du Nord.";
        let a = article(&format!("Poutine à Pyongyang\n{body}"));
        assert_eq!(a.title.as_deref(), Some("Poutine à Pyongyang"));
        let a = article(&format!(
            "Poutine est arrivé à Pyongyang mercredi soir.\n{body}"
        ));
        assert_eq!(a.title, None);
    }

    #[test]
    fn lead_paragraphs_and_lone_lines_are_not_titles() {
        let two_sentences = "Poutine est à Pyongyang. Kim l’accueille.\n\nTexte.";
        assert_eq!(article(two_sentences).title, None);
        let long = format!("{}\n\nTexte.", "Poutine salue le soutien ".repeat(7));
        assert_eq!(article(&long).title, None);
        assert_eq!(article("• Soutien militaire\n\nTexte.").title, None);
        assert_eq!(article("Seule ligne\n\n").title, None);
        assert_eq!(article("Seule ligne").blocks.len(), 1);
        let initials = article("M. Kim reçoit J. Poutine\n\nTexte.");
        assert_eq!(initials.title.as_deref(), Some("M. Kim reçoit J. Poutine"));
    }

    #[test]
    fn list_items_lose_their_marker() {
        let a = article(
            "\n  • Soutien militaire\n- Armes\n– Troupes\n* Vols\n1. Un\n12) Douze\n▪ Carré",
        );
        assert_eq!(kinds(&a), [BlockKind::ListItem; 7]);
        let texts: Vec<&str> = a.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Soutien militaire",
                "Armes",
                "Troupes",
                "Vols",
                "Un",
                "Douze",
                "Carré"
            ]
        );
    }

    #[test]
    fn lines_that_only_look_like_lists_are_paragraphs() {
        let a = article("\n-5 degrés à Pyongyang.\n2024. Une année charnière.\n*Note*\n-");
        assert_eq!(kinds(&a), [BlockKind::Paragraph; 4]);
    }

    #[test]
    fn whole_line_quotations_are_quotes() {
        let a = article(
            "\n« Nous soutenons la Russie. »\n“Des documents importants”.\n\"Oui\"\n\
             > Nous apprécions.",
        );
        assert_eq!(kinds(&a), [BlockKind::Quote; 4]);
        assert_eq!(a.blocks[0].text, "« Nous soutenons la Russie. »");
        assert_eq!(a.blocks[3].text, "Nous apprécions.");
    }

    #[test]
    fn lines_containing_quotations_are_paragraphs() {
        let a = article(
            "\n“Des documents importants” seront signés, évoquant “un accord global”.\n\
             Vers un “partenariat stratégique global” ?\n« Oui », a-t-il dit, « non »\n«»",
        );
        assert_eq!(kinds(&a), [BlockKind::Paragraph; 4]);
    }

    /// Lines with markers, quotes and odd whitespace.
    fn line() -> impl Strategy<Value = String> {
        concat!(
            "[ \u{a0}\u{202f}\t\u{200b}\u{ad}]{0,2}",
            "([-•*>«“\"]|[0-9]{1,3}[.)])?[ \u{a0}]?",
            "[A-Za-zé’«»“”\". !?\u{a0}]{0,40}",
        )
    }

    proptest! {
        #[test]
        fn structure_keeps_every_character(lines in prop::collection::vec(line(), 0..12)) {
            let normalized: Vec<String> =
                lines.iter().map(|l| normalize_line(l)).filter(|l| !l.is_empty()).collect();
            let a = structure(Cleaned { lines, removed: vec![] });
            let blocks = a.blocks.iter().map(|b| &b.text);
            let texts: Vec<&String> = a.title.iter().chain(blocks).collect();
            prop_assert_eq!(texts.len(), normalized.len());
            let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            for (line, text) in normalized.iter().zip(texts) {
                let (line, text) = (visible(line), visible(text));
                let marker = line.strip_suffix(text.as_str());
                // Only a list or quote marker may go: at most three characters, no letter.
                let is_marker =
                    |m: &str| m.chars().count() <= 3 && !m.contains(char::is_alphabetic);
                prop_assert!(marker.is_some_and(is_marker));
            }
        }

        #[test]
        fn normalize_line_is_idempotent_and_tidy(line in line()) {
            let once = normalize_line(&line);
            prop_assert_eq!(normalize_line(&once), once.clone());
            prop_assert!(!once.contains("  ") && once.trim() == once);
        }
    }

    /// What one sample must come out as.
    struct Golden {
        file: &'static str,
        title: Option<&'static str>,
        removed: &'static [&'static str],
        /// Paragraphs, list items, quotes.
        kinds: (usize, usize, usize),
        first: &'static str,
        last: &'static str,
    }

    const BIO: &str = "Passionné et dévoué, j'explore sans cesse les nouvelles frontières de \
        l'information et de la technologie. Pour explorer les options de sponsoring, \
        contactez-nous.";

    const GOLDEN: &[Golden] = &[
        Golden {
            file: "01-poutine-en-coree-du-nord.txt",
            title: None,
            removed: &[
                "Texte : Lamy Toussaint",
                "Email : toussaintlamy0709@gmail.com",
                "Profil de l'auteur",
                "Dernier articles publier",
                "- 14 novembre 2024SportLigue des champions féminine: Corventina et l’OL ont \
                brillé face à la Roma",
                "- 14 novembre 2024ÉphémérideUne Date , Une Histoire",
                "- 13 novembre 2024Éphéméride",
                "- 11 novembre 2024ÉphémérideUne Date , Une Histoire",
                "Tout cela ne peut finir que très mal. L occident dans son arrogance pense qu \
                en insistant plus et plus et plus il arrivera à ses fins qui sont l \
                avilisselent et l anéantissement de tous ceux qui refusent le statut de \
                vassaux",
                "L Histoire a montre que les choses ne se passent jamais ainsi",
            ],
            kinds: (6, 0, 0),
            first: "A cause d’une visite de Vladimir Poutine à Kim Jong-un en Corée du Nord, le \
            monde bipolaire s’ébranle. Pendant que la confiance et la réciprocité règnent \
            dans le bloc mené par Moscou, l’incertitude gagne du côté de l’Occident.",
            last:
                "Durant cette visite de deux jours, Moscou espère signer un accord de partenariat \
            stratégique avec la Corée du Nord. Un pays qui comme la Russie, éclipsé par des \
            sanctions occidentales.",
        },
        Golden {
            file: "02-visite-historique-a-pyongyang.txt",
            title: None,
            removed: &["Avec Hugo Decrypte et France 24"],
            kinds: (10, 0, 0),
            first:
                "La visite du président russe Vladimir Poutine en Corée du Nord, 24 ans après sa \
            dernière venue, est historique. Il rencontre le leader nord-coréen Kim Jong-un \
            pour une visite de 2 jours, essentielle pour les 2 pays et scrutée par la \
            communauté internationale, y compris la France.",
            last: "Selon les américains, la République Populaire de Chine est le principal \
            contributeur à la base industrielle de défense de la Russie . Elle lui fournit \
            des biens à double usage qui l’ont aidée à reconstruire la base industrielle de \
            défense que les sanctions et les contrôles à l’exportation avaient fortement \
            affaiblie.”",
        },
        Golden {
            file: "03-kim-soutient-moscou.txt",
            title: Some("Kim Soutient Moscou Contre l’Ukraine"),
            removed: &["InternationalPolitique", BIO],
            kinds: (25, 4, 0),
            first: "Kim Jong Un promet un soutien total à la Russie face à l’Ukraine lors d’une \
            rencontre clé avec Lavrov. Quelles sont les implications de cette alliance ?",
            last:
                "En s’affichant aux côtés de la Russie, la Corée du Nord envoie un message clair \
            : Ascendant de la page suivante. Cette alliance stratégique, soutenue par des \
            actions concrètes, pourrait redéfinir les équilibres géopolitiques, tant en \
            Europe qu’en Asie. Alors que le monde observe, une question demeure : quelles \
            seront les prochaines étapes de cette coopération inattendue ?",
        },
        Golden {
            file: "04-sommet-de-pyongyang.txt",
            title: Some("Poutine salue le soutien nord-coréen lors d’un sommet à Pyongyang"),
            removed: &["InternationalPolitique", BIO],
            kinds: (14, 0, 0),
            first:
                "Vladimir Poutine a salué le soutien indéfectible de la Corée du Nord lors d'un \
            sommet historique à Pyongyang. Le président russe a notamment mis en avant \
            l'appui nord-coréen sur le dossier ukrainien, dans un contexte de tensions \
            géopolitiques accrues...",
            last:
                "Si l’accord évoqué par Vladimir Poutine était signé, il pourrait ouvrir la voie \
            à un véritable “partenariat stratégique global” entre Moscou et Pyongyang. Une \
            perspective qui inquiète certains observateurs, dans un contexte international \
            déjà hautement inflammable. Reste à savoir si cette alliance se concrétisera et \
            comment elle pourrait peser sur les équilibres géopolitiques mondiaux.",
        },
        Golden {
            file: "05-ferme-soutien-de-pyongyang.txt",
            title: Some(
                "En Corée du Nord, Poutine salue le « ferme soutien » de Pyongyang en \
                Ukraine.",
            ),
            removed: &[
                "Spread the love",
                "Par\u{a0}: Arsène de Bangweni",
                "Laisser un commentaire",
                "Votre adresse e-mail ne sera pas publiée. Les champs obligatoires sont \
                indiqués avec *",
            ],
            kinds: (3, 0, 0),
            first:
                "Des drapeaux russes et des portraits de Vladimir Poutine sont visibles dans les \
            rues de Pyongyang. Le président devrait signer des documents importants lors de \
            sa visite les 18 et 19 juin. Il a exprimé sa gratitude pour le soutien de la \
            Corée du Nord dans sa lutte pour l’indépendance, le développement et \
            l’originalité. Poutine a également mentionné leur solidarité sur les questions \
            internationales clés et leurs priorités communes aux Nations Unies. Il a \
            souligné le soutien indéfectible de la Corée du Nord et sa résistance au désir \
            occidental d’un ordre mondial multipolaire.",
            last: "Le président russe est attendu en Corée du Nord avec ses plus hauts diplomates \
            pour signer des documents importants en vue d’un éventuel partenariat \
            stratégique mondial. Cette visite est importante car la dernière visite de \
            Vladimir Poutine en Corée du Nord remonte à 2000. L’actuel dirigeant \
            nord-coréen, Kim Jong-un, s’est rendu en Russie en septembre dernier et a invité \
            Poutine à visiter son pays en retour. Poutine a gracieusement accepté \
            l’invitation et ils s’apprêtent désormais à signer des accords importants lors \
            de leur visite.",
        },
    ];

    #[test]
    fn samples_match_their_golden_structure() {
        for golden in GOLDEN {
            let path = format!("{}/samples/{}", env!("CARGO_MANIFEST_DIR"), golden.file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let article = structure(clean(&text));
            let count = |kind| article.blocks.iter().filter(|b| b.kind == kind).count();
            let kinds = (
                count(BlockKind::Paragraph),
                count(BlockKind::ListItem),
                count(BlockKind::Quote),
            );
            let file = golden.file;
            assert_eq!(article.title.as_deref(), golden.title, "{file}");
            assert_eq!(article.removed, golden.removed, "{file}");
            assert_eq!(kinds, golden.kinds, "{file}");
            assert_eq!(article.blocks[0].text, golden.first, "{file}");
            assert_eq!(article.blocks.last().unwrap().text, golden.last, "{file}");
        }
    }
}
