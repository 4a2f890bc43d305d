//! Clients other than the Rust SDK: `curl --aws-sigv4` (which leaves Content-Type unsigned) and
//! boto3/botocore, reading results and errors the way they do
//! (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html).

use crate::support::http::{FORM_UTF8, GCI, curl, curl_sigv4_args, xml_text};
use crate::support::texts::{self, at_least, pattern, validation};
use crate::support::{Creds, TestBroker, assert_identity, assert_xml_error};

#[tokio::test]
async fn curl_sigv4_post_with_unsigned_content_type() {
    let b = TestBroker::start().await;
    let resp = curl(curl_sigv4_args(&b.root, &["-d", GCI, &b.url()])).await;
    assert_identity(&resp, &b.root_arn());
    assert_eq!(xml_text(&resp.body, "UserId"), Some(b.account_id.as_str()));
    b.stop().await;
}

#[tokio::test]
async fn curl_sigv4_with_charset_content_type_and_get_query() {
    let b = TestBroker::start().await;
    // A Content-Type given with -H is signed by curl.
    let ct = format!("Content-Type: {FORM_UTF8}");
    let resp = curl(curl_sigv4_args(&b.root, &["-H", &ct, "-d", GCI, &b.url()])).await;
    assert_identity(&resp, &b.root_arn());
    let url = format!("{}/?{GCI}", b.url());
    let resp = curl(curl_sigv4_args(&b.root, &[&url])).await;
    assert_identity(&resp, &b.root_arn());
    b.stop().await;
}

#[tokio::test]
async fn curl_sigv4_with_session_token_header() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let session = b.session(&alice).await;
    let resp = curl(curl_sigv4_args(&session, &["-d", GCI, &b.url()])).await;
    assert_identity(&resp, &b.user_arn("alice"));
    assert!(xml_text(&resp.body, "UserId").unwrap().starts_with("AIDA"));
    // The same session key without its token is refused.
    let bare = Creds::new(&session.akid, &session.secret, None);
    let resp = curl(curl_sigv4_args(&bare, &["-d", GCI, &b.url()])).await;
    assert_xml_error(&resp, 403, "InvalidClientTokenId", texts::INVALID_TOKEN);
    b.stop().await;
}

/// Drives the broker with boto3: success, errors as `ClientError.response`, quote_plus form
/// bodies and `region_name=''`. Prints one JSON document.
const BOTO_SCRIPT: &str = r#"
import json, os, boto3, botocore.config
from botocore.exceptions import ClientError
cfg = botocore.config.Config(retries={"max_attempts": 1}, parameter_validation=False)
def client(akid, secret, token=None, region="us-east-1"):
    return boto3.client("sts", endpoint_url=os.environ["EP"], region_name=region,
        aws_access_key_id=akid, aws_secret_access_key=secret, aws_session_token=token, config=cfg)
def err(call):
    try:
        call()
        return None
    except ClientError as e:
        return {"error": e.response["Error"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                "request_id": e.response["ResponseMetadata"]["RequestId"],
                "header_id": e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")}
user = client(os.environ["AKID"], os.environ["SECRET"])
out = {"user_arn": user.get_caller_identity()["Arn"]}
c = user.get_session_token(DurationSeconds=900)["Credentials"]
session = client(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out["session_arn"] = session.get_caller_identity()["Arn"]
out["session_gst"] = err(lambda: session.get_session_token())
out["duration"] = err(lambda: user.get_session_token(DurationSeconds=899))
out["serial"] = err(lambda: user.get_session_token(SerialNumber="arn:aws:iam::123456789012:mfa/a b", TokenCode="123456"))
out["no_device"] = err(lambda: user.get_session_token(SerialNumber="arn:aws:iam::123456789012:mfa/alice", TokenCode="123456"))
out["empty_region_arn"] = client(os.environ["AKID"], os.environ["SECRET"], region="").get_caller_identity()["Arn"]
print(json.dumps(out))
"#;

#[tokio::test]
async fn botocore_reads_results_and_errors() {
    let have_boto3 = std::process::Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_boto3 {
        // .ci/run puts its virtualenv (with boto3) first on PATH and sets this variable, so
        // there the test cannot be skipped.
        assert!(
            std::env::var_os("STS_BROKER_REQUIRE_BOTO3").is_none(),
            "STS_BROKER_REQUIRE_BOTO3 is set but python3 cannot import boto3"
        );
        eprintln!("SKIPPED: python3 with boto3 is not installed");
        return;
    }
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let envs = [
        ("EP", b.url()),
        ("AKID", alice.akid.clone()),
        ("SECRET", alice.secret.clone()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", BOTO_SCRIPT])
            .envs(envs)
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arn = b.user_arn("alice");
    assert_eq!(v["user_arn"], arn.as_str());
    assert_eq!(v["session_arn"], arn.as_str());
    assert_eq!(v["empty_region_arn"], arn.as_str());
    let check = |key: &str, status: u16, code: &str, message: &str| {
        let e = &v[key];
        assert_eq!(e["status"], status, "{key}: {e}");
        assert_eq!(
            e["error"],
            serde_json::json!({"Type": "Sender", "Code": code, "Message": message}),
            "{key}"
        );
        assert_eq!(e["request_id"], e["header_id"], "{key}");
        assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{key}");
    };
    check(
        "session_gst",
        403,
        "AccessDenied",
        texts::SESSION_CREDENTIALS,
    );
    check(
        "duration",
        400,
        "ValidationError",
        &validation(&[at_least("899", "durationSeconds", 900)]),
    );
    check(
        "serial",
        400,
        "ValidationError",
        &validation(&[pattern(
            "arn:aws:iam::123456789012:mfa/a b",
            "serialNumber",
            texts::SERIAL_NUMBER_PATTERN,
        )]),
    );
    check(
        "no_device",
        403,
        "AccessDenied",
        texts::MFA_UNABLE_TO_VALIDATE,
    );
    b.stop().await;
}
