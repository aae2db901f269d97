//! The signature algorithms a manifest may use, by their COSE numbers (RFC 9053).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    /// EdDSA with Ed25519 (COSE −8).
    #[serde(rename = "EdDSA")]
    Ed25519,
    /// ECDSA with P-256 and SHA-256 (COSE −7); signatures are r‖s, 64 bytes.
    #[serde(rename = "ES256")]
    Es256,
}

impl Alg {
    /// The COSE algorithm number in the protected header.
    pub fn cose(self) -> i64 {
        match self {
            Self::Ed25519 => -8,
            Self::Es256 => -7,
        }
    }

    pub fn from_cose(number: i64) -> Option<Self> {
        match number {
            -8 => Some(Self::Ed25519),
            -7 => Some(Self::Es256),
            _ => None,
        }
    }

    /// The name COSE gives it, as shown in job JSON and the console.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "EdDSA",
            Self::Es256 => "ES256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `ed25519` or `es256` (as `rocky keys generate --alg` takes them), or the COSE names.
impl FromStr for Alg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "ed25519" | "eddsa" => Ok(Self::Ed25519),
            "es256" | "p256" | "p-256" => Ok(Self::Es256),
            _ => Err(format!("unknown algorithm {text:?}: expected ed25519 or es256")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cose_numbers_and_names_round_trip() {
        for alg in [Alg::Ed25519, Alg::Es256] {
            assert_eq!(Alg::from_cose(alg.cose()), Some(alg));
            assert_eq!(alg.name().parse::<Alg>(), Ok(alg));
        }
        assert_eq!(Alg::from_cose(-35), None);
        assert!("rsa".parse::<Alg>().unwrap_err().contains("ed25519 or es256"));
    }
}
