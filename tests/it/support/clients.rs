//! Credentials and the official Rust SDK clients (`aws-sdk-sts`, `aws-sdk-iam`) pointed at a
//! broker, plus the identities they work with.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_smithy_async::time::{SharedTimeSource, TimeSource};

use crate::support::broker::{TestBroker, TestClock};

/// Access key id, secret and (for sessions) token.
#[derive(Clone, Debug)]
pub(crate) struct Creds {
    pub akid: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Creds {
    pub(crate) fn new(akid: &str, secret: &str, token: Option<&str>) -> Self {
        Self {
            akid: akid.to_owned(),
            secret: secret.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    fn provider(&self) -> Credentials {
        Credentials::new(&self.akid, &self.secret, self.token.clone(), None, "it")
    }
}

/// Session credentials out of an SDK `Credentials`.
pub(crate) fn session_creds(c: &aws_sdk_sts::types::Credentials) -> Creds {
    Creds::new(
        &c.access_key_id,
        &c.secret_access_key,
        Some(&c.session_token),
    )
}

/// The root credentials in `<data_dir>/root-credentials.csv` (its format: README.md).
pub(crate) fn root_creds_in(data_dir: &Path) -> Creds {
    let csv = std::fs::read_to_string(data_dir.join("root-credentials.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    Creds::new(row[1], row[2], None)
}

/// The SDK's clock follows the broker's settable clock, so moving time moves both.
#[derive(Debug)]
struct SdkClock(TestClock);

impl TimeSource for SdkClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(self.0.now()).unwrap())
    }
}

/// An STS client for a broker at `url`, signing with `clock` (the real clock when `None`).
fn sts_client(url: &str, creds: &Creds, clock: Option<&TestClock>) -> aws_sdk_sts::Client {
    let mut conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(creds.provider())
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled());
    if let Some(c) = clock {
        conf = conf.time_source(SharedTimeSource::new(SdkClock(c.clone())));
    }
    aws_sdk_sts::Client::from_conf(conf.build())
}

/// An IAM client for a broker at `url`, signing with `clock` (the real clock when `None`).
fn iam_client(url: &str, creds: &Creds, clock: Option<&TestClock>) -> aws_sdk_iam::Client {
    let mut conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(creds.provider())
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled());
    if let Some(c) = clock {
        conf = conf.time_source(SharedTimeSource::new(SdkClock(c.clone())));
    }
    aws_sdk_iam::Client::from_conf(conf.build())
}

/// An STS client for a broker at `url` that signs with the real clock (for the real binary).
pub(crate) fn sts_at(url: &str, creds: &Creds) -> aws_sdk_sts::Client {
    sts_client(url, creds, None)
}

/// An IAM client for a broker at `url` that signs with the real clock (for the real binary).
pub(crate) fn iam_at(url: &str, creds: &Creds) -> aws_sdk_iam::Client {
    iam_client(url, creds, None)
}

impl TestBroker {
    /// An STS client signing with the broker's settable clock.
    pub(crate) fn sts(&self, creds: &Creds) -> aws_sdk_sts::Client {
        sts_client(&self.url(), creds, Some(&self.clock))
    }

    /// An IAM client signing with the broker's settable clock.
    pub(crate) fn iam(&self, creds: &Creds) -> aws_sdk_iam::Client {
        iam_client(&self.url(), creds, Some(&self.clock))
    }

    /// `arn:aws:iam::ACCOUNT:root`.
    pub(crate) fn root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account_id)
    }

    /// `arn:aws:iam::ACCOUNT:user/NAME`.
    pub(crate) fn user_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{name}", self.account_id)
    }

    /// Creates a user and an access key for it, as root.
    pub(crate) async fn user_with_key(&self, name: &str) -> Creds {
        let iam = self.iam(&self.root);
        iam.create_user().user_name(name).send().await.unwrap();
        let key = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        Creds::new(&key.access_key_id, &key.secret_access_key, None)
    }

    /// Session credentials from GetSessionToken without MFA.
    pub(crate) async fn session(&self, creds: &Creds) -> Creds {
        let c = self
            .sts(creds)
            .get_session_token()
            .send()
            .await
            .unwrap()
            .credentials
            .unwrap();
        session_creds(&c)
    }

    /// The ARN GetCallerIdentity reports for `creds` (the call must succeed).
    pub(crate) async fn caller_arn(&self, creds: &Creds) -> String {
        self.sts(creds)
            .get_caller_identity()
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_owned()
    }
}
