//! A small client of a running Rocky's HTTP API for the CLI commands that change what the server
//! holds (`rocky devices …`): the server owns the data directory while it runs, so changes go
//! through it. The address is `--server`, else `http://` and `http.listen`; the token comes from
//! `--token-file`, `http.token_file` or `ROCKY_HTTP_TOKEN`, and never appears in a message.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use rocky::api::{Body, Client, Failure, Firmware};
use rocky::config::Config;
use rocky::mqtt::Secret;

/// Where a command that talks to a running Rocky finds it: `--server` and `--token-file`,
/// before or after the subcommand (`rocky devices --server U list` and `rocky devices list
/// --server U` alike).
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// The running Rocky's API (default: http:// and http.listen).
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// The API token, read from this file (else http.token_file or ROCKY_HTTP_TOKEN).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
}

/// The API client (`rocky::api::Client`) with the CLI's words for what went wrong.
pub struct ApiClient {
    client: Client,
    token: Option<Secret>,
}

/// How long one request may take (an upload of a large image included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl ApiClient {
    pub fn for_args(config: &Config, args: &ServerArgs) -> anyhow::Result<Self> {
        Self::new(config, args.server.as_deref(), args.token_file.as_deref())
    }

    pub fn new(config: &Config, server: Option<&str>, token_file: Option<&Path>) -> anyhow::Result<Self> {
        let base = match server {
            Some(server) => server.to_owned(),
            None => format!("http://{}", config.http.listen),
        };
        let token = match token_file {
            Some(path) => Some(Secret::from_file("--token-file", path)?),
            None => rocky::config::http_token(config, |var| std::env::var(var).ok())?,
        };
        let client = Client::new(&base, token.as_ref(), None).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self { client, token })
    }

    /// Sends a request and reads the JSON answer (`Value::Null` for an empty one); a 4xx/5xx
    /// answer is an error carrying the server's own message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map_or(Body::Empty, |(content_type, bytes)| Body::Bytes(content_type, bytes.into()));
        let base = self.client.base();
        self.client.request(method, path, body, REQUEST_TIMEOUT).await.map_err(|failure| match failure {
            // A TLS handshake that a plain-HTTP server answered fails as a connection does.
            Failure::Unreachable(cause) if base.starts_with("https://") => anyhow::anyhow!(
                "cannot reach {base} over TLS ({cause}): if the server speaks plain HTTP, use http://"
            ),
            Failure::Unreachable(_) => anyhow::anyhow!(
                "no Rocky answers at {base}: start one with `rocky serve` (or `rocky demo`), or name it with --server"
            ),
            Failure::TimedOut => anyhow::anyhow!("{base} did not answer in time"),
            Failure::Transport(cause) => anyhow::anyhow!("cannot reach {base}: {cause}"),
            Failure::BadAnswer(what) => anyhow::anyhow!("{base} answered badly: {what}"),
            Failure::Refused { status: 401, .. } => match &self.token {
                Some(token) => anyhow::anyhow!(
                    "{base} refused the API token ({}): check --token-file, http.token_file or ROCKY_HTTP_TOKEN",
                    token.origin()
                ),
                None => anyhow::anyhow!(
                    "{base} needs an API token: pass --token-file, or set http.token_file or ROCKY_HTTP_TOKEN"
                ),
            },
            Failure::Refused { status, said } => anyhow::anyhow!("{said} (HTTP {status})"),
        })
    }
}

