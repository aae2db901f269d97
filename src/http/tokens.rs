//! API tokens with names and roles: the single `http.token_file` token (an admin named
//! `default`) and `http.tokens_file`, a TOML file of `[[token]]` entries holding each token's
//! SHA-256 (so the file holds no secret). Read again on SIGHUP; a bad file is refused by line
//! and the tokens already loaded stay.
//!
//! A presented token is hashed and compared with every entry in constant time, so neither which
//! entry matched nor a token's content leaks through response timing.

use std::sync::{Arc, RwLock};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: jobs, devices, rollouts, firmware, `/events`, `/metrics`.
    Viewer,
    /// Also jobs, rollouts, devices and uploads.
    Operator,
    /// Also firmware manifests and signing with Rocky's key.
    Admin,
}

impl Role {
    /// `a viewer`, `an operator`, `an admin`.
    pub fn with_article(self) -> &'static str {
        match self {
            Self::Viewer => "a viewer",
            Self::Operator => "an operator",
            Self::Admin => "an admin",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// Who called: the token's name (the audit's actor) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The longest token name, in bytes.
const MAX_NAME: usize = 64;
/// The most entries a tokens file may hold.
pub const MAX_TOKENS: usize = 1000;

#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    role: Role,
    sha256: String,
}

/// The tokens this Rocky accepts. Cheap to clone: the copies share one table, which a reload
/// replaces whole.
#[derive(Clone)]
pub struct Token {
    default: Option<Entry>,
    file: Arc<RwLock<Vec<Entry>>>,
}

impl Token {
    /// The single configured token: an admin named `default`.
    pub fn new(secret: &crate::secret::Secret) -> Self {
        let default = Entry {
            name: "default".into(),
            role: Role::Admin,
            digest: Sha256::digest(secret.expose().as_bytes()).into(),
        };
        Self { default: Some(default), file: Arc::default() }
    }

    /// The tokens of a tokens file (its text), beside the single token if there is one.
    pub fn with_file(default: Option<&crate::secret::Secret>, text: &str) -> Result<Self, String> {
        let token = Self { default: default.map(Self::new).and_then(|t| t.default), file: Arc::default() };
        token.replace(text)?;
        Ok(token)
    }

    /// Takes the tokens of `text` in place of the file's (the single token stays); on an error
    /// nothing changes. Answers how many the file holds.
    pub fn replace(&self, text: &str) -> Result<usize, String> {
        let entries = parse(text)?;
        if let Some(default) = &self.default
            && entries.iter().any(|e| e.name == default.name)
        {
            return Err("the name \"default\" is the single token's (http.token_file)".into());
        }
        let count = entries.len();
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = entries;
        Ok(count)
    }

    /// The caller whose token `presented` is, if any.
    pub fn accepts(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let file = self.file.read().unwrap_or_else(|p| p.into_inner());
        // Every entry is compared, whichever matches.
        let mut found = None;
        for entry in self.default.iter().chain(file.iter()) {
            if bool::from(digest.ct_eq(&entry.digest)) && found.is_none() {
                found = Some(Caller { name: entry.name.clone(), role: entry.role });
            }
        }
        found
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(set)")
    }
}

/// The entries of a tokens file, or what is wrong with it, by line.
fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = e.message().to_owned();
        match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        }
    })?;
    if file.token.len() > MAX_TOKENS {
        return Err(format!("{} tokens; a tokens file holds at most {MAX_TOKENS}", file.token.len()));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(file.token.len());
    for (number, entry) in file.token.into_iter().enumerate() {
        let which = format!("token {} ({:?})", number + 1, entry.name);
        let name = entry.name.trim().to_owned();
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(crate::text::is_unprintable) {
            return Err(format!("{which}: a name is 1 to {MAX_NAME} printable bytes"));
        }
        let digest: [u8; 32] = hex::decode(entry.sha256.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| format!("{which}: sha256 is the token's SHA-256 in 64 hex digits"))?;
        if entries.iter().any(|e| e.name == name) {
            return Err(format!("{which}: the name is used twice"));
        }
        if entries.iter().any(|e| e.digest == digest) {
            return Err(format!("{which}: the same token as another entry"));
        }
        entries.push(Entry { name, role: entry.role, digest });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn tokens_are_found_by_their_hash_with_their_name_and_role() {
        let text = format!(
            "[[token]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"{}\"\n\n[[token]]\nname = \"watcher\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            sha("ci-secret"),
            sha("look-only")
        );
        let secret = crate::secret::Secret::from_env("ROCKY_HTTP_TOKEN", "root-secret".into()).unwrap();
        let token = Token::with_file(Some(&secret), &text).unwrap();
        assert_eq!(token.accepts("ci-secret"), Some(Caller { name: "ci".into(), role: Role::Operator }));
        assert_eq!(token.accepts("look-only").map(|c| c.role), Some(Role::Viewer));
        assert_eq!(token.accepts("root-secret"), Some(Caller { name: "default".into(), role: Role::Admin }));
        assert_eq!(token.accepts("ci-secre"), None);
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!(!text.contains("ci-secret"), "the file holds hashes only");
    }

    #[test]
    fn a_bad_file_is_refused_by_line_and_the_loaded_tokens_stay() {
        let good = format!("[[token]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"{}\"\n", sha("a"));
        let token = Token::with_file(None, &good).unwrap();
        let bad_role = format!("[[token]]\nname = \"ci\"\nrole = \"root\"\nsha256 = \"{}\"\n", sha("b"));
        let error = token.replace(&bad_role).unwrap_err();
        assert!(error.starts_with("line 3:") && error.contains("root"), "{error}");
        assert!(token.accepts("a").is_some(), "still loaded");
        let cases = [
            ("[[token]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"abc\"\n".to_owned(), "64 hex digits"),
            (
                format!("[[token]]\nname = \"\"\nrole = \"admin\"\nsha256 = \"{}\"\n", sha("c")),
                "a name is 1 to 64",
            ),
            (format!("{good}{good}"), "the name is used twice"),
            (
                format!("{good}[[token]]\nname = \"other\"\nrole = \"admin\"\nsha256 = \"{}\"\n", sha("a")),
                "the same token",
            ),
            ("[[token]]\nname = \"x\"\n".to_owned(), "missing field"),
            ("[[tokens]]\n".to_owned(), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = token.replace(&text).unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let secret = crate::secret::Secret::from_env("ROCKY_HTTP_TOKEN", "s".into()).unwrap();
        let default =
            format!("[[token]]\nname = \"default\"\nrole = \"viewer\"\nsha256 = \"{}\"\n", sha("d"));
        assert!(Token::with_file(Some(&secret), &default).unwrap_err().contains("\"default\""));
    }
}
