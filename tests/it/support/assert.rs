//! The one assertion for refused SDK calls, and the assertions on raw AWS XML replies.

use std::fmt;

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::support::http::{RawResponse, unescape, xml_text};

/// What a refused call answered: the HTTP status (0 without a response), the AWS error code and
/// its message (the error's debug text when the reply was not an AWS error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// The failure an SDK error carries, as botocore would read it.
    pub(crate) fn of<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + fmt::Debug,
    {
        let status = err.raw_response().map_or(0, |r| r.status().as_u16());
        let (code, message) = err.as_service_error().map_or_else(
            || (String::new(), format!("{err:?}")),
            |e| {
                (
                    e.code().unwrap_or("").to_owned(),
                    e.message().unwrap_or("").to_owned(),
                )
            },
        );
        Self {
            status,
            code,
            message,
        }
    }
}

/// Anything that may hold a refusal: an SDK call's result, or a [`Failure`] already taken.
pub(crate) trait Outcome {
    /// The refusal, or `None` when the call succeeded.
    fn refusal(self) -> Option<Failure>;
}

impl<T, E> Outcome for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + fmt::Debug,
{
    fn refusal(self) -> Option<Failure> {
        self.err().map(|e| Failure::of(&e))
    }
}

impl Outcome for Failure {
    fn refusal(self) -> Option<Failure> {
        Some(self)
    }
}

impl Outcome for &Failure {
    fn refusal(self) -> Option<Failure> {
        Some(self.clone())
    }
}

/// The refusal of a call that must fail.
#[track_caller]
pub(crate) fn failure(outcome: impl Outcome) -> Failure {
    outcome.refusal().expect("the call succeeded but must fail")
}

/// The body of [`assert_sdk_failure!`].
#[track_caller]
pub(crate) fn check_sdk_failure(
    outcome: impl Outcome,
    status: u16,
    code: &str,
    message: &str,
    context: fmt::Arguments<'_>,
) {
    let got = outcome
        .refusal()
        .unwrap_or_else(|| panic!("the call succeeded but must fail {context}"));
    assert_eq!(got, Failure::new(status, code, message), "{context}");
}

/// Asserts that an SDK call failed with exactly this HTTP status, AWS error code and message;
/// optional trailing arguments format a context for the panic message, as with `assert_eq!`.
macro_rules! assert_sdk_failure {
    ($outcome:expr, $status:expr, $code:expr, $message:expr $(,)?) => {
        $crate::support::assert::check_sdk_failure(
            $outcome,
            $status,
            $code,
            $message,
            format_args!(""),
        )
    };
    ($outcome:expr, $status:expr, $code:expr, $message:expr, $($context:tt)+) => {
        $crate::support::assert::check_sdk_failure(
            $outcome,
            $status,
            $code,
            $message,
            format_args!($($context)+),
        )
    };
}
pub(crate) use assert_sdk_failure;

/// Asserts an AWS XML error over raw HTTP: status, Code, Message (entities decoded),
/// Content-Type `text/xml`, Type (Sender/Receiver), and the request id in header and body.
#[track_caller]
pub(crate) fn assert_xml_error(resp: &RawResponse, status: u16, code: &str, message: &str) {
    assert_eq!(
        (
            resp.status,
            xml_text(&resp.body, "Code"),
            xml_text(&resp.body, "Message").map(unescape).as_deref()
        ),
        (status, Some(code), Some(message)),
        "unexpected reply: {}",
        resp.body
    );
    assert_eq!(resp.header("content-type"), Some("text/xml"));
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    assert_eq!(xml_text(&resp.body, "Type"), Some(kind));
    let rid = xml_text(&resp.body, "RequestId").unwrap();
    assert_eq!(resp.header("x-amzn-requestid"), Some(rid));
}

/// Asserts a 200 GetCallerIdentity reply naming `arn`.
#[track_caller]
pub(crate) fn assert_identity(resp: &RawResponse, arn: &str) {
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(xml_text(&resp.body, "Arn"), Some(arn), "{}", resp.body);
}

/// Asserts that `body` is well-formed XML 1.0 made only of the characters XML 1.0 allows
/// (the `Char` production, https://www.w3.org/TR/xml/#charsets): what every AWS XML parser
/// needs to read a reply at all.
#[track_caller]
pub(crate) fn assert_xml10(body: &str) {
    for (at, c) in body.char_indices() {
        let allowed = matches!(
            c,
            '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..
        );
        assert!(
            allowed,
            "{c:?} at byte {at} is not an XML 1.0 character: {body:?}"
        );
    }
    let mut reader = quick_xml::Reader::from_str(body);
    let mut depth = 0_i32;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML ({e}): {body:?}"),
        }
    }
    assert_eq!(depth, 0, "unbalanced XML: {body:?}");
}
