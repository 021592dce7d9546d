//! Boilerplate removal: drops the site furniture around a news article, line by line.
//!
//! Three kinds of rules, all matched on a folded copy of the line (lower case, no accents,
//! plain spaces and apostrophes): whole-line labels and short labelled lines (bylines, credits,
//! share buttons, section labels), an author-bio/sponsoring line closing the article, and end
//! markers ("Laisser un commentaire", "Articles similaires"...) after which everything (related
//! articles, comment forms, reader comments) is dropped. The rules are conservative because a
//! lost sentence silently changes the summary while leftover furniture is merely noise: every
//! label must be the whole line or open a short line, names must look like names, and an end
//! marker only cuts once a substantial paragraph has been kept before it.

use super::structure::normalize_line;

/// Lines of the article after boilerplate removal, and the removed lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub lines: Vec<String>,
    pub removed: Vec<String>,
}

/// A byline, credit or date line is at most this long (characters).
const SHORT: usize = 80;
/// A "Lire aussi : <other headline>" or comment-form line is at most this long.
const LINK: usize = 200;
/// An author bio closing the article is at most this long.
const BIO: usize = 300;
/// A kept line this long is article text, which arms the end markers.
const SUBSTANTIAL: usize = 100;

/// How a rule's pattern (folded) must sit in the folded line.
#[derive(Clone, Copy)]
enum How {
    /// The whole line, trailing punctuation aside.
    Whole,
    /// Opens the line, ending at a word boundary.
    Opens,
    /// Opens the line and is followed by a colon ("Par : ...", "Source: ...").
    Colon,
    /// Opens the line, which also holds a digit (a date).
    Dated,
    /// Opens the line, and the rest of the line is a list of names ("Par Jean Dupont").
    Names,
    /// Anywhere in the line.
    Within,
}

/// Line rules: how the patterns (folded) match, the longest line (characters) they remove,
/// and the patterns.
#[rustfmt::skip]
const RULES: &[(How, usize, &[&str])] = &[
    // Share buttons and site furniture.
    (How::Whole, SHORT, &[
        "spread the love", "partager", "partagez", "partager cet article", "partagez cet article",
        "share", "tweet", "facebook", "twitter", "linkedin", "whatsapp", "imprimer", "publicite",
        "lire aussi",
    ]),
    (How::Opens, 40, &["partager sur", "partagez sur", "partager via", "share this", "share on"]),
    (How::Opens, SHORT, &["abonnez-vous", "abonnez vous"]),
    // Links to other articles: "Lire aussi : <headline>".
    (How::Colon, LINK, &[
        "lire aussi", "a lire aussi", "lire egalement", "voir aussi", "a voir aussi",
    ]),
    // Rights and photo credits.
    (How::Within, SHORT, &["tous droits reserves", "©"]),
    (How::Opens, SHORT, &["copyright", "credit photo", "credits photo"]),
    (How::Colon, SHORT, &["credit", "credits", "photo", "photos", "illustration"]),
    // Bylines, sources, contacts, dates.
    (How::Colon, SHORT, &[
        "par", "texte", "texte et photos", "texte et photo", "auteur", "redaction", "source",
        "sources", "email", "e-mail", "mail", "courriel",
    ]),
    (How::Names, SHORT, &["par", "avec", "source", "propos recueillis par"]),
    (How::Dated, SHORT, &["publie le", "mis a jour le", "modifie le"]),
    // The comment form, when it shows up without its heading.
    (How::Opens, LINK, &[
        "votre adresse e-mail ne sera pas publiee",
        "votre adresse de messagerie ne sera pas publiee",
    ]),
];

/// Lines (folded, plural "s" dropped from every word) after which the article is over.
#[rustfmt::skip]
const END_MARKERS: &[&str] = &[
    "profil de l'auteur", "a propo de l'auteur",
    "dernier article publie", "dernier article publier",
    "laisser un commentaire", "laissez un commentaire", "laisser une reponse", "laisser un avi",
    "ajouter un commentaire", "commentaire", "article similaire", "article lie", "a lire aussi",
    "sur le meme sujet", "dan la meme rubrique", "vou aimerez aussi", "leave a reply",
    "leave a comment", "related post",
];

