//! `rocky sign`: signs an image offline (the CI that builds the firmware holds the key, Rocky
//! never does) and writes `IMAGE.cose` beside it (`--format aws`: `IMAGE.sig-sha256-ecdsa`,
//! the signature AWS's OTA agent checks), which `rocky rollout create --firmware IMAGE` and
//! `rocky job create` attach after the upload.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rocky::firmware::Image;
use rocky::protocol::{Manifest, ManifestPayload, sha256_hex};
use rocky::signing::read_signing_key;

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The private key (`rocky keys generate`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The image's version as people name it, e.g. 2.1.0 (at most 64 printable bytes).
    #[arg(long)]
    pub version: Option<String>,
    /// The security counter: a device refuses an image whose counter is below the one it runs.
    #[arg(long, default_value_t = 0)]
    pub seq: u64,
    /// What to write: `cose`, the manifest of Rocky's protocol (IMAGE.cose), or `aws`, the
    /// `sig-sha256-ecdsa` devices running AWS's OTA agent check (IMAGE.sig-sha256-ecdsa; an
    /// ES256 key).
    #[arg(long, value_enum, default_value_t = Format::Cose)]
    pub format: Format,
    /// Where to write it (default: IMAGE.cose or IMAGE.sig-sha256-ecdsa). An existing file of
    /// that kind there is replaced; anything else (the image, the key, a device, a directory)
    /// is refused.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The image to sign.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Cose,
    Aws,
}

/// `IMAGE` with `suffix` added: where the signature goes by default.
fn beside(image: &std::path::Path, suffix: &str) -> PathBuf {
    let mut path = image.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

pub fn run(args: SignArgs) -> anyhow::Result<()> {
    if args.format == Format::Aws {
        return sign_for_aws(&args);
    }
    if let Some(version) = &args.version {
        if version.chars().any(rocky::text::is_unprintable) {
            anyhow::bail!("--version must be printable: it holds a control character (a tab, a newline…)");
        }
        if version.len() > rocky::protocol::MAX_VERSION_BYTES {
            anyhow::bail!("--version must be at most {} bytes", rocky::protocol::MAX_VERSION_BYTES);
        }
    }
    let key = read_signing_key(&args.key)?;
    let bytes =
        std::fs::read(&args.image).with_context(|| format!("cannot read {}", args.image.display()))?;
    if bytes.is_empty() {
        anyhow::bail!("{} is empty", args.image.display());
    }
    let image = Image::new(args.image.display().to_string(), bytes.into());
    let payload = ManifestPayload {
        image_sha256: *image.sha256(),
        size: image.size(),
        version: args.version,
        seq: args.seq,
    };
    let manifest = Manifest::sign(payload, &key);
    let out = args.out.clone().unwrap_or_else(|| beside(&args.image, ".cose"));
    check_out(&out, &args.image, &args.key)?;
    rocky::firmware::write_atomically(&out, manifest.bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("manifest: {}", out.display());
    println!("sha256: {}", sha256_hex(image.sha256()));
    println!("size: {}", image.size());
    println!("kid: {} ({})", manifest.kid(), manifest.alg());
    println!("seq: {}", args.seq);
    Ok(())
}

/// `--format aws`: base64 of the DER ECDSA P-256 signature over the image, a line of text.
fn sign_for_aws(args: &SignArgs) -> anyhow::Result<()> {
    if args.version.is_some() || args.seq != 0 {
        anyhow::bail!(
            "--version and --seq go into a COSE manifest: AWS's OTA agent checks the signature alone (leave them out with --format aws)"
        );
    }
    let key = read_signing_key(&args.key)?;
    let bytes =
        std::fs::read(&args.image).with_context(|| format!("cannot read {}", args.image.display()))?;
    if bytes.is_empty() {
        anyhow::bail!("{} is empty", args.image.display());
    }
    let signature = rocky::signing::aws_signature(&key, &bytes)?;
    let out = args.out.clone().unwrap_or_else(|| beside(&args.image, ".sig-sha256-ecdsa"));
    check_out(&out, &args.image, &args.key)?;
    rocky::firmware::write_atomically(&out, format!("{signature}\n").as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let image = Image::new(args.image.display().to_string(), bytes.into());
    println!("sig-sha256-ecdsa: {}", out.display());
    println!("sha256: {}", sha256_hex(image.sha256()));
    println!("size: {}", image.size());
    println!("kid: {} ({})", key.kid(), key.alg());
    Ok(())
}

/// The manifest may replace an earlier manifest (a regular file), never the image, the key, a
/// device node or a directory, and its directory must exist (nothing is created).
fn check_out(out: &std::path::Path, image: &std::path::Path, key: &std::path::Path) -> anyhow::Result<()> {
    let same = |other: &std::path::Path| match (std::fs::canonicalize(out), std::fs::canonicalize(other)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(image) || same(key) {
        anyhow::bail!("--out {} is the image or the key itself: name another file", out.display());
    }
    match std::fs::symlink_metadata(out) {
        Ok(meta) if !meta.file_type().is_file() => {
            anyhow::bail!(
                "--out {} exists and is not a regular file: Rocky does not replace it",
                out.display()
            )
        }
        _ => {}
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        anyhow::bail!("--out {}: the directory {} does not exist", out.display(), dir.display());
    }
    Ok(())
}
