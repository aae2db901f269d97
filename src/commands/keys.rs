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
    /// Print the public half of a private key file, or of a public key (PEM or hex) file.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
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
        KeysCommand::Show { file } => {
            let public = match read_signing_key(&file) {
                Ok(key) => key.public(),
                Err(private_error) => {
                    // Perhaps a public key: those are not secret, but the text is not repeated.
                    let text = std::fs::read_to_string(&file).map_err(|_| private_error)?;
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