/// Section names ("rubriques") that sites print, glued together, above the headline.
#[rustfmt::skip]
const RUBRIQUES: &[&str] = &[
    "international", "politique", "economie", "france", "monde", "europe", "afrique", "asie",
    "amerique", "ameriques", "societe", "sport", "sports", "football", "culture", "sante",
    "science", "sciences", "technologie", "tech", "environnement", "planete", "justice",
    "ephemeride", "actualite", "actualites", "actu", "opinion", "opinions", "idees", "debats",
    "education", "medias", "business", "finance", "diplomatie", "defense", "geopolitique",
    "insolite", "people", "regions", "local", "video", "videos", "analyse", "decryptage",
    "entretien", "interview", "reportage", "enquete", "chronique", "editorial", "edito",
];

/// Words that may sit between capitalised names in a byline ("Arsène de Bangweni").
const NAME_PARTICLES: &[&str] = &[
    "de", "du", "des", "d'", "da", "di", "van", "von", "der", "den", "ben", "bin", "el", "et", "&",
];

/// The phrase and the topic words that make a closing line an author bio or sponsor pitch.
const BIO_CONTACT: &[&str] = &["contactez-nous", "contactez nous", "nous contacter"];
const BIO_TOPIC: &[&str] = &[
    "sponsoring",
    "sponsor",
    "partenariat",
    "publicite",
    "annonceur",
];

/// Remove boilerplate lines. Blank lines are kept in `lines` (structure uses them as paragraph
/// breaks) but never reported in `removed`. `removed` holds each removed line verbatim
/// (trimmed), in input order.
pub fn clean(text: &str) -> Cleaned {
    let lines: Vec<&str> = text.lines().collect();
    let mut drop = line_rules(&lines);
    let end = end_of_article(&lines, &drop);
    drop[end..].iter_mut().for_each(|d| *d = true);
    // The bio closes the article: only the last line still kept is a candidate.
    if let Some(last) = (0..end).rev().find(|&i| !drop[i] && !is_blank(lines[i])) {
        drop[last] = is_bio(lines[last]);
    }
    split(&lines, &drop)
}

/// No removal at all (for --keep-boilerplate): every line kept.
pub fn keep_all(text: &str) -> Cleaned {
    Cleaned {
        lines: text.lines().map(str::to_string).collect(),
        removed: Vec::new(),
    }
}

/// Whether a line holds no text (spaces, non-breaking spaces, zero-width characters).
fn is_blank(line: &str) -> bool {
    normalize_line(line).is_empty()
}

/// Lower case, accents stripped, typographic apostrophes made plain, spaces normalized:
/// the form every pattern is written in.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in normalize_line(line).chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'â' | 'ä' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' => out.push('i'),
            'ô' | 'ö' => out.push('o'),
            'ù' | 'û' | 'ü' => out.push('u'),
            'ç' => out.push('c'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            '’' | 'ʼ' | '‘' => out.push('\''),
            _ => out.push(c),
        }
    }
    out
}

/// Per-line verdict of the label, byline and rubrique rules. A lone rubrique is only a label
/// before the first kept text line; later it may be a subheading.
fn line_rules(lines: &[&str]) -> Vec<bool> {
    let mut seen_text = false;
    lines
        .iter()
        .map(|line| {
            if is_blank(line) {
                return false;
            }
            let drop = match rubriques(line) {
                0 => is_label(line),
                1 => !seen_text,
                _ => true,
            };
            seen_text |= !drop;
            drop
        })
        .collect()
}

/// Whether a line is a label, byline, credit, date or e-mail line under `RULES`.
fn is_label(line: &str) -> bool {
    let normalized = normalize_line(line);
    // "(Avec AFP)" is the same credit as "Avec AFP".
    let core = normalized
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(&normalized);
    let folded = fold(core);
    let chars = core.chars().count();
    let words: Vec<&str> = core.split(' ').collect();
    is_email(&folded)
        || RULES.iter().any(|&(how, max, patterns)| {
            chars <= max && patterns.iter().any(|p| matches(p, how, &folded, &words))
        })
}

/// Whether `pattern` sits in the folded line as `how` requires; `words` are the line's
/// original words, whose capitals tell names apart.
fn matches(pattern: &str, how: How, folded: &str, words: &[&str]) -> bool {
    let rest = folded.strip_prefix(pattern);
    // "partager sur" must not match "partager surtout"; "e-mail" must not match "e-mailing".
    let opens = rest.is_some_and(|r| !r.starts_with(|c: char| c.is_alphanumeric() || c == '-'));
    match how {
        How::Within => folded.contains(pattern),
        How::Whole => rest.is_some_and(|r| trim_punctuation(r).is_empty()),
        How::Opens => opens,
        How::Colon => rest.is_some_and(|r| r.trim_start().starts_with(':')),
        How::Dated => opens && folded.contains(|c: char| c.is_ascii_digit()),
        How::Names => {
            let skip = pattern.split(' ').count();
            opens && words.len() > skip && is_names(&words[skip..])
        }
    }
}

