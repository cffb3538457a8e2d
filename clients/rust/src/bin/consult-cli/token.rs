//! Where the credentials come from, and what the URL may not carry.
//!
//! The token is read from a file or the `CONSULT_TOKEN` environment
//! variable only, and travels only inside `hello`: a URL with a query,
//! fragment or user info is refused, so no token ends up in proxy or
//! access logs.

use crate::failure::Failure;
use std::path::Path;

/// The environment variable holding the token when no file is given.
pub(crate) const TOKEN_ENV: &str = "CONSULT_TOKEN";

/// The token from `file` if given, else from `env_value` (the value of
/// [`TOKEN_ENV`]); surrounding whitespace is trimmed.
pub(crate) fn resolve_token(
    file: Option<&Path>,
    env_value: Option<String>,
) -> Result<String, Failure> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| {
            Failure::new(
                "token_file",
                format!("cannot read {}: {error}", path.display()),
            )
        })?,
        None => env_value.ok_or_else(|| {
            Failure::new(
                "token_missing",
                format!("no token: pass --token-file PATH or set {TOKEN_ENV}"),
            )
        })?,
    };
    let token = token.trim();
    if token.is_empty() {
        let source = file.map_or_else(|| TOKEN_ENV.to_owned(), |p| p.display().to_string());
        return Err(Failure::new("token_missing", format!("{source} is empty")));
    }
    Ok(token.to_owned())
}

/// Accepts `ws://` and `wss://` URLs without credentials, query or
/// fragment.
pub(crate) fn check_url(url: &str) -> Result<(), Failure> {
    let invalid = |why: &str| Err(Failure::new("invalid_url", format!("{url}: {why}")));
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return invalid("must start with ws:// or wss://");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return invalid("no host");
    }
    if authority.contains('@') {
        return invalid("credentials do not belong in the URL; use --token-file or CONSULT_TOKEN");
    }
    if url.contains('?') || url.contains('#') {
        return invalid("no query or fragment: the token goes only in hello");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
