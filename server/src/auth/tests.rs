use super::*;
use secrecy::SecretString;

fn authenticator(secret: &str) -> Authenticator {
    let config = AuthConfig {
        jwt_secret: Some(SecretString::from(secret.to_owned())),
        api_keys: vec![SecretString::from("key-1".to_owned())],
        ..AuthConfig::default()
    };
    Authenticator::from_config(&config).unwrap()
}

fn provider() -> Principal {
    Principal {
        user: UserId::from("dr-lee"),
        role: Role::Provider,
        clinic: ClinicId::from("clinic-1"),
    }
}

#[test]
fn issued_tokens_verify_to_the_same_principal() {
    let auth = authenticator("s3cret");
    let token = auth.issue(&provider(), 60).unwrap();
    assert_eq!(auth.verify(&token).unwrap(), provider());
}

#[test]
fn a_token_signed_with_another_key_is_invalid() {
    let token = authenticator("other").issue(&provider(), 60).unwrap();
    assert!(matches!(
        authenticator("s3cret").verify(&token),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn an_expired_token_is_reported_as_expired() {
    let auth = authenticator("s3cret");
    let claims = Claims {
        sub: "dr-lee".into(),
        role: Role::Provider,
        clinic: "clinic-1".into(),
        iat: 1,
        exp: 2,
        nbf: None,
        iss: None,
        aud: None,
        jti: None,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap();
    assert_eq!(auth.verify(&token), Err(AuthError::Expired));
}

#[test]
fn garbage_is_invalid_not_a_panic() {
    assert!(matches!(
        authenticator("s3cret").verify("not.a.token"),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn api_keys_match_exactly() {
    let auth = authenticator("s3cret");
    assert!(auth.check_api_key("key-1"));
    assert!(!auth.check_api_key("key-2"));
    assert!(!auth.check_api_key(""));
}

/// An authenticator with `adjust` applied to its settings, and a signer
/// for hand-made claims with the same secret.
fn configured(adjust: impl FnOnce(&mut AuthConfig)) -> (Authenticator, impl Fn(&Claims) -> String) {
    let mut config = AuthConfig {
        jwt_secret: Some(SecretString::from("s3cret".to_owned())),
        api_keys: vec![SecretString::from("key-1".to_owned())],
        leeway_secs: 5,
        ..AuthConfig::default()
    };
    adjust(&mut config);
    let sign = |claims: &Claims| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    };
    (Authenticator::from_config(&config).unwrap(), sign)
}

fn claims_now(lifetime: u64) -> Claims {
    let now = unix_now();
    Claims {
        sub: "dr-lee".into(),
        role: Role::Provider,
        clinic: "clinic-1".into(),
        iat: now,
        exp: now + lifetime,
        nbf: None,
        iss: None,
        aud: None,
        jti: None,
    }
}

fn is_invalid(result: Result<Principal, AuthError>) -> bool {
    matches!(result, Err(AuthError::Invalid(_)))
}

#[test]
fn not_before_in_the_future_is_refused_and_honoured_once_passed() {
    let (auth, sign) = configured(|_| {});
    let mut claims = claims_now(600);
    claims.nbf = Some(unix_now() + 60);
    assert!(is_invalid(auth.verify(&sign(&claims))));
    claims.nbf = Some(unix_now() - 1);
    assert_eq!(auth.verify(&sign(&claims)).unwrap(), provider());
}

#[test]
fn issued_in_the_future_beyond_the_leeway_is_refused() {
    let (auth, sign) = configured(|_| {});
    let mut claims = claims_now(600);
    claims.iat = unix_now() + 60;
    assert!(is_invalid(auth.verify(&sign(&claims))));
    claims.iat = unix_now() + 2;
    assert_eq!(
        auth.verify(&sign(&claims)).unwrap(),
        provider(),
        "within the leeway"
    );
}

#[test]
fn a_token_living_longer_than_the_maximum_is_refused() {
    let (auth, sign) = configured(|config| config.max_token_lifetime_secs = 3_600);
    assert!(is_invalid(auth.verify(&sign(&claims_now(3_601)))));
    assert_eq!(auth.verify(&sign(&claims_now(3_600))).unwrap(), provider());
}

#[test]
fn an_audience_is_ignored_unless_configured_and_then_required() {
    let mut with_aud = claims_now(600);
    with_aud.aud = Some(serde_json::json!(["platform-api", "consult-hub"]));
    let (open, sign) = configured(|_| {});
    assert_eq!(open.verify(&sign(&with_aud)).unwrap(), provider());

    let (strict, sign) = configured(|config| config.audience = Some("consult-hub".to_owned()));
    assert_eq!(strict.verify(&sign(&with_aud)).unwrap(), provider());
    assert!(is_invalid(strict.verify(&sign(&claims_now(600)))), "no aud");
    let mut other = claims_now(600);
    other.aud = Some(serde_json::json!("billing"));
    assert!(is_invalid(strict.verify(&sign(&other))));
    // What the hub issues carries the configured audience.
    let issued = strict.issue(&provider(), 60).unwrap();
    assert_eq!(strict.verify(&issued).unwrap(), provider());
}

#[test]
fn an_issuer_when_configured_is_required_and_checked() {
    let (auth, sign) = configured(|config| config.issuer = Some("https://idp.example".to_owned()));
    assert!(is_invalid(auth.verify(&sign(&claims_now(600)))), "no iss");
    let mut claims = claims_now(600);
    claims.iss = Some("https://elsewhere.example".to_owned());
    assert!(is_invalid(auth.verify(&sign(&claims))));
    claims.iss = Some("https://idp.example".to_owned());
    assert_eq!(auth.verify(&sign(&claims)).unwrap(), provider());
    let issued = auth.issue(&provider(), 60).unwrap();
    assert_eq!(auth.verify(&issued).unwrap(), provider());
}