/// Drop the punctuation and spaces that trail a label ("Partager :", "Commentaires.").
fn trim_punctuation(s: &str) -> &str {
    s.trim_end_matches(|c: char| c == ' ' || ":.!…-–—|>»".contains(c))
}

/// A line that is only an e-mail address.
fn is_email(folded: &str) -> bool {
    let address = folded.strip_prefix("mailto:").unwrap_or(folded);
    match address.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty() && domain.contains('.') && !address.contains([' ', '/'])
        }
        None => false,
    }
}

/// Whether words read as a list of names: capitalised words, numbers ("France 24") and name
/// particles, starting with a capital. "Par ailleurs, ..." fails on "ailleurs".
fn is_names(words: &[&str]) -> bool {
    let starts_upper = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
    let is_name = |word: &&str| {
        let w = word.trim_matches(|c: char| "(),.;".contains(c));
        let bare = w
            .strip_prefix("d'")
            .or_else(|| w.strip_prefix("d’"))
            .unwrap_or(w);
        starts_upper(bare)
            || (!w.is_empty() && w.chars().all(|c| c.is_ascii_digit()))
            || NAME_PARTICLES.contains(&fold(w).as_str())
    };
    words.len() <= 8 && words.first().is_some_and(|w| starts_upper(w)) && words.iter().all(is_name)
}

/// How many known rubriques make up a line glued in CamelCase ("InternationalPolitique" is 2,
/// "Sport" is 1); 0 when the line is anything else.
fn rubriques(line: &str) -> usize {
    let word = normalize_line(line);
    if word.is_empty() || word.contains(' ') {
        return 0;
    }
    let segments = camel_segments(&word);
    let known = segments
        .iter()
        .all(|s| RUBRIQUES.contains(&fold(s).as_str()));
    if known && segments.len() <= 3 {
        segments.len()
    } else {
        0
    }
}

/// Split "ÉconomieFrance" into ["Économie", "France"]; every segment starts with a capital.
fn camel_segments(word: &str) -> Vec<&str> {
    if !word.starts_with(char::is_uppercase) {
        return vec![];
    }
    let mut starts: Vec<usize> = word
        .char_indices()
        .filter(|&(_, c)| c.is_uppercase())
        .map(|(i, _)| i)
        .collect();
    starts.push(word.len());
    starts.windows(2).map(|w| &word[w[0]..w[1]]).collect()
}

/// Index of the first end marker that follows a substantial kept line, or the line count.
/// Before any real paragraph a marker is more likely a heading or a menu, so it cuts nothing.
fn end_of_article(lines: &[&str], drop: &[bool]) -> usize {
    let mut armed = false;
    for (i, line) in lines.iter().enumerate() {
        if armed && is_end_marker(line) {
            return i;
        }
        armed |= !drop[i] && normalize_line(line).chars().count() >= SUBSTANTIAL;
    }
    lines.len()
}

/// Whether the whole line is an end marker, ignoring plurals and counts ("3 commentaires").
fn is_end_marker(line: &str) -> bool {
    let folded = fold(line);
    let words: Vec<&str> = trim_punctuation(&folded)
        .split(' ')
        .filter(|w| w.contains(char::is_alphabetic))
        .map(|w| w.strip_suffix('s').unwrap_or(w))
        .collect();
    END_MARKERS.contains(&words.join(" ").as_str())
}

/// An author bio or sponsoring pitch: a short line that asks to be contacted about
/// sponsoring, partnerships or advertising.
fn is_bio(line: &str) -> bool {
    let folded = fold(line);
    folded.chars().count() <= BIO
        && BIO_CONTACT.iter().any(|p| folded.contains(p))
        && BIO_TOPIC.iter().any(|p| folded.contains(p))
}

