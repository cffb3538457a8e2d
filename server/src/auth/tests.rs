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
