//! Narrative safety (FHIR invariants txt-1, txt-2): `text.div` is well-formed XHTML, one `div`
//! in the XHTML namespace, holding only basic formatting elements and attributes, never
//! scripts, forms, frames, event handlers or links to active schemes. Clients display
//! narratives; a stored script would run in every viewer of the record.
//!
//! The check reads the markup with a real XML tokenizer (quick-xml) rather than scanning for
//! tags: a `>` inside a quoted attribute value, entity-encoded or whitespace-split schemes
//! (`&#106;avascript:`, `java&#x0A;script:`) and prefixed or namespaced elements are all seen
//! as a browser would see them. Attribute values are judged after entity decoding.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The XHTML namespace, required on the root `div`.
const XHTML: &str = "http://www.w3.org/1999/xhtml";

/// URL schemes a narrative link or image may use (relative URLs and fragments need none).
const SCHEMES: &[&str] = &["http", "https", "mailto", "tel"];

/// Image types an `img src` may embed as a `data:` URL (no SVG: it can hold script).
const DATA_IMAGES: &[&str] = &[
    "data:image/png",
    "data:image/gif",
    "data:image/jpeg",
    "data:image/webp",
];
/// Elements allowed by txt-1 (HTML 4.0 basic formatting, links, images, tables).
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "b",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
];

/// Attributes allowed on those elements.
const ATTRIBUTES: &[&str] = &[
    "abbr",
    "align",
    "alt",
    "axis",
    "border",
    "cellpadding",
    "cellspacing",
    "char",
    "charoff",
    "class",
    "colspan",
    "dir",
    "headers",
    "height",
    "href",
    "id",
    "lang",
    "name",
    "rowspan",
    "rules",
    "scope",
    "span",
    "src",
    "start",
    "style",
    "summary",
    "title",
    "type",
    "valign",
    "value",
    "width",
    "xml:lang",
    "xmlns",
];

