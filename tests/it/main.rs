//! The integration suite: one binary that boots the real broker on 127.0.0.1:0 with a settable
//! clock and drives it with real clients (aws-sdk-sts/iam, curl, boto3, raw HTTP, the aws-sigv4
//! signer). One file per area of the broker's behaviour; what they share is in `support/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod support;

// STS.
mod sts_get_caller_identity;
mod sts_get_session_token;
mod sts_session_credentials;
mod sts_session_token;

// SigV4 and the Query protocol.
mod protocol_front_door;
mod protocol_limits;
mod protocol_parameters;
mod protocol_xml;
mod sigv4_header_form;
mod sigv4_presigned;

// IAM.
mod iam_access_keys;
mod iam_users;

// MFA.
mod mfa_enable_resync;
mod mfa_fido;
mod mfa_get_session_token;
mod mfa_lockout;
mod mfa_replay;
mod mfa_virtual_devices;

// The gate: gateway, forward-auth (through nginx), the real binary.
mod gate_forward_auth;
mod gate_process;
mod gate_proxy;

// Several nodes on PostgreSQL and Redis.
mod multinode_copy_store;
mod multinode_identities;
mod multinode_mfa;
mod multinode_outages;

// Operators, records, restarts, the data dir, other clients, transports, hostile connections.
mod admin_commands;
mod audit_fail_closed;
mod audit_log;
mod chaos;
mod data_dir_checks;
mod durability;
mod embedding;
mod hostile_connections;
mod real_clients;
mod tls_http2;
