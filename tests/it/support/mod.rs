//! What the test files share. They import from here only, never from each other; `broker.rs`
//! is the only file that names `sts_broker` items.
//!
//! - `broker`: booting a broker on a settable clock, its configuration knobs, its operator.
//! - `clients`, `iam`: credentials, the Rust SDK clients, what IAM holds.
//! - `http`, `signing`: raw HTTP requests and replies, SigV4 signers, curl.
//! - `totp`, `mfa`: an independent TOTP oracle, and MFA devices with the calls that take codes.
//! - `assert`, `texts`: the assertion for refused calls, and the error texts it compares.
//! - `audit`, `wait`, `process`: the audit log, polling, and the real binary.

pub mod assert;
pub mod audit;
pub mod broker;
pub mod clients;
pub mod http;
pub mod iam;
pub mod mfa;
pub mod process;
pub mod signing;
pub mod texts;
pub mod totp;
pub mod wait;

pub(crate) use assert::assert_sdk_failure;
pub use assert::{Failure, assert_identity, assert_xml_error, failure};
pub use broker::{Setup, TestBroker, TestClock, fresh_dir, wall_now};
pub use clients::{Creds, jwt_claims, session_creds};
pub use wait::{PICKUP, eventually};
