//! The session token is opaque. It is a bearer value that ends up in headers, proxy logs and
//! presigned URLs, so it shows its holder nothing about how the session was obtained: not the
//! long-term key behind it, not the MFA device, not even what GetCallerIdentity would tell
//! (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html), while a
//! verifier holding the broker's keys still reads all of it.

use base64::Engine as _;

use crate::support::mfa::{enabled_device, session_with_mfa};
use crate::support::{TestBroker, session_creds};

/// Every way a token could be read without a key: its text, and base64 (either alphabet, padded
/// or not) of the whole and of each `.`-separated part.
fn readings(token: &str) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = vec![token.as_bytes().to_vec()];
    let parts = std::iter::once(token).chain(token.split('.'));
    for part in parts {
        for engine in [&STANDARD, &URL_SAFE] {
            out.extend(engine.decode(part).ok());
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            out.extend(engine.decode(part.trim_end_matches('=')).ok());
        }
    }
    out
}

#[tokio::test]
async fn the_session_token_shows_nothing_about_the_session() {
    let b = TestBroker::start().await;
    let alice = b.user_with_key("alice").await;
    let device = enabled_device(&b, &alice, "alice", "alice-phone").await;
    b.clock.advance(30);
    let auth_time = b.now();
    let with_mfa = session_with_mfa(&b, &alice, &device.serial, &device.code_at(auth_time, 0))
        .await
        .unwrap();
    let with_mfa = session_creds(&with_mfa);
    let plain = b.session(&alice).await;
    let user_id = b
        .sts(&alice)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .user_id
        .unwrap();
    let hidden = [
        ("the parent access key", alice.akid.as_str()),
        ("the MFA serial", device.serial.as_str()),
        ("the device name", "alice-phone"),
        ("the account", b.account_id.as_str()),
        ("the user id", user_id.as_str()),
        ("the user name", "alice"),
    ];
    for session in [&with_mfa, &plain] {
        let token = session.token.as_deref().unwrap();
        for bytes in readings(token) {
            for (what, value) in hidden {
                let found = bytes
                    .windows(value.len())
                    .any(|w| w.eq_ignore_ascii_case(value.as_bytes()));
                assert!(
                    !found,
                    "{what} ({value}) can be read from the session token"
                );
            }
            assert!(
                !bytes.windows(6).any(|w| w == b"\"mfa\":"),
                "the token's claims can be read"
            );
        }
        // AWS's alphabet and size (docs/sts-wire-contract.md#getsessiontoken-result).
        assert!(token.len() >= 100, "{token}");
        assert!(
            token
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)),
            "{token}"
        );
    }
    // Its length does not tell whether MFA was used.
    assert_eq!(
        with_mfa.token.as_ref().unwrap().len(),
        plain.token.as_ref().unwrap().len()
    );
    // A verifier with the broker's keys still reads who, until when, and the MFA context.
    let seen = b.session_seen(&with_mfa);
    assert_eq!(seen.arn, b.user_arn("alice"));
    assert_eq!(seen.mfa, Some((device.serial.clone(), auth_time)));
    assert_eq!(seen.expires_at, auth_time + 43_200);
    assert_eq!(b.session_seen(&plain).mfa, None);
    b.stop().await;
}
