//! HTML article extraction: a saved web page → the headline and the article's own text, one
//! block per line, ready for the line cleaner and the structure stage.
//!
//! The page is parsed with a real HTML parser (html5ever through `scraper`), so broken markup,
//! entities and scripts are handled as a browser would. The article is looked for in
//! `<article>` (the one with the most paragraph text, since teasers of related articles are
//! often `<article>`s too), then `<main>`, then the body. Inside it, paragraphs, list items,
//! quotations and subheadings become lines; page furniture (navigation, site header and
//! footer, asides, forms, share widgets, comment sections, related links) is dropped and
//! listed as removed, while code and media (scripts, styles, images) are dropped silently.
//! Markup-level removal does not depend on `--keep-boilerplate`, which only turns off the
//! line cleaner that runs afterwards.

use scraper::{ElementRef, Html, Selector};

use super::structure::normalize_line;

/// What a page yields: its headline, the article's lines (list items as `- …`, quotations as
/// `> …`, the marks the structure stage reads), and the furniture that was dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlArticle {
    pub title: Option<String>,
    pub lines: Vec<String>,
    pub removed: Vec<String>,
}

/// Loose text (text directly in a `<div>`, between `<br>`s) shorter than this is a label or a
/// link, not a paragraph.
const LOOSE_MIN_CHARS: usize = 40;
/// Removed furniture is listed up to this many characters.
const REMOVED_MAX_CHARS: usize = 200;

/// Elements dropped without a trace: code, media, metadata.
const SILENT: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "canvas", "img", "picture", "video", "audio",
    "source", "iframe", "object", "embed", "link", "meta", "head", "input", "math",
];
/// Elements that are page furniture by their very tag.
const FURNITURE_TAGS: &[&str] = &[
    "nav",
    "footer",
    "aside",
    "form",
    "button",
    "select",
    "dialog",
    "figcaption",
    "menu",
];
/// Class, id, role or aria-label words that mark furniture.
const FURNITURE_WORDS: &[&str] = &[
    "share",
    "sharing",
    "social",
    "comment",
    "related",
    "newsletter",
    "subscribe",
    "cookie",
    "advert",
    "promo",
    "breadcrumb",
    "sidebar",
    "navbar",
    "navigation",
    "menu",
    "banner",
    "complementary",
    "popup",
    "modal",
    "paywall",
];

/// Extract the article from an HTML page.
pub fn extract(html: &str) -> HtmlArticle {
    let page = Html::parse_document(html);
    let root = article_root(&page);
    let title = title(&page, root);
    let mut walk = Walk {
        title: title.clone(),
        ..Walk::default()
    };
    walk.element(root);
    walk.flush();
    HtmlArticle {
        title,
        lines: walk.lines,
        removed: walk.removed,
    }
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).expect("static selectors parse")
}

/// The element that holds the article: the `<article>` with the most paragraph text, else
/// `<main>`, else the body.
fn article_root(page: &Html) -> ElementRef<'_> {
    let paragraphs = selector("p");
    let text_len = |e: &ElementRef| -> usize {
        e.select(&paragraphs)
            .map(|p| p.text().map(str::len).sum::<usize>())
            .sum()
    };
    let best_article = page
        .select(&selector("article, [itemprop=articleBody]"))
        .map(|e| (text_len(&e), e))
        .filter(|(len, _)| *len > 0)
        .max_by_key(|(len, _)| *len)
        .map(|(_, e)| e);
    best_article
        .or_else(|| page.select(&selector("main, [role=main]")).next())
        .or_else(|| page.select(&selector("body")).next())
        .unwrap_or_else(|| page.root_element())
}

/// The headline: the article's `<h1>`, else the page's, else `og:title`, else `<title>`.
fn title(page: &Html, root: ElementRef) -> Option<String> {
    let h1 = selector("h1");
    let from_h1 = |e: ElementRef| {
        e.select(&h1)
            .filter(|h| !inside_furniture(*h, e))
            .map(text_of)
            .find(|t| !t.is_empty())
    };
    from_h1(root)
        .or_else(|| from_h1(page.root_element()))
        .or_else(|| {
            page.select(&selector("meta[property='og:title']"))
                .filter_map(|m| m.value().attr("content"))
                .map(normalize_line)
                .find(|t| !t.is_empty())
        })
        .or_else(|| {
            page.select(&selector("title"))
                .map(text_of)
                .find(|t| !t.is_empty())
        })
}

