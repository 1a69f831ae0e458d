//! Narrative safety (FHIR invariant txt-1): `text.div` may hold only basic XHTML formatting,
//! never scripts, forms, frames, event handlers or `javascript:` links. Clients display
//! narratives; a stored script would run in every viewer of the record.

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

/// The first reason `div` breaks txt-1, if any.
pub fn problem(div: &str) -> Option<String> {
    let lower = div.to_ascii_lowercase();
    if lower.contains("javascript:")
        || lower.contains("vbscript:")
        || lower.contains("data:text/html")
    {
        return Some("script URLs are not allowed in a narrative".into());
    }
    let mut rest = lower.as_str();
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if rest.starts_with("!--") {
            continue;
        }
        if rest.starts_with('!') || rest.starts_with('?') {
            return Some(
                "declarations and processing instructions are not allowed in a narrative".into(),
            );
        }
        let tag_end = rest.find('>').unwrap_or(rest.len());
        let tag = rest[..tag_end].trim_start_matches('/');
        let mut parts = tag.split(|c: char| c.is_ascii_whitespace() || c == '/');
        let name = parts.next().unwrap_or_default();
        if !ELEMENTS.contains(&name) {
            return Some(format!("element <{name}> is not allowed in a narrative"));
        }
        for attribute in attributes(&tag[name.len()..]) {
            if !ATTRIBUTES.contains(&attribute.as_str()) {
                return Some(format!(
                    "attribute {attribute} is not allowed in a narrative"
                ));
            }
        }
        rest = &rest[tag_end..];
    }
    None
}

/// Attribute names in the inside of a tag (quoted values skipped).
fn attributes(inside: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = inside.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() => {
                let mut name = c.to_string();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || matches!(d, ':' | '-' | '_') {
                        name.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                names.push(name);
            }
            _ => {}
        }
    }
    names
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
}
