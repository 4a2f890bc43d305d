//! sts-broker: a self-hosted, AWS-compatible temporary-credential broker. Long-term keys sign
//! `GetSessionToken` with SigV4, prove an MFA device with a TOTP code, and receive short-lived
//! session credentials; every AWS client works against it through `--endpoint-url`.
//!
//! Two ways to embed it:
//! - the whole broker: [`Broker::builder`] on a [`Config`], then [`Broker::start`] (binds the
//!   configured address) or [`Broker::serve`] (on your listener, until your shutdown signal);
//! - only the check, for a service of your own behind the broker: a [`Verifier`] over the
//!   broker's data dir ([`Verifier::follow_data_dir`]) verifies SigV4 requests signed with the
//!   broker's credentials, MFA context included, and writes nothing; [`MfaLayer`] puts that
//!   check in front of an axum or hyper service in one line;
//! - the gate: [`Gate`] is `sts-broker gate`, a reverse proxy and forward-auth endpoint that
//!   admits only what the verifier admits, served on your listener.

mod admin;
mod api;
mod audit;
mod clock;
mod config;
mod ct;
mod gate;
mod ids;
mod mfa;
mod model;
mod percent;
mod protocol;
mod server;
mod session;
mod sigv4;
mod store;
mod time;
mod verifier;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use admin::{Admin, AdminError, BENCH_CREDENTIALS_HEADER, CopyReport};
pub use audit::AuditTarget;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{BackendUrl, Config, ConfigError};
pub use gate::{Gate, GateBuilder, GateError, MfaLayer, MfaService, VerifiedBody};
pub use mfa::guard::{
    AttemptKey, AttemptLimiter, Claim, GuardError, GuardFuture, Locked, ReplayGuard,
};
pub use mfa::replay::InMemoryReplayGuard;
pub use mfa::totp::TotpStep;
pub use model::{AccessKey, Owner, Principal, User};
pub use server::ServeError;
pub use session::SessionError;
pub use store::{Bootstrap, ROOT_CREDENTIALS_FILE, StoreError};
pub use time::UnixTime;
pub use verifier::{
    AuthError, CredentialLookup, MfaAuthentication, Payload, SessionContext, VerifiedCaller,
    Verifier, VerifyPolicy,
};

use api::Api;
use audit::AuditLog;
use mfa::redis::RedisMfa;
use mfa::throttle::ThrottlePolicy;
use server::ServerSettings;
use session::KeyRing;
use store::pg::{PgOptions, PgStore};
use store::{IdentityStore, Store, StoreLimiter, StoreOptions};