/// The first reason `div` breaks txt-1 or txt-2, if any.
pub fn problem(div: &str) -> Option<String> {
    let mut reader = Reader::from_str(div);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => return Some(format!("the narrative is not well-formed XHTML: {e}")),
        };
        match event {
            Event::Start(element) | Event::Empty(element) if depth == 0 && roots > 0 => {
                let name = String::from_utf8_lossy(element.name().as_ref()).into_owned();
                return Some(format!(
                    "the narrative must be a single <div>, found <{name}> after it"
                ));
            }
            Event::Start(ref element) | Event::Empty(ref element) => {
                if let Some(problem) = check_element(element, depth == 0) {
                    return Some(problem);
                }
                if depth == 0 {
                    roots += 1;
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(text) => {
                if depth == 0 && !text.iter().all(u8::is_ascii_whitespace) {
                    return Some("the narrative must be a single <div> and nothing else".into());
                }
            }
            Event::GeneralRef(reference) => {
                if depth == 0 {
                    return Some("the narrative must be a single <div> and nothing else".into());
                }
                let name: &[u8] = &reference;
                let known = matches!(name, b"lt" | b"gt" | b"amp" | b"apos" | b"quot");
                if !known && !matches!(reference.resolve_char_ref(), Ok(Some(_))) {
                    let name = String::from_utf8_lossy(name).into_owned();
                    return Some(format!(
                        "entity &{name}; is not defined in XML (use a character reference)"
                    ));
                }
            }
            Event::CData(_) | Event::Comment(_) if depth == 0 => {
                return Some("the narrative must be a single <div> and nothing else".into());
            }
            Event::CData(section) => {
                // An HTML parser (innerHTML) reads `<![CDATA[` as a bogus comment that ends at
                // the first `>`: whatever follows it inside the section would become markup.
                if section.contains(&b'>') {
                    return Some("a CDATA section in a narrative cannot contain '>'".into());
                }
            }
            Event::Comment(comment) => {
                // HTML closes `<!-->` and `<!--->` at once, turning the rest of the comment
                // into markup; XML reads them as comments holding that markup.
                if comment.starts_with(b">") || comment.starts_with(b"->") {
                    return Some("a narrative comment cannot start with '>' or '->'".into());
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                return Some(
                    "declarations, DTDs and processing instructions are not allowed in a narrative"
                        .into(),
                )
            }
            Event::Eof => break,
        }
    }
    if depth != 0 || roots != 1 {
        return Some("the narrative must be a single, closed <div> element".into());
    }
    None
}

/// An element's name and attributes; `root` for the outer `div`.
fn check_element(element: &BytesStart<'_>, root: bool) -> Option<String> {
    let name = String::from_utf8_lossy(element.name().as_ref()).into_owned();
    if root && name != "div" {
        return Some(format!("the narrative must be a <div>, found <{name}>"));
    }
    if !ELEMENTS.contains(&name.as_str()) {
        return Some(format!("element <{name}> is not allowed in a narrative"));
    }
    let mut namespace = None;
    for attribute in element.attributes() {
        let attribute = match attribute {
            Ok(attribute) => attribute,
            Err(e) => return Some(format!("<{name}> has a malformed attribute: {e}")),
        };
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        if !ATTRIBUTES.contains(&key.as_str()) {
            return Some(format!(
                "attribute {key} is not allowed in a narrative (on <{name}>)"
            ));
        }
        let value = match attribute.unescape_value() {
            Ok(value) => value,
            Err(e) => return Some(format!("<{name} {key}> has an invalid value: {e}")),
        };
        let problem = match key.as_str() {
            "xmlns" => {
                namespace = Some(value.to_string());
                (value != XHTML).then(|| format!("the namespace must be {XHTML}"))
            }
            "href" => url_problem(&value, false),
            "src" => url_problem(&value, name == "img"),
            "style" => style_problem(&value),
            _ => None,
        };
        if let Some(problem) = problem {
            return Some(format!("<{name} {key}>: {problem}"));
        }
    }
    if root && namespace.is_none() {
        return Some(format!(
            "the narrative <div> must declare the XHTML namespace ({XHTML})"
        ));
    }
    None
}

/// Whether a decoded URL is safe to follow: relative, a fragment, or one of [`SCHEMES`];
/// an image may also be a `data:` URL of a raster type.
fn url_problem(url: &str, image: bool) -> Option<String> {
    // Browsers drop ASCII whitespace and control characters inside a URL's scheme (and at its
    // ends), so `java\tscript:` is `javascript:`: judge the URL without them.
    let compact: String = url
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .collect::<String>()
        .to_ascii_lowercase();
    let scheme_end = compact.find([':', '/', '?', '#']);
    let Some(end) = scheme_end.filter(|&i| compact[i..].starts_with(':')) else {
        return None; // relative URL, path or fragment
    };
    let scheme = &compact[..end];
    if SCHEMES.contains(&scheme) {
        return None;
    }
    if image && DATA_IMAGES.iter().any(|d| compact.starts_with(d)) {
        return None;
    }
    Some(format!(
        "the URL scheme {scheme:?} is not allowed (only {}, relative URLs and fragments)",
        SCHEMES.join(", ")
    ))
}

/// CSS that could load or run something: `url(...)`, old expression and binding hooks,
/// `@import`, and CSS escapes (which could spell any of these). Judged without comments,
/// whitespace and non-ASCII characters: old IE read `expr/**/ession(` and `ex\u{AD}pression(`
/// as `expression(`.
fn style_problem(style: &str) -> Option<String> {
    let mut uncommented = String::with_capacity(style.len());
    let mut rest = style;
    while let Some(start) = rest.find("/*") {
        uncommented.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("*/")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    uncommented.push_str(rest);
    let compact: String = uncommented
        .chars()
        .filter(char::is_ascii_graphic)
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "url(",
        "expression(",
        "@import",
        "behavior:",
        "-moz-binding",
        "\\",
        "javascript:",
    ]
    .iter()
    .find(|bad| compact.contains(*bad))
    .map(|bad| format!("{bad} is not allowed in a narrative style"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_formatting_is_allowed() {
        let div = r##"<div xmlns="http://www.w3.org/1999/xhtml"><p class="x">Éloïse <b>Durand</b><br/><a href="https://x.fr/a?b=1&amp;c=2" title='t'>lien</a><img src="#i" alt="a"/></p><!-- note --></div>"##;
        assert_eq!(problem(div), None);
    }

    #[test]
    fn active_content_is_refused() {
        for div in [
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">a</a></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="x"></iframe></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><IMG SRC=x ONERROR=y></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><form><input/></form></div>"#,
        ] {
            assert!(problem(div).is_some(), "{div}");
        }
    }

    /// Wraps `inner` in the narrative `div`.
    fn div(inner: &str) -> String {
        format!(r#"<div xmlns="http://www.w3.org/1999/xhtml">{inner}</div>"#)
    }

    #[test]
    fn disguised_script_is_seen_after_decoding() {
        for inner in [
            r#"<a href="&#106;avascript:alert(1)">a</a>"#,
            r#"<a href="&#x6A;avascript:alert(1)">a</a>"#,
            r#"<a href="java&#x0A;script:alert(1)">a</a>"#,
            "<a href=\"java\tscript:alert(1)\">a</a>",
            r#"<a href=" JavaScript:alert(1)">a</a>"#,
            r#"<a href="vbscript:x">a</a>"#,
            r#"<a href="data:text/html,&lt;script&gt;x()&lt;/script&gt;">a</a>"#,
            r#"<img src="data:image/svg+xml;base64,PHN2Zz4=" alt="x"/>"#,
            r#"<a title="a>b" onmouseover="alert(1)">a</a>"#,
            r#"<img alt="x>" src="x" onerror="alert(1)"/>"#,
            r#"<p style="background:url(javascript:x)">a</p>"#,
            r#"<p style="width: expression(alert(1))">a</p>"#,
            r#"<x:script xmlns:x="http://www.w3.org/1999/xhtml">x()</x:script>"#,
            r#"<p xmlns="http://example.org/svg">a</p>"#,
        ] {
            let div = div(inner);
            assert!(problem(&div).is_some(), "{div}");
        }
    }

    #[test]
    fn malformed_or_foreign_markup_is_refused() {
        for text in [
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>unclosed</div>".to_owned(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a</b></div>".to_owned(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">a &nbsp; b</div>".to_owned(),
            "<div>no namespace</div>".to_owned(),
            "<p xmlns=\"http://www.w3.org/1999/xhtml\">not a div</p>".to_owned(),
            div("a") + "<div xmlns=\"http://www.w3.org/1999/xhtml\">second</div>",
            div("a") + " trailing",
            "<?xml version=\"1.0\"?>".to_owned() + &div("a"),
            "<!DOCTYPE div>".to_owned() + &div("a"),
            div("<?php x ?>"),
            div("<p a=1>unquoted</p>"),
            div("<p class=\"a\" class=\"b\">twice</p>"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"".to_owned(),
        ] {
            assert!(problem(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn safe_links_and_entities_are_allowed() {
        for inner in [
            r#"<a href="https://x.fr/a?b=1&amp;c=2">a</a>"#,
            r##"<a href="#section">a</a>"##,
            r#"<a href="Patient/123">a</a>"#,
            r#"<a href="mailto:a@b.fr">a</a> <a href="tel:+33100000000">t</a>"#,
            r#"<img src="data:image/png;base64,iVBORw0KGgo=" alt="x"/>"#,
            "<p>&lt;&gt;&amp;&apos;&quot;&#233;&#x2028;</p><![CDATA[x < y]]>",
            r#"<table border="1"><tr><td style="color: red">x</td></tr></table>"#,
        ] {
            let div = div(inner);
            assert_eq!(problem(&div), None, "{div}");
        }
    }

    #[test]
    fn markup_an_html_parser_would_see_in_comments_or_cdata_is_refused() {
        for inner in [
            r#"<!--><img src="x" onerror="alert(1)">-->"#,
            r#"<!---><img src="x" onerror="alert(1)">-->"#,
            "<p><![CDATA[a><img src=x onerror=alert(1)>]]></p>",
        ] {
            let div = div(inner);
            assert!(problem(&div).is_some(), "{div}");
        }
        assert_eq!(problem(&div("<!-- a > b --><![CDATA[x < y]]>")), None);
    }

    #[test]
    fn style_hooks_split_by_comments_or_invisible_characters_are_refused() {
        for inner in [
            r#"<p style="width: expr/**/ession(alert(1))">a</p>"#,
            r#"<p style="width: ex&#xAD;pression(alert(1))">a</p>"#,
            r#"<p style="background: u/* x */rl(x)">a</p>"#,
        ] {
            let div = div(inner);
            assert!(problem(&div).is_some(), "{div}");
        }
        let div = div(r#"<p style="color: red /* note */; font-family: 'Amélie'">a</p>"#);
        assert_eq!(problem(&div), None);
    }
}
