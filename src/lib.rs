//! sts-broker: a self-hosted, AWS-compatible temporary-credential broker. Long-term keys sign
//! `GetSessionToken` with SigV4, prove an MFA device with a TOTP code, and receive short-lived
//! session credentials; every AWS client works against it through `--endpoint-url`.
//!
//! The library face: [`Broker::open`] a data dir with a [`Config`], then [`Broker::start`] it.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod iam;
pub mod ids;
pub mod mfa;
mod percent;
pub mod protocol;
pub mod server;
pub mod session;
pub mod sigv4;
pub mod store;
pub mod sts;

use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::Config;

use app::AppState;
use mfa::throttle::{Throttle, ThrottlePolicy};
use session::KeyRing;
use store::{Bootstrap, Store, StoreOptions};

/// Why the broker could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The session key ring could not be built.
    #[error("session keys: {0}")]
    Session(#[from] session::SessionError),
    /// The listener could not start.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// An opened broker, ready to serve.
pub struct Broker {
    state: Arc<AppState>,
}

impl Broker {
    /// Opens (creating on first use) the data dir of `config`.
    pub fn open(
        config: Config,
        clock: SharedClock,
    ) -> Result<(Self, Option<Bootstrap>), BrokerError> {
        config.validate()?;
        let (store, bootstrap) = Store::open(
            &config.data_dir,
            Arc::clone(&clock),
            StoreOptions {
                load_index: true,
                audit: config.audit.clone(),
                poll: Duration::from_millis(config.change_poll_millis),
            },
        )?;
        let keys = KeyRing::new(store.server_keys())?;
        let throttle = Throttle::new(ThrottlePolicy {
            free_failures: config.mfa_free_failures,
            base_backoff_secs: config.mfa_base_backoff_secs,
            max_backoff_secs: config.mfa_max_backoff_secs,
        });
        let state = Arc::new(AppState {
            config,
            clock,
            store,
            keys,
            throttle,
        });
        Ok((Self { state }, bootstrap))
    }

    /// The account id.
    pub fn account_id(&self) -> &str {
        self.state.store.account_id()
    }

    /// The shared state (for embedding and tests).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Starts listening on the configured address.
    pub async fn start(self) -> Result<RunningBroker, BrokerError> {
        let listening = server::listen(Arc::clone(&self.state)).await?;
        Ok(RunningBroker {
            state: self.state,
            listening,
        })
    }
}

/// A broker accepting requests.
pub struct RunningBroker {
    state: Arc<AppState>,
    listening: server::Listening,
}

impl RunningBroker {
    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listening.local_addr
    }

    /// Whether it speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.listening.tls
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, drains open requests, and flushes the store.
    pub async fn shutdown(self) {
        self.listening.shutdown().await;
        let store = self.state.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}
