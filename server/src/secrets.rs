//! The generated-secrets file of the embedded default.
//!
//! When no JWT secret or API key is configured, the hub generates both once
//! and keeps them in `auth.key_file` (mode 0600), so `serve` and `token` agree
//! across restarts. It owns only reading and creating that file.

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The secrets kept in the key file.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct GeneratedSecrets {
    pub(crate) jwt_secret: String,
    pub(crate) api_key: String,
}

impl std::fmt::Debug for GeneratedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedSecrets { .. }")
    }
}

/// Reads the key file, creating it with fresh random secrets if missing.
pub(crate) fn load_or_create(path: &Path) -> std::io::Result<GeneratedSecrets> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml_decode(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a consult-hub key file", path.display()),
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let secrets = GeneratedSecrets {
                jwt_secret: random_string(48),
                api_key: format!("chk_{}", random_string(40)),
            };
            write_private(path, &toml_encode(&secrets))?;
            Ok(secrets)
        }
        Err(error) => Err(error),
    }
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn toml_encode(secrets: &GeneratedSecrets) -> String {
    format!(
        "# consult-hub generated secrets; keep private\njwt_secret = \"{}\"\napi_key = \"{}\"\n",
        secrets.jwt_secret, secrets.api_key
    )
}

fn toml_decode(text: &str) -> Option<GeneratedSecrets> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (name, rest) = line.split_once('=')?;
            (name.trim() == key).then(|| rest.trim().trim_matches('"').to_owned())
        })
    };
    Some(GeneratedSecrets {
        jwt_secret: value("jwt_secret").filter(|s| !s.is_empty())?,
        api_key: value("api_key").filter(|s| !s.is_empty())?,
    })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reads_back_the_same_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.key");
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert_eq!(first.api_key, second.api_key);
        assert!(first.api_key.starts_with("chk_"));
    }

    #[test]
    fn a_foreign_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.key");
        std::fs::write(&path, "hello").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