/// Whether an element sits in furniture between itself and `top`.
fn inside_furniture(element: ElementRef, top: ElementRef) -> bool {
    element
        .ancestors()
        .take_while(|a| a.id() != top.id())
        .filter_map(ElementRef::wrap)
        .any(|a| matches!(classify(a), Role::Furniture | Role::Silent))
}

/// The normalized text of an element, all descendants included.
fn text_of(element: ElementRef) -> String {
    let mut text = String::new();
    for piece in element.text() {
        text.push_str(piece);
        // Adjacent text nodes of separate elements (`<li>a</li><li>b</li>`) must not glue.
        text.push(' ');
    }
    normalize_line(&text)
}

/// What an element is to the extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Silent,
    Furniture,
    /// A paragraph-like block; the string is the line prefix the structure stage reads.
    Block(&'static str),
    /// `<br>`: ends the loose text before it.
    Break,
    /// Anything else: walked into.
    Container,
}

fn classify(element: ElementRef) -> Role {
    let tag = element.value().name();
    if SILENT.contains(&tag) {
        return Role::Silent;
    }
    let site_header = tag == "header" && element.select(&selector("h1")).next().is_none();
    if FURNITURE_TAGS.contains(&tag) || site_header || has_furniture_marks(element) {
        return Role::Furniture;
    }
    match tag {
        "p" | "pre" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "dt" | "dd" => Role::Block(""),
        "li" => Role::Block("- "),
        "blockquote" => Role::Block("> "),
        "br" | "hr" => Role::Break,
        _ => Role::Container,
    }
}

/// Class names, id, role and aria-label that say "share widget", "comments", "menu"...
fn has_furniture_marks(element: ElementRef) -> bool {
    let value = element.value();
    let marks = value
        .classes()
        .chain(value.id())
        .chain(value.attr("role"))
        .chain(value.attr("aria-label"));
    marks
        .map(str::to_ascii_lowercase)
        .any(|mark| FURNITURE_WORDS.iter().any(|w| mark.contains(w)))
}

/// The walk over the article root, in document order.
#[derive(Default)]
struct Walk {
    /// The headline until its `<h1>` comes by (then `None`).
    title: Option<String>,
    lines: Vec<String>,
    removed: Vec<String>,
    /// Text directly inside containers, waiting for the next block boundary.
    loose: String,
}

impl Walk {
    fn element(&mut self, element: ElementRef) {
        for child in element.children() {
            if let Some(text) = child.value().as_text() {
                self.loose.push_str(text);
                continue;
            }
            let Some(child) = ElementRef::wrap(child) else {
                continue;
            };
            match classify(child) {
                Role::Silent => {}
                Role::Furniture => self.furniture(child),
                Role::Block(prefix) => self.block(child, prefix),
                Role::Break => self.flush(),
                Role::Container if is_inline(child) => {
                    self.loose.extend(child.text());
                }
                Role::Container => {
                    self.flush();
                    self.element(child);
                    self.flush();
                }
            }
        }
    }

    fn block(&mut self, element: ElementRef, prefix: &str) {
        self.flush();
        let text = text_of(element);
        if text.is_empty() {
            return;
        }
        // The headline is the title, not a body line; only its first `<h1>` is skipped.
        if element.value().name() == "h1" && self.title.as_deref() == Some(text.as_str()) {
            self.title = None;
            return;
        }
        self.lines.push(format!("{prefix}{text}"));
    }

    fn furniture(&mut self, element: ElementRef) {
        self.flush();
        let text = text_of(element);
        if !text.is_empty() {
            self.removed.push(truncate(&text, REMOVED_MAX_CHARS));
        }
    }

    /// Turn accumulated loose text into a line when it is long enough to be prose.
    fn flush(&mut self) {
        let text = normalize_line(&self.loose);
        self.loose.clear();
        if text.chars().count() >= LOOSE_MIN_CHARS {
            self.lines.push(text);
        }
    }
}