/// The `firmware` of a request from what the operator typed: a SHA-256 the server holds, an
/// http(s) URL, a local file (uploaded first, then named by its hash), or a path in the
/// server's firmware directory. A manifest `rocky sign` wrote beside a local file
/// (`IMAGE.cose`, and `IMAGE.sig-sha256-ecdsa` of `--format aws`) is attached after the
/// upload; the server verifies it.
pub async fn firmware_source(api: &ApiClient, text: &str) -> anyhow::Result<Firmware> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Firmware::sha256(hex.to_ascii_lowercase()));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Ok(Firmware { url: Some(text.to_owned()), ..Firmware::default() });
    }
    if text.trim().is_empty() {
        anyhow::bail!(
            "--firmware is empty: name an image file, a sha256, a URL or a path in the server's firmware directory"
        );
    }
    let path = Path::new(text);
    if path.is_dir() {
        anyhow::bail!(
            "{text} is a directory here, not an image file: name the file in it (like {text}/fw.bin)"
        );
    }
    // An absolute or ./ path names a file here; anything else that is not a file here is a path
    // in the server's firmware directory.
    let local =
        path.is_absolute() || text.starts_with("./") || text.starts_with("../") || text.starts_with('~');
    if local && !path.is_file() {
        anyhow::bail!(
            "cannot read {text}: no such file here (a path in the server's firmware directory is relative, like fw-2.1.bin)"
        );
    }
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name =
            path.file_name().map_or_else(|| "firmware.bin".into(), |n| n.to_string_lossy().into_owned());
        let (_, uploaded) = api
            .call(
                Method::POST,
                &format!("/firmware?name={}", rocky::firmware::upload_name(&name)),
                Some(("application/octet-stream", bytes)),
            )
            .await?;
        let sha = uploaded["sha256"].as_str().context("the server's upload answer has no sha256")?.to_owned();
        let mut cose = path.as_os_str().to_owned();
        cose.push(".cose");
        let cose = std::path::PathBuf::from(cose);
        if cose.is_file() {
            let bytes = std::fs::read(&cose).with_context(|| format!("cannot read {}", cose.display()))?;
            let (_, attached) = api
                .call(Method::PUT, &format!("/firmware/{sha}/manifest"), Some(("application/cose", bytes)))
                .await
                .with_context(|| format!("the server refused {}", cose.display()))?;
            let kid = attached["manifest"]["kid"].as_str().unwrap_or("?");
            eprintln!("{}: manifest attached (signed by key {kid})", cose.display());
        }
        // And the signature `rocky sign --format aws` wrote, for devices of AWS's OTA agent.
        let mut aws = path.as_os_str().to_owned();
        aws.push(".sig-sha256-ecdsa");
        let aws = std::path::PathBuf::from(aws);
        if aws.is_file() {
            let bytes = std::fs::read(&aws).with_context(|| format!("cannot read {}", aws.display()))?;
            api.call(Method::PUT, &format!("/firmware/{sha}/aws-signature"), Some(("text/plain", bytes)))
                .await
                .with_context(|| format!("the server refused {}", aws.display()))?;
            eprintln!("{}: sig-sha256-ecdsa attached", aws.display());
        }
        return Ok(Firmware::sha256(sha));
    }
    // Not here: a path in the server's firmware directory.
    Ok(Firmware { path: Some(text.to_owned()), ..Firmware::default() })
}

pub use rocky::api::percent_encode as encode;

/// How each job of a new job or rollout is paced, and how the answer is printed: the flags
/// A rate the server will take, kept as the user wrote it (`80KiB/s`).
fn checked_rate(text: &str) -> Result<String, String> {
    rocky::units::parse_rate(text).map(|_| text.to_owned())
}

/// `rocky job create` and `rocky rollout create` share.
#[derive(clap::Args, Debug, Default)]
pub struct CreateFlags {
    /// Bytes a chunk (the server's default when left out).
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Per-job byte rate cap, e.g. 80KiB/s (checked here, sent as written).
    #[arg(long, value_parser = checked_rate)]
    pub max_rate: Option<String>,
    /// For devices that run AWS's OTA agent: the code-signing certificate's path on the
    /// device, in place of `[aws_ota] certfile`.
    #[arg(long, value_name = "PATH")]
    pub aws_certfile: Option<String>,
    /// For devices that run AWS's OTA agent: where the device writes the image, in place of
    /// `[aws_ota] filepath`.
    #[arg(long, value_name = "PATH")]
    pub aws_filepath: Option<String>,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CreateFlags {
    /// Puts the flags given into a request body.
    pub fn add_to(&self, body: &mut Value) {
        if let Some(chunk) = self.chunk_size {
            body["chunk_size"] = json!(chunk);
        }
        if let Some(rate) = &self.max_rate {
            body["max_rate"] = json!(rate);
        }
        if self.aws_certfile.is_some() || self.aws_filepath.is_some() {
            let over = rocky::runtime::AwsOtaOverride {
                certfile: self.aws_certfile.clone(),
                filepath: self.aws_filepath.clone(),
            };
            body["aws_ota"] = json!(over);
        }
    }
}