/// Sort lines into kept and removed; blank lines are always kept and never reported.
fn split(lines: &[&str], drop: &[bool]) -> Cleaned {
    let mut cleaned = Cleaned {
        lines: Vec::new(),
        removed: Vec::new(),
    };
    for (line, &drop) in lines.iter().zip(drop) {
        if drop && !is_blank(line) {
            cleaned.removed.push(line.trim().to_string());
        } else {
            cleaned.lines.push(line.to_string());
        }
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PARAGRAPH: &str = "Vladimir Poutine a salué le soutien indéfectible de la Corée du Nord \
        lors d'un sommet historique à Pyongyang, selon les médias officiels.";

    /// Clean one line placed after a real paragraph; true when it was removed.
    fn removed(line: &str) -> bool {
        let cleaned = clean(&format!("{PARAGRAPH}\n{line}\n{PARAGRAPH}"));
        cleaned.removed == [line.trim()]
    }

    #[test]
    fn labels_are_removed() {
        for line in [
            "Spread the love",
            "Partager",
            "Partager :",
            "PARTAGER SUR FACEBOOK",
            "Partager sur X",
            "Partagez cet article",
            "Share",
            "Lire aussi : Kim Jong Un promet un soutien total à la Russie",
            "À lire aussi : la visite de Lavrov à Wonsan",
            "Publicité",
            "Abonnez-vous",
            "Abonnez-vous à notre newsletter",
            "© AFP 2024",
            "Le Monde 2024. Tous droits réservés.",
            "Crédit photo : Reuters",
            "Photo : KCNA via AFP",
        ] {
            assert!(removed(line), "{line}");
        }
    }

    #[test]
    fn sentences_mentioning_labels_are_kept() {
        for line in [
            "Les deux pays partagent des intérêts communs face aux sanctions.",
            "Partager le fardeau des sanctions reste l'objectif affiché de Moscou.",
            "Partager sur les réseaux sociaux des images du sommet était interdit à la presse.",
            "Les commentaires de Washington ne se sont pas fait attendre.",
            "La publicité faite autour du sommet a surpris les observateurs.",
            "Photographie du sommet",
        ] {
            assert!(!removed(line), "{line}");
        }
    }

    #[test]
    fn glued_rubriques_are_removed_anywhere() {
        for line in ["InternationalPolitique", "SportFootball", "ÉconomieFrance"] {
            assert!(removed(line), "{line}");
        }
    }

    #[test]
    fn lone_rubrique_is_removed_only_before_the_text() {
        let cleaned = clean(&format!(
            "International\n\nTitre\n{PARAGRAPH}\nPolitique\n{PARAGRAPH}"
        ));
        assert_eq!(cleaned.removed, ["International"]);
        assert!(!removed("Kim Soutient"));
        assert!(!removed("InternationalPolitiqueSportFrance"));
    }

    #[test]
    fn bylines_and_credits_are_removed() {
        for line in [
            "Par : Lamy Toussaint",
            "Par\u{a0}: Arsène de Bangweni",
            "Par Jean-Pierre Dupont",
            "Texte : Lamy Toussaint",
            "Texte et photos : Marie d’Ornano",
            "Avec AFP",
            "(Avec AFP)",
            "Avec Hugo Decrypte et France 24",
            "Source : Reuters",
            "Email : toussaintlamy0709@gmail.com",
            "E-mail: redaction@example.fr",
            "redaction@example.fr",
            "Publié le 19 juin 2024 à 10h32",
            "Mis à jour le 20/06/2024",
        ] {
            assert!(removed(line), "{line}");
        }
    }

    #[test]
    fn byline_like_sentences_are_kept() {
        for line in [
            "Par ailleurs, la Russie a signé un accord avec Pyongyang.",
            "Avec le soutien de la Chine, Pyongyang résiste aux sanctions.",
            "Par Moscou, qui fournit du pétrole, la Corée tient bon.",
            "Publié le rapport, Moscou a réagi.",
            "Texte : le traité signé mercredi engage les deux pays à s'entraider en cas de guerre.",
            "Vladimir Poutine",
        ] {
            assert!(!removed(line), "{line}");
        }
    }

    #[test]
    fn end_marker_drops_the_rest() {
        let text = format!(
            "{PARAGRAPH}\nDerniers articles publiés :\n- 14 novembre 2024SportLigue\n\nBravo !"
        );
        let cleaned = clean(&text);
        assert_eq!(cleaned.lines, [PARAGRAPH, ""]);
        assert_eq!(
            cleaned.removed,
            [
                "Derniers articles publiés :",
                "- 14 novembre 2024SportLigue",
                "Bravo !"
            ]
        );
        for marker in [
            "Laisser une réponse",
            "3 commentaires",
            "Commentaires",
            "Articles similaires",
            "À lire aussi",
        ] {
            let cleaned = clean(&format!("{PARAGRAPH}\n{marker}\nUn commentaire."));
            assert_eq!(cleaned.removed, [marker, "Un commentaire."], "{marker}");
        }
    }

    #[test]
    fn end_marker_at_the_top_cuts_nothing() {
        let text = format!("Commentaires\nCourt.\n{PARAGRAPH}\nLaisser un commentaire\nVotre nom");
        let cleaned = clean(&text);
        assert_eq!(cleaned.lines, ["Commentaires", "Court.", PARAGRAPH]);
        assert_eq!(cleaned.removed, ["Laisser un commentaire", "Votre nom"]);
    }

    #[test]
    fn closing_bio_is_removed_but_not_in_the_middle() {
        let bio = "Passionné et dévoué, j'explore l'information. Pour explorer les options de \
            sponsoring, contactez-nous.";
        assert_eq!(clean(&format!("{PARAGRAPH}\n\n{bio}\n")).removed, [bio]);
        assert!(clean(&format!("{bio}\n{PARAGRAPH}")).removed.is_empty());
    }

    #[test]
    fn blank_lines_are_kept_and_crlf_is_stripped() {
        let cleaned = clean("Spread the love\r\n\u{a0}\r\n\r\nTexte\r\n");
        assert_eq!(cleaned.lines, ["\u{a0}", "", "Texte"]);
        assert_eq!(cleaned.removed, ["Spread the love"]);
    }

    #[test]
    fn keep_all_keeps_everything() {
        let cleaned = keep_all("Spread the love\n\nLaisser un commentaire");
        assert_eq!(
            cleaned.lines,
            ["Spread the love", "", "Laisser un commentaire"]
        );
        assert!(cleaned.removed.is_empty());
    }

    /// Whether `whole` is `a` and `b` interleaved, each in order.
    fn interleaves(a: &[String], b: &[String], whole: &[String]) -> bool {
        if a.len() + b.len() != whole.len() {
            return false;
        }
        // ok[j] after row i: whole[..i + j] interleaves a[..i] and b[..j].
        let mut ok: Vec<bool> = (0..=b.len()).map(|j| b[..j] == whole[..j]).collect();
        for i in 1..=a.len() {
            ok[0] = ok[0] && a[i - 1] == whole[i - 1];
            for j in 1..=b.len() {
                let w = &whole[i + j - 1];
                ok[j] = (ok[j] && a[i - 1] == *w) || (ok[j - 1] && b[j - 1] == *w);
            }
        }
        ok[b.len()]
    }

    #[test]
    fn interleaves_rejects_loss_duplication_and_reordering() {
        let v = |s: &str| -> Vec<String> { s.split(' ').map(str::to_string).collect() };
        assert!(interleaves(&v("a c"), &v("b b"), &v("a b c b")));
        assert!(!interleaves(&v("a c"), &v("b"), &v("a b c b")));
        assert!(!interleaves(&v("a c"), &v("b b"), &v("a b b b c")));
        assert!(!interleaves(&v("c a"), &v("b"), &v("a b c")));
    }

    /// Lines mixing article text, boilerplate, markers and odd whitespace.
    fn article_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(" \u{a0}\t".to_string()),
            Just(PARAGRAPH.to_string()),
            Just("Spread the love".to_string()),
            Just("InternationalPolitique".to_string()),
            Just("International".to_string()),
            Just("Par : Lamy Toussaint".to_string()),
            Just("Laisser un commentaire".to_string()),
            Just("Pour le sponsoring, contactez-nous.".to_string()),
            Just("  • Soutien militaire : armes".to_string()),
            Just("« Nous soutenons la Russie. »".to_string()),
            "[ A-Za-zÀ-ÿ’'«».,:;!?@•*0-9\u{a0}\u{202f}\u{200b}-]{0,60}",
        ]
    }

    proptest! {
        #[test]
        fn cleaning_only_sorts_lines(lines in prop::collection::vec(article_line(), 0..24),
                                     crlf in any::<bool>()) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            let cleaned = clean(&text);
            let input: Vec<String> = text.lines().map(str::to_string).collect();
            let mut rest = input.iter();
            prop_assert!(cleaned.lines.iter().all(|l| rest.any(|i| i == l)));
            let non_blank = |ls: &[String]| -> Vec<String> {
                ls.iter().filter(|l| !is_blank(l)).map(|l| l.trim().to_string()).collect()
            };
            let input = non_blank(&input);
            let kept = non_blank(&cleaned.lines);
            prop_assert!(cleaned.removed.iter().all(|l| !is_blank(l)));
            prop_assert!(interleaves(&kept, &cleaned.removed, &input));
        }
    }
}