/// Why the broker could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be opened.
    #[error("{0}")]
    Audit(std::io::Error),
    /// The session key ring could not be built.
    #[error("session keys: {0}")]
    Session(#[from] SessionError),
    /// The listener could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// How to open a broker: its configuration, and what to inject instead of the defaults.
pub struct BrokerBuilder {
    config: Config,
    clock: SharedClock,
    replay: Option<Arc<dyn ReplayGuard>>,
    limiter: Option<Arc<dyn AttemptLimiter>>,
}

impl BrokerBuilder {
    /// The clock requests are judged by (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The replay guard of TOTP steps (default: [`InMemoryReplayGuard`], made durable by the
    /// store's record of accepted steps).
    #[must_use]
    pub fn replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }

    /// The MFA failure lock-out (default: the store's own, with the configured policy: its
    /// records live in the data dir, so a restart keeps them and every process on the data
    /// dir shares them).
    #[must_use]
    pub fn attempt_limiter(mut self, limiter: Arc<dyn AttemptLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Opens (creating on first use) the data dir, or the PostgreSQL store of `store_url`
    /// (`docs/multinode.md`); returns what the first start created. With `store_url`, open it
    /// inside the Tokio runtime that will serve: the node's change follower runs there.
    pub fn open(self) -> Result<(Broker, Option<Bootstrap>), BrokerError> {
        let config = self.config;
        config.validate()?;
        Store::create_data_dir(&config.data_dir)?;
        let policy = ThrottlePolicy {
            free_failures: config.mfa_free_failures,
            base_backoff_secs: config.mfa_base_backoff_secs,
            max_backoff_secs: config.mfa_max_backoff_secs,
        };
        // A shared store needs a shared lock-out: a per-node one would multiply the free
        // failures by the nodes.
        if config.store_url.is_some() && config.replay_url.is_none() && self.limiter.is_none() {
            return Err(ConfigError::Invalid(
                "store_url (PostgreSQL) needs replay_url (Redis): the nodes must share the MFA lock-out"
                    .into(),
            )
            .into());
        }
        let redis = config
            .replay_url
            .as_ref()
            .map(|url| {
                RedisMfa::new(
                    url.expose(),
                    policy,
                    Duration::from_millis(config.replay_timeout_millis),
                )
                .map(Arc::new)
                .map_err(ConfigError::Invalid)
            })
            .transpose()?;
        let audit = AuditLog::open(&config.audit).map_err(BrokerError::Audit)?;
        let (store, bootstrap) = match &config.store_url {
            None => {
                let (store, bootstrap) = Store::open(
                    &config.data_dir,
                    StoreOptions {
                        load_index: true,
                        audit,
                        poll: Duration::from_millis(config.change_poll_millis),
                        clock: Arc::clone(&self.clock),
                    },
                )?;
                (IdentityStore::Sqlite(store), bootstrap)
            }
            Some(url) => {
                let (store, bootstrap) = PgStore::open(PgOptions {
                    data_dir: &config.data_dir,
                    url,
                    timeout: Duration::from_millis(config.store_timeout_millis),
                    load_index: true,
                    bootstrap: true,
                    audit: Some(audit),
                    clock: Arc::clone(&self.clock),
                })?;
                (IdentityStore::Postgres(store), bootstrap)
            }
        };
        let index = store
            .index()
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("the index was not loaded".into()))?;
        let keys = Arc::new(KeyRing::new(store.server_keys())?);
        let store_limiter = match (&self.limiter, &redis, store.sqlite()) {
            (None, None, Some(sqlite)) => Some(Arc::new(StoreLimiter::new(sqlite.clone(), policy))),
            _ => None,
        };
        let limiter: Arc<dyn AttemptLimiter> = match (self.limiter, &redis, &store_limiter) {
            (Some(limiter), _, _) => limiter,
            (None, Some(redis), _) => redis.clone(),
            (None, None, Some(limiter)) => limiter.clone(),
            (None, None, None) => {
                return Err(StoreError::Corrupt("no MFA lock-out for this store".into()).into());
            }
        };
        // An injected replay guard is consulted on every code: no shortcut past it.
        let embedded = store_limiter.filter(|_| self.replay.is_none());
        let replay: Arc<dyn ReplayGuard> = match (self.replay, &redis) {
            (Some(replay), _) => replay,
            (None, Some(redis)) => redis.clone(),
            (None, None) => Arc::new(InMemoryReplayGuard::new()),
        };
        let mut api = Api::new(config, self.clock, store, index, keys, replay, limiter);
        api.replay_backend = redis;
        api.embedded_mfa = embedded;
        Ok((Broker { api: Arc::new(api) }, bootstrap))
    }
}

/// An opened broker, ready to serve.
pub struct Broker {
    api: Arc<Api>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("account_id", &self.account_id())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A builder for a broker on `config`.
    pub fn builder(config: Config) -> BrokerBuilder {
        BrokerBuilder {
            config,
            clock: Arc::new(SystemClock),
            replay: None,
            limiter: None,
        }
    }

    /// Opens (creating on first use) the data dir of `config`, judging requests by `clock`.
    pub fn open(
        config: Config,
        clock: SharedClock,
    ) -> Result<(Self, Option<Bootstrap>), BrokerError> {
        Self::builder(config).clock(clock).open()
    }

    /// The account id.
    pub fn account_id(&self) -> &str {
        self.api.store.account_id()
    }

    /// The verifier of this broker's credentials, for checking requests to a service that
    /// runs in the same process.
    pub fn verifier(&self) -> &Verifier {
        &self.api.verifier
    }

    /// Binds the configured address and serves in the background until
    /// [`RunningBroker::shutdown`].
    pub async fn start(self) -> Result<RunningBroker, BrokerError> {
        let config = &self.api.config;
        let settings = ServerSettings::from_config(config, config.listen)?;
        let listener = server::bind(config.listen).await?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let tls = settings.is_tls();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let api = Arc::clone(&self.api);
        let task = tokio::spawn(async move {
            server::run(listener, Arc::clone(&api), settings, async {
                let _ = stopped.await;
            })
            .await;
            close_store(&api).await;
        });
        Ok(RunningBroker {
            local_addr,
            tls,
            stop,
            task,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then lets open requests finish and
    /// flushes the store. The configured `listen` address is not used; the TLS settings and
    /// the rule that plain HTTP needs loopback or `insecure_http` are.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), BrokerError> {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: self.api.config.listen,
            source,
        })?;
        let settings = ServerSettings::from_config(&self.api.config, addr)?;
        server::run(listener, Arc::clone(&self.api), settings, shutdown).await;
        close_store(&self.api).await;
        Ok(())
    }
}

async fn close_store(api: &Api) {
    let store = api.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}

/// A broker accepting requests.
#[derive(Debug)]
pub struct RunningBroker {
    local_addr: SocketAddr,
    tls: bool,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Stops accepting, drains open requests, and flushes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
