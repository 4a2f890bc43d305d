//! What the test files share. They import from here only, never from each other; `broker.rs`
//! is the only file that names `sts_broker` items.
//!
//! - `broker`: booting a broker on a settable clock, its configuration knobs, its operator.
//! - `clients`, `iam`: credentials, the Rust SDK clients, what IAM holds.
//! - `http`, `signing`: raw HTTP requests and replies, SigV4 signers, curl.
//! - `totp`, `mfa`: an independent TOTP oracle, and MFA devices with the calls that take codes.
//! - `assert`, `texts`: the assertion for refused calls, and the error texts it compares.
//! - `audit`, `wait`, `process`: the audit logs, polling, and the real binary.
//! - `upstream`, `nginx`: the services a gate or nginx forwards to, and nginx itself.
//! - `engines`: PostgreSQL and Redis of a test's own, for several broker nodes.

pub(crate) mod assert;
pub(crate) mod audit;
pub(crate) mod broker;
pub(crate) mod clients;
pub(crate) mod engines;
pub(crate) mod http;
pub(crate) mod iam;
pub(crate) mod mfa;
pub(crate) mod nginx;
pub(crate) mod process;
pub(crate) mod signing;
pub(crate) mod texts;
pub(crate) mod totp;
pub(crate) mod upstream;
pub(crate) mod wait;

pub(crate) use assert::assert_sdk_failure;
pub(crate) use assert::{Failure, assert_identity, assert_xml_error, assert_xml10, failure};
pub(crate) use broker::{Setup, TestBroker, TestClock, fresh_dir, wall_now};
pub(crate) use clients::{Creds, session_creds};
pub(crate) use wait::{PICKUP, eventually};