/// Phrasing elements whose text flows with the text around them.
fn is_inline(element: ElementRef) -> bool {
    matches!(
        element.value().name(),
        "a" | "span"
            | "em"
            | "strong"
            | "b"
            | "i"
            | "u"
            | "small"
            | "mark"
            | "abbr"
            | "cite"
            | "q"
            | "sub"
            | "sup"
            | "time"
            | "code"
    )
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html>
<html><head>
  <title>Poutine à Pyongyang | Le Journal</title>
  <meta property="og:title" content="Poutine à Pyongyang">
  <style>p { color: red }</style>
  <script>var tracking = "ne pas lire";</script>
</head><body>
  <header class="site"><a href="/">Le Journal</a><nav><a>Accueil</a> <a>Monde</a></nav></header>
  <nav class="breadcrumb"><a>Monde</a> › <a>Asie</a></nav>
  <main>
    <article>
      <header>
        <h1>Poutine en visite à Pyongyang</h1>
        <p class="chapo">Le président russe est arrivé mercredi en Corée du Nord.</p>
      </header>
      <div class="share-buttons"><a>Partager sur Facebook</a><a>Tweeter</a></div>
      <p>La visite du président russe, <em>24 ans après</em> sa dernière venue, est historique.</p>
      <figure><img src="a.jpg"><figcaption>Kim Jong-un et Vladimir Poutine.</figcaption></figure>
      <h2>Un accord stratégique</h2>
      <p>Moscou espère signer un accord de partenariat&nbsp;stratégique.</p>
      <ul><li>Fourniture d’armes</li><li>Aide alimentaire</li></ul>
      <blockquote><p>« Nous soutenons la Russie », a déclaré Kim.</p></blockquote>
      <div>Un paragraphe écrit directement dans une div, sans balise p autour.<br>Court.</div>
      <section id="comments"><h3>3 commentaires</h3><p>Super article !</p></section>
      <form><label>Votre e-mail</label><button>S’abonner</button></form>
    </article>
    <aside><article><h2>À lire aussi</h2><p>Un autre sujet.</p></article></aside>
  </main>
  <footer>© Le Journal 2024</footer>
</body></html>"#;

    #[test]
    fn article_text_is_kept_in_order_with_marks() {
        let a = extract(PAGE);
        assert_eq!(a.title.as_deref(), Some("Poutine en visite à Pyongyang"));
        assert_eq!(
            a.lines,
            [
                "Le président russe est arrivé mercredi en Corée du Nord.",
                "La visite du président russe, 24 ans après sa dernière venue, est historique.",
                "Un accord stratégique",
                "Moscou espère signer un accord de partenariat stratégique.",
                "- Fourniture d’armes",
                "- Aide alimentaire",
                "> « Nous soutenons la Russie », a déclaré Kim.",
                "Un paragraphe écrit directement dans une div, sans balise p autour.",
            ]
        );
    }

    #[test]
    fn furniture_is_dropped_and_listed_code_silently() {
        let a = extract(PAGE);
        for furniture in [
            "Partager sur Facebook Tweeter",
            "Kim Jong-un et Vladimir Poutine.",
            "3 commentaires Super article !",
            "Votre e-mail S’abonner",
        ] {
            assert!(a.removed.iter().any(|r| r == furniture), "{:?}", a.removed);
        }
        let everything = format!("{:?}", a);
        for gone in [
            "tracking",
            "color: red",
            "Accueil",
            "© Le Journal",
            "Un autre sujet",
        ] {
            assert!(!everything.contains(gone), "{gone} in {everything}");
        }
    }

    #[test]
    fn title_falls_back_to_og_title_then_title() {
        let og =
            "<html><head><title>T | Site</title><meta property='og:title' content='OG'></head>\
                  <body><p>Texte.</p></body></html>";
        assert_eq!(extract(og).title.as_deref(), Some("OG"));
        let plain = "<html><head><title> Le titre </title></head><body><p>x</p></body></html>";
        assert_eq!(extract(plain).title.as_deref(), Some("Le titre"));
        assert_eq!(extract("<p>Seulement du texte.</p>").title, None);
    }

    #[test]
    fn the_article_with_most_text_wins_over_teasers() {
        let page = "<body><article><p>Teaser.</p></article>\
                    <article><h1>Vrai titre</h1><p>Le vrai article, bien plus long que le teaser.</p></article></body>";
        let a = extract(page);
        assert_eq!(a.title.as_deref(), Some("Vrai titre"));
        assert_eq!(a.lines, ["Le vrai article, bien plus long que le teaser."]);
    }

    #[test]
    fn no_article_element_reads_the_body_without_site_header() {
        let page = "<body><header><a>Logo</a> Le Journal du soir, édition nationale</header>\
                    <p>Premier paragraphe.</p><p>Second paragraphe.</p></body>";
        let a = extract(page);
        assert_eq!(a.lines, ["Premier paragraphe.", "Second paragraphe."]);
        assert_eq!(a.removed, ["Logo Le Journal du soir, édition nationale"]);
    }
}
