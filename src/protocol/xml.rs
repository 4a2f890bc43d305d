//! AWS Query-protocol XML: no prologue, two-space indent, a newline after every element and a
//! trailing newline (`docs/sts-wire-contract.md#success-body`). A few fixed shapes, so a small
//! writer beats an XML library.

/// Whether `c` may appear in an XML 1.0 document at all (the `Char` production,
/// https://www.w3.org/TR/xml/#charsets). A Rust `char` is never a surrogate, so what is left out
/// is the C0 controls other than tab, line feed and carriage return, and U+FFFE and U+FFFF.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes text for an XML element body: the five predefined entities, a carriage return as a
/// character reference (a parser would turn a literal one into a line feed), and every
/// character XML 1.0 does not allow replaced by U+FFFD. No character reference can stand for
/// those (`&#x1;` is not well-formed either), and the text is only ever shown back to its
/// sender, so replacing them loses nothing a client could use.
#[cfg(test)]
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    escape_with(text, false)
}

/// [`escape`] for an attribute value, where a parser would also turn a tab or a line feed into
/// a space unless it is a character reference.
#[cfg(test)]
pub(crate) fn escape_attribute(text: &str) -> std::borrow::Cow<'_, str> {
    escape_with(text, true)
}

fn escape_with(text: &str, attribute: bool) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| {
        is_xml_char(c)
            && !matches!(c, '<' | '>' | '&' | '"' | '\'' | '\r')
            && !(attribute && matches!(c, '\t' | '\n'))
    };
    if text.chars().all(plain) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\t' if attribute => out.push_str("&#x9;"),
            '\n' if attribute => out.push_str("&#xA;"),
            c if !is_xml_char(c) => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether every byte of `text` needs no escaping in an element body (or, with `attribute`, in
/// an attribute value; there a tab or line feed would need one): the common case (ids, ARNs,
/// tokens, dates), checked without decoding chars, sixteen bytes at a time where there are
/// sixteen (the compiler turns each block into a few vector instructions).
fn needs_no_escape(text: &str, attribute: bool) -> bool {
    // Printable ASCII but the five entities' characters; tab and line feed in an element.
    let plain = |b: u8| {
        ((b.wrapping_sub(b' ') <= b'~' - b' ')
            & (b != b'<')
            & (b != b'>')
            & (b != b'&')
            & (b != b'"')
            & (b != b'\''))
            | (!attribute & ((b == b'\t') | (b == b'\n')))
    };
    let all_plain = |bytes: &[u8]| bytes.iter().fold(true, |p, &b| p & plain(b));
    let bytes = text.as_bytes();
    let (blocks, tail) = bytes.as_chunks::<16>();
    // With sixteen bytes or more, the tail is checked as the last sixteen (some bytes twice).
    let tail = bytes
        .last_chunk::<16>()
        .map_or(tail, |last| last.as_slice());
    all_plain(tail) && blocks.iter().all(|block| all_plain(block))
}

/// Appends `text` escaped for an element body or, with `attribute`, an attribute value.
fn push_escaped(out: &mut String, text: &str, attribute: bool) {
    if needs_no_escape(text, attribute) {
        out.push_str(text);
    } else {
        out.push_str(&escape_with(text, attribute));
    }
}

/// Writes indented elements into a string.
#[derive(Debug, Default)]
pub(crate) struct XmlWriter {
    out: String,
    depth: usize,
}

impl XmlWriter {
    /// An empty document.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty document with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        // One copy rather than one per level; the broker's documents are never this deep.
        const SPACES: &str = "                ";
        match SPACES.get(..2 * self.depth) {
            Some(spaces) => self.out.push_str(spaces),
            None => {
                for _ in 0..self.depth {
                    self.out.push_str("  ");
                }
            }
        }
    }

    /// Opens `<{name}{suffix}>` or `<{name}{suffix} xmlns="ns">`.
    fn open_parts(&mut self, name: &str, suffix: &str, namespace: Option<&str>) -> &mut Self {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(suffix);
        if let Some(ns) = namespace {
            self.out.push_str(" xmlns=\"");
            push_escaped(&mut self.out, ns, true);
            self.out.push('"');
        }
        self.out.push_str(">\n");
        self.depth += 1;
        self
    }

    /// Closes `</{name}{suffix}>`.
    fn close_parts(&mut self, name: &str, suffix: &str) -> &mut Self {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(suffix);
        self.out.push_str(">\n");
        self
    }

    /// Opens `<name>` or `<name xmlns="ns">`.
    pub(crate) fn open_ns(&mut self, name: &str, namespace: Option<&str>) -> &mut Self {
        self.open_parts(name, "", namespace)
    }

    /// Opens `<name>`.
    pub(crate) fn open(&mut self, name: &str) -> &mut Self {
        self.open_parts(name, "", None)
    }

    /// Closes `</name>`.
    pub(crate) fn close(&mut self, name: &str) -> &mut Self {
        self.close_parts(name, "")
    }

    /// Writes `<name>text</name>`.
    pub(crate) fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        push_escaped(&mut self.out, text, false);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
        self
    }

    /// Writes `<name>text</name>` when there is a text.
    pub(crate) fn leaf_opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(name, t);
        }
        self
    }

    /// The document.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// The whole success body: `<{action}Response>`, an optional `<{action}Result>` filled by
