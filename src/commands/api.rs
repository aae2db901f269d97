//! Starting the HTTP API for `serve` and the console: the token, optional HTTPS, and the rule
//! that an API reachable from other machines needs a token (or an explicit `--no-auth`).

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

use rocky::config::{self, Config};
use rocky::http::{self, ApiState, Token};

/// The API's security settings, read and checked before anything listens.
pub struct ApiSecurity {
    pub token: Option<Token>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `http.max_connections`, capped by the descriptor limit.
    pub max_connections: usize,
}

impl ApiSecurity {
    /// Reads `http.token_file` / `ROCKY_HTTP_TOKEN` and `http.tls_cert` / `http.tls_key`, and
    /// refuses a non-loopback `listen` without a token unless `no_auth`.
    pub fn load(config: &Config, listen: SocketAddr, no_auth: bool) -> anyhow::Result<Self> {
        let token = config::http_token(config, |var| std::env::var(var).ok())?;
        if token.is_none() && !listen.ip().is_loopback() {
            if !no_auth {
                anyhow::bail!(
                    "refusing to serve the API on {listen} without a token: anyone who can reach that \
                     address could create and cancel jobs. Set http.token_file or {}, listen on a \
                     loopback address, or pass --no-auth to serve it open",
                    config::HTTP_TOKEN_ENV
                );
            }
            tracing::warn!(%listen, "--no-auth: the HTTP API is open to anyone who can reach it");
        }
        let tls = match (config.http.tls_cert.trim(), config.http.tls_key.trim()) {
            ("", "") => None,
            ("", _) | (_, "") => anyhow::bail!("http.tls_cert and http.tls_key must be given together"),
            (cert, key) => Some(http::acceptor(cert.as_ref(), key.as_ref())?),
        };
        let max_connections =
            http::connection_cap(usize::try_from(config.http.max_connections).unwrap_or(usize::MAX));
        Ok(Self { token: token.as_ref().map(Token::new), tls, max_connections })
    }

    /// `http://` or `https://` and the address, as people paste it.
    pub fn url(&self, addr: SocketAddr) -> String {
        format!("{}://{addr}", if self.tls.is_some() { "https" } else { "http" })
    }
}

/// The API's state for `listen`, with the configuration's limits and policy.
pub fn api_state(
    config: &Config,
    service: rocky::service::Service,
    firmware_dir: std::path::PathBuf,
    listen: SocketAddr,
) -> ApiState {
    let mut state = ApiState::new(service, firmware_dir);
    state.limits = config.load_limits();
    state.policy = std::sync::Arc::new(http::ApiPolicy {
        loopback_listener: listen.ip().is_loopback(),
        allowed_origins: config.http.allowed_origins.clone(),
        max_jobs_per_request: usize::try_from(config.http.max_jobs_per_request).unwrap_or(usize::MAX),
        max_event_clients: usize::try_from(config.http.max_event_clients).unwrap_or(usize::MAX),
        max_store_bytes: config.firmware.max_store_bytes,
    });
    state
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    mut state: ApiState,
    security: ApiSecurity,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    state.token = security.token;
    http::serve_with(listener, security.tls, state, security.max_connections, shutdown)
        .await
        .context("HTTP server failed")
}
