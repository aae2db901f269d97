//! `rocky keys generate` and `rocky keys show`: the signing keys of the manifest extension. A
//! private key is written once, owner-only, and never printed; only its public half and key id
//! are.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use rocky::signing::{Alg, PublicKey, SigningKey, read_signing_key, write_new_signing_key};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new private key (PKCS#8 PEM, mode 0600; an existing file is never overwritten)
    /// and print its public half and key id.
    Generate {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// ed25519 (the default) or es256 (ECDSA P-256).
        #[arg(long, default_value = "ed25519", value_parser = parse_alg)]
        alg: Alg,
    },
    /// Print the public half of a private key file, a public key (PEM or hex) file, or a
    /// certificate's key.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write a self-signed code-signing certificate of an ES256 key: what a device running
    /// AWS's OTA agent checks `sig-sha256-ecdsa` with (put it where `[aws_ota] certfile` says).
    Cert {
        /// The ES256 private key (PKCS#8 PEM, as `rocky keys generate --alg es256` writes it).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the certificate (PEM; an existing file is never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The certificate's common name.
        #[arg(long, value_name = "NAME", default_value = "rocky code signing")]
        cn: String,
        /// Days it is valid from today.
        #[arg(long, value_name = "N", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
    },
}

fn parse_alg(text: &str) -> Result<Alg, String> {
    text.parse()
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Generate { out, alg } => {
            let key = SigningKey::generate(alg)?;
            write_new_signing_key(&out, &key)?;
            println!("# private key written to {} (mode 0600): keep it secret", out.display());
            print_public(&key.public());
        }
        KeysCommand::Cert { key, out, cn, days } => {
            let key = read_signing_key(&key)?;
            let pem = code_signing_certificate(&key, &cn, days)?;
            write_new_file(&out, pem.as_bytes())?;
            println!("# code-signing certificate written to {} ({cn}, {days} days)", out.display());
            print_public(&key.public());
        }
        KeysCommand::Show { file } => {
            let public = match read_signing_key(&file) {
                Ok(key) => key.public(),
                Err(private_error) => {
                    // Perhaps a public key: those are not secret, but the text is not repeated.
                    let text = std::fs::read_to_string(&file).map_err(|_| private_error)?;
                    if text.contains("BEGIN CERTIFICATE") {
                        let public = PublicKey::from_certificate_pem(&text)
                            .map_err(|e| anyhow::anyhow!("{}: a certificate, but {e}", file.display()))?;
                        print_public(&public);
                        return Ok(());
                    }
                    if text.contains("PRIVATE KEY") {
                        anyhow::bail!(
                            "{} is a private key Rocky cannot read: it reads PKCS#8 Ed25519 or P-256 keys \
                             (convert a P-256 key with `openssl pkcs8 -topk8 -nocrypt`)",
                            file.display()
                        );
                    }
                    PublicKey::parse(&text).map_err(|e| {
                        anyhow::anyhow!("{} is neither a private nor a public key: {e}", file.display())
                    })?
                }
            };
            print_public(&public);
        }
    }
    Ok(())
}

/// The public key in every form `firmware.trusted_keys` and a device take.
fn print_public(public: &PublicKey) {
    println!("alg: {}", public.alg());
    println!("kid: {}", public.kid());
    println!("public key (hex): {}", public.hex());
    print!("{}", public.pem());
}

/// A self-signed X.509 certificate (PEM) of `key` for code signing: digital signatures only,
/// extended key usage codeSigning, valid from today for `days` days. The agent reads the key
/// from it and checks ECDSA P-256 signatures, so only an ES256 key will do.
fn code_signing_certificate(key: &SigningKey, cn: &str, days: u32) -> anyhow::Result<String> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    if key.public().alg() != Alg::Es256 {
        anyhow::bail!(
            "the key is {}: AWS's OTA agent checks ECDSA P-256 signatures; make one with rocky keys generate \
             --alg es256",
            key.public().alg()
        );
    }
    if cn.is_empty() || cn.len() > 64 || cn.chars().any(char::is_control) {
        anyhow::bail!("--cn must be 1 to 64 printable bytes");
    }
    let pem = key.to_pkcs8_pem().ok_or_else(|| anyhow::anyhow!("the key cannot be written as PKCS#8"))?;
    let pair = KeyPair::from_pem(pem.as_str()).map_err(|e| anyhow::anyhow!("the key does not load: {e}"))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let until = today.checked_add(jiff::Span::new().days(i64::from(days)))?;
    let ymd = |date: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(date.year()), date.month() as u8, date.day() as u8)
    };
    params.not_before = ymd(today);
    params.not_after = ymd(until);
    let certificate = params.self_signed(&pair)?;
    Ok(certificate.pem())
}

/// Writes `bytes` to a new file; an existing one is never overwritten.
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}