/// `result`, and `<ResponseMetadata>`.
pub(crate) fn success_body(
    action: &str,
    namespace: &str,
    request_id: &str,
    result: Option<&dyn Fn(&mut XmlWriter)>,
) -> String {
    // Room for a GetSessionToken answer (about 1.2 KB) without growing.
    let mut w = XmlWriter::with_capacity(1536);
    w.open_parts(action, "Response", Some(namespace));
    if let Some(fill) = result {
        w.open_parts(action, "Result", None);
        fill(&mut w);
        w.close_parts(action, "Result");
    }
    w.open("ResponseMetadata")
        .leaf("RequestId", request_id)
        .close("ResponseMetadata");
    w.close_parts(action, "Response");
    w.finish()
}

/// A success body whose result is a fixed list of `N` leaves, for an action answered on every
/// request (GetCallerIdentity): the text between the values is rendered once, by
/// [`success_body`] itself so that it cannot drift from it, and each answer is that text with
/// the values escaped in between, in one string of the exact size.
#[derive(Debug)]
pub(crate) struct LeafBody<const N: usize> {
    action: &'static str,
    namespace: &'static str,
    names: [&'static str; N],
    /// `None` if the rendered body was not cut where expected (then each answer is rendered
    /// whole).
    literals: Option<Literals<N>>,
}

/// The constant text of a [`LeafBody`].
#[derive(Debug)]
struct Literals<const N: usize> {
    /// The text before each leaf's value.
    before: [Box<str>; N],
    /// The text before the request id.
    before_id: Box<str>,
    /// The rest.
    end: Box<str>,
    /// The length of all of them.
    len: usize,
}

impl<const N: usize> LeafBody<N> {
    /// The body of `action`, whose result holds the leaves `names` in that order.
    pub(crate) fn new(
        action: &'static str,
        namespace: &'static str,
        names: [&'static str; N],
    ) -> Self {
        let whole = success_body(
            action,
            namespace,
            "",
            Some(&|w: &mut XmlWriter| {
                for name in names {
                    w.leaf(name, "");
                }
            }),
        );
        let mut rest = whole.as_str();
        let mut cut = |name: &str| {
            let empty = format!("<{name}></{name}>");
            let at = rest.find(&empty)? + name.len() + 2;
            let (before, after) = rest.split_at_checked(at)?;
            rest = after;
            Some(Box::<str>::from(before))
        };
        let before: Option<Vec<Box<str>>> = names.iter().map(|name| cut(name)).collect();
        let before_id = cut("RequestId");
        let literals = before
            .and_then(|before| <[Box<str>; N]>::try_from(before).ok())
            .zip(before_id)
            .map(|(before, before_id)| Literals {
                len: whole.len(),
                before,
                before_id,
                end: Box::from(rest),
            });
        Self {
            action,
            namespace,
            names,
            literals,
        }
    }

    /// The body with `values` (one per leaf, in order) and `request_id`, escaped.
    pub(crate) fn render(&self, values: [&str; N], request_id: &str) -> String {
        let Some(literals) = &self.literals else {
            return success_body(
                self.action,
                self.namespace,
                request_id,
                Some(&|w: &mut XmlWriter| {
                    for (name, value) in self.names.iter().zip(values) {
                        w.leaf(name, value);
                    }
                }),
            );
        };
        // Exact when nothing needs escaping, the usual case: `Bytes::from` then takes the
        // string as it is, without a second allocation.
        let mut len = literals.len + request_id.len();
        for value in values {
            len += value.len();
        }
        let mut out = String::with_capacity(len);
        for (literal, value) in literals.before.iter().zip(values) {
            out.push_str(literal);
            push_escaped(&mut out, value, false);
        }
        out.push_str(&literals.before_id);
        push_escaped(&mut out, request_id, false);
        out.push_str(&literals.end);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_scan_agrees_with_the_char_escape() {
        for text in [
            "",
            "plain",
            "a<b",
            "tab\there",
            "line\nfeed",
            "cr\r",
            "quote\"'",
            "\u{1}",
            "été",
            "\u{FFFE}",
            "~ !#$%()*+,-./0-9:;=?@A-Z[\\]^_`a-z{|}",
            "\u{7f}",
        ] {
            for attribute in [false, true] {
                let mut out = String::new();
                push_escaped(&mut out, text, attribute);
                assert_eq!(out, escape_with(text, attribute), "{text:?} {attribute}");
            }
        }
    }

    /// The byte check against the char-by-char escape, for every ASCII character and a few
    /// others, alone and between plain text.
    #[test]
    fn the_byte_check_agrees_with_the_char_escape() {
        let chars = (0..=0x7f_u32).filter_map(char::from_u32).chain([
            '\u{80}',
            'é',
            '\u{FFFD}',
            '\u{FFFE}',
            '\u{10000}',
        ]);
        for c in chars {
            let long = "0123456789abcdef0123456789abcdef0";
            let texts = [0, 1, 15, 16, 17, 20, 31, 32, 33]
                .into_iter()
                .map(|at| format!("{}{c}{}", &long[..at], &long[at..]))
                .chain([c.to_string(), format!("ab{c}cd"), format!("{c}{c}")])
                .chain((10..20).map(|n| format!("{}{c}", &long[..n])));
            for text in texts {
                for attribute in [false, true] {
                    let mut out = String::new();
                    push_escaped(&mut out, &text, attribute);
                    assert_eq!(out, escape_with(&text, attribute), "{text:?} {attribute}");
                    // The check may send a text to the slow path for nothing (DEL), never
                    // skip one that needs escaping.
                    let fast = needs_no_escape(&text, attribute);
                    assert!(!fast || out == text, "{text:?} {attribute}");
                    assert!(fast || !c.is_ascii_alphanumeric(), "{text:?} {attribute}");
                }
            }
        }
    }

    fn gci_shape(values: [&str; 3], request_id: &str) -> String {
        success_body(
            "GetCallerIdentity",
            "https://sts.amazonaws.com/doc/2011-06-15/",
            request_id,
            Some(&|w: &mut XmlWriter| {
                w.leaf("Arn", values[0])
                    .leaf("UserId", values[1])
                    .leaf("Account", values[2]);
            }),
        )
    }

    /// The pre-rendered body is the general writer's, byte for byte, whatever the values, and
    /// is as long as it needs to be and no longer when nothing is escaped.
    #[test]
    fn a_leaf_body_is_the_success_body() {
        let body = LeafBody::new(
            "GetCallerIdentity",
            "https://sts.amazonaws.com/doc/2011-06-15/",
            ["Arn", "UserId", "Account"],
        );
        assert!(body.literals.is_some());
        let fallback = LeafBody {
            literals: None,
            ..LeafBody::new("GetCallerIdentity", body.namespace, body.names)
        };
        for (values, rid) in [
            (
                [
                    "arn:aws:iam::123456789012:root",
                    "123456789012",
                    "123456789012",
                ],
                "rid",
            ),
            (
                [
                    "arn:aws:iam::1:user/a<b>&\"'",
                    "AIDA\r\t\n",
                    "\u{1}é\u{FFFE}",
                ],
                "r<i>d",
            ),
            (["", "", ""], ""),
            (
                ["<Arn></Arn>", "</UserId>", "<RequestId></RequestId>"],
                "<Account></Account>",
            ),
        ] {
            let want = gci_shape(values, rid);
            let got = body.render(values, rid);
            assert_eq!(got, want);
            assert_eq!(fallback.render(values, rid), want);
        }
        let plain = body.render(["arn:aws:iam::1:user/u", "AIDA", "1"], "r");
        assert_eq!(plain.len(), plain.capacity());
    }

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(
            escape("été\ttab\nline"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// Every output is XML 1.0 text, whatever the input: the controls XML forbids become U+FFFD,
    /// a carriage return survives as a reference, and in attributes tab and line feed too.
    #[test]
    fn characters_xml_forbids_are_replaced() {
        assert_eq!(
            escape("a\u{0}b\u{1}c\u{1b}d\u{7f}e\u{fffe}f\u{ffff}g"),
            "a\u{fffd}b\u{fffd}c\u{fffd}d\u{7f}e\u{fffd}f\u{fffd}g"
        );
        assert_eq!(escape("a\rb\tc\nd"), "a&#xD;b\tc\nd");
        assert_eq!(escape_attribute("a\rb\tc\nd<"), "a&#xD;b&#x9;c&#xA;d&lt;");
        assert_eq!(
            escape("\u{10000}\u{d7ff}\u{e000}"),
            "\u{10000}\u{d7ff}\u{e000}"
        );
        for c in [
            '\u{0}', '\u{8}', '\u{b}', '\u{c}', '\u{e}', '\u{1f}', '\u{fffe}', '\u{ffff}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
            assert_eq!(escape(&c.to_string()), "\u{fffd}");
        }
    }

    #[test]
    fn a_leaf_with_any_text_is_xml() {
        let mut w = XmlWriter::new();
        w.open_ns("R", Some("n\u{1}s"))
            .leaf("M", "x\u{2}<y")
            .close("R");
        assert_eq!(
            w.finish(),
            "<R xmlns=\"n\u{fffd}s\">\n  <M>x\u{fffd}&lt;y</M>\n</R>\n"
        );
    }

    /// The layout of `docs/sts-wire-contract.md#success-body`, byte for byte.
    #[test]
    fn success_body_has_the_contract_shape() {
        let body = success_body(
            "GetCallerIdentity",
            "https://sts.amazonaws.com/doc/2011-06-15/",
            "rid",
            Some(&|w: &mut XmlWriter| {
                w.leaf("Arn", "arn:aws:iam::123456789012:root")
                    .leaf("UserId", "123456789012")
                    .leaf("Account", "123456789012");
            }),
        );
        assert_eq!(
            body,
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>arn:aws:iam::123456789012:root</Arn>\n    <UserId>123456789012</UserId>\n    <Account>123456789012</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>rid</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
        );
    }

    #[test]
    fn no_result_body_has_only_metadata() {
        let body = success_body("DeleteUser", "ns", "r", None);
        assert_eq!(
            body,
            "<DeleteUserResponse xmlns=\"ns\">\n  <ResponseMetadata>\n    <RequestId>r</RequestId>\n  </ResponseMetadata>\n</DeleteUserResponse>\n"
        );
    }
}
