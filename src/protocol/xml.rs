//! AWS Query-protocol XML: no prologue, two-space indent, a newline after every element and a
//! trailing newline (`docs/sts-wire-contract.md#success-body`). A few fixed shapes, so a small
//! writer beats an XML library.

use std::fmt::Write as _;

/// Escapes text for an XML element body or attribute.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"', '\'']) {
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
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
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

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    /// Opens `<name>` or `<name xmlns="ns">`.
    pub(crate) fn open_ns(&mut self, name: &str, namespace: Option<&str>) -> &mut Self {
        self.indent();
        match namespace {
            // Writing to a String cannot fail.
            Some(ns) => {
                let _ = writeln!(self.out, "<{name} xmlns=\"{}\">", escape(ns));
            }
            None => {
                let _ = writeln!(self.out, "<{name}>");
            }
        }
        self.depth += 1;
        self
    }

    /// Opens `<name>`.
    pub(crate) fn open(&mut self, name: &str) -> &mut Self {
        self.open_ns(name, None)
    }

    /// Closes `</name>`.
    pub(crate) fn close(&mut self, name: &str) -> &mut Self {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
        self
    }

    /// Writes `<name>text</name>`.
    pub(crate) fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.indent();
        let _ = writeln!(self.out, "<{name}>{}</{name}>", escape(text));
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
    let mut w = XmlWriter::new();
    let response = format!("{action}Response");
    w.open_ns(&response, Some(namespace));
    if let Some(fill) = result {
        let result_name = format!("{action}Result");
        w.open(&result_name);
        fill(&mut w);
        w.close(&result_name);
    }
    w.open("ResponseMetadata")
        .leaf("RequestId", request_id)
        .close("ResponseMetadata");
    w.close(&response);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
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
