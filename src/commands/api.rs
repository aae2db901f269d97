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
        let secret = config::http_token(config, |var| std::env::var(var).ok())?;
        let tokens_file = config.http.tokens_file.trim();
        let token = match (tokens_file, secret.as_ref()) {
            ("", None) => None,
            ("", Some(secret)) => Some(Token::new(secret)),
            (path, secret) => {
                let token = Token::with_file(secret, &read_tokens_file(path)?)
                    .map_err(|e| anyhow::anyhow!("http.tokens_file {path}: {e}"))?;
                reload_tokens_on_sighup(token.clone(), path.to_owned());
                Some(token)
            }
        };
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
        Ok(Self { token, tls, max_connections })
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

/// The tokens file's text (it holds hashes only, but is read like any file a config names).
pub fn read_tokens_file(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("http.tokens_file {path}: {e}"))
}

/// Reads `http.tokens_file` again whenever the process gets SIGHUP: a bad file is refused (said
/// in the log, by line) and the tokens already loaded stay.
pub fn reload_tokens_on_sighup(token: Token, path: String) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: http.tokens_file is read once");
            return;
        };
        while hangups.recv().await.is_some() {
            match read_tokens_file(&path).and_then(|text| token.replace(&text).map_err(anyhow::Error::msg)) {
                Ok(count) => tracing::info!(tokens = count, file = %path, "http.tokens_file read again"),
                Err(error) => {
                    tracing::warn!(%error, file = %path, "http.tokens_file refused; the tokens loaded before stay")
                }
            }
        }
    });
}
