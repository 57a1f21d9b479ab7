use super::vendor::SecretKey;
use super::*;

const INSTANCE: &str = "c6f93da1-57db-4c4e-b6ac-ff35f41227c6";

fn now() -> DateTime<Utc> {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

fn claims(expires: Option<&str>) -> Claims {
    Claims {
        plugin: "licensed".into(),
        instance: INSTANCE.into(),
        licensee: Some("ACME".into()),
        issued_at: "2026-11-30T08:00:00Z".parse().unwrap(),
        expires: expires.map(|d| d.parse().unwrap()),
        extra: serde_json::Map::new(),
    }
}

fn signed(expires: Option<&str>) -> (SecretKey, String) {
    let key = SecretKey::generate().unwrap();
    let line = key.sign(&claims(expires)).unwrap();
    (key, line)
}

fn verify(line: &str, key: &PublicKey) -> Result<License, LicenseError> {
    License::verify(line, key, INSTANCE, "licensed", now())
}

#[test]
fn a_signed_licence_verifies_and_says_what_it_holds() {
    let (key, line) = signed(Some("2027-12-31"));
    assert!(line.starts_with("toru-license-v1."));
    let license = verify(&line, &key.public()).unwrap();
    assert_eq!(license.claims.licensee.as_deref(), Some("ACME"));
    assert_eq!(
        license.claims.expires_at().unwrap().to_rfc3339(),
        "2028-01-01T00:00:00+00:00"
    );
    assert_eq!(license.text(), line);
    // Upper-case instance ids are the same instance.
    License::verify(
        &line,
        &key.public(),
        &INSTANCE.to_uppercase(),
        "licensed",
        now(),
    )
    .unwrap();
}

#[test]
fn keys_read_back_as_written() {
    let key = SecretKey::generate().unwrap();
    let public = key.public().to_string();
    assert!(
        public.starts_with("ed25519:") && public.len() == 8 + 43,
        "{public}"
    );
    assert_eq!(public.parse::<PublicKey>().unwrap(), key.public());
    let again = SecretKey::from_text(&key.to_text()).unwrap();
    assert_eq!(again.public(), key.public());
    for bad in [
        "",
        "ed25519:",
        "ed25519:abc",
        "rsa:AAAA",
        &format!("ed25519:{}", "A".repeat(44)),
        "ed25519:!!!!",
    ] {
        assert!(
            matches!(bad.parse::<PublicKey>(), Err(LicenseError::BadKey(_))),
            "{bad:?}"
        );
    }
    assert!(SecretKey::from_text("ed25519:AAAA").is_err());
}

#[test]
fn another_vendor_s_key_or_a_flipped_bit_is_a_bad_signature() {
    let (key, line) = signed(None);
    let other = SecretKey::generate().unwrap();
    assert_eq!(
        verify(&line, &other.public()),
        Err(LicenseError::BadSignature)
    );
    // Flip every bit of the payload and the signature in turn (well, one per byte).
    let (head, _) = line.split_at(PREFIX.len());
    let body = line.as_bytes()[PREFIX.len()..].to_vec();
    for at in 0..body.len() {
        if body[at] == b'.' {
            continue;
        }
        let mut changed = body.clone();
        changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
        let text = format!("{head}{}", String::from_utf8(changed).unwrap());
        if text == line {
            continue;
        }
        match verify(&text, &key.public()) {
            Err(LicenseError::BadSignature | LicenseError::Malformed(_)) => {}
            other => panic!("byte {at}: {other:?}"),
        }
    }
}

#[test]
fn another_instance_another_plugin_expired_or_future() {
    let (key, line) = signed(Some("2026-12-01"));
    let public = key.public();
    assert!(matches!(
        License::verify(
            &line,
            &public,
            "00000000-0000-4000-8000-000000000000",
            "licensed",
            now()
        ),
        Err(LicenseError::OtherInstance { .. })
    ));
    assert!(matches!(
        License::verify(&line, &public, INSTANCE, "other", now()),
        Err(LicenseError::OtherPlugin { .. })
    ));
    // Valid through its last day, not after.
    let last_second: DateTime<Utc> = "2026-12-01T23:59:59Z".parse().unwrap();
    License::verify(&line, &public, INSTANCE, "licensed", last_second).unwrap();
    let next_day: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().unwrap();
    assert_eq!(
        License::verify(&line, &public, INSTANCE, "licensed", next_day),
        Err(LicenseError::Expired("2026-12-01".parse().unwrap()))
    );
    let before: DateTime<Utc> = "2026-11-29T00:00:00Z".parse().unwrap();
    assert!(matches!(
        License::verify(&line, &public, INSTANCE, "licensed", before),
        Err(LicenseError::NotYetValid(_))
    ));
}

#[test]
fn malformed_lines_say_what_is_wrong() {
    let (key, line) = signed(None);
    let public = key.public();
    let payload_json = |json: &str| {
        let signature = line.rsplit('.').next().unwrap();
        format!("{PREFIX}{}.{signature}", B64.encode(json))
    };
    let cases = [
        ("".to_owned(), "does not start"),
        ("hello".to_owned(), "does not start"),
        (format!("{PREFIX}abc"), "no signature"),
        (format!("{PREFIX}!!!.AAAA"), "payload is not base64url"),
        (format!("{PREFIX}AAAA.!!!"), "signature is not base64url"),
        (format!("{PREFIX}AAAA.AAAA"), "not 64"),
        (
            format!("{PREFIX}{}.{}", "A".repeat(MAX_LEN), "A"),
            "more than",
        ),
    ];
    for (text, needle) in cases {
        match verify(&text, &public) {
            Err(LicenseError::Malformed(why)) => assert!(why.contains(needle), "{text:.40}: {why}"),
            other => panic!("{text:.40}: {other:?}"),
        }
    }
    // A payload that is not JSON, or not a licence's, read without a signature check.
    for json in ["not json", "[1,2]", r#"{"plugin":"x"}"#] {
        assert!(
            matches!(
                License::read_unverified(&payload_json(json)),
                Err(LicenseError::Malformed(_))
            ),
            "{json}"
        );
    }
    // A 1 MB payload is refused before anything is decoded.
    let huge = format!("{PREFIX}{}.{}", "A".repeat(1 << 20), "A".repeat(86));
    assert!(matches!(
        verify(&huge, &public),
        Err(LicenseError::Malformed(_))
    ));
}

#[test]
fn unknown_payload_fields_are_kept_and_ignored() {
    let key = SecretKey::generate().unwrap();
    let mut with_extra = claims(None);
    with_extra
        .extra
        .insert("seats".into(), serde_json::json!(25));
    let line = key.sign(&with_extra).unwrap();
    let license = verify(&line, &key.public()).unwrap();
    assert_eq!(license.claims.extra["seats"], 25);
}

#[test]
fn the_documented_test_vector_verifies() {
    let doc = include_str!("../../../docs/LICENSES.md");
    let line = doc
        .lines()
        .find(|l| l.starts_with(PREFIX) && l.len() > 100)
        .expect("docs/LICENSES.md has a test vector");
    let key: PublicKey = "ed25519:fAuNr_SOZT8gS9aM2uaVvzLXSFmKipBP2fb3lR8Czsc"
        .parse()
        .unwrap();
    let then: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
    let license = License::verify(
        line,
        &key,
        "c6f93da1-57db-4c4e-b6ac-ff35f41227c6",
        "licensed",
        then,
    )
    .unwrap();
    assert_eq!(license.claims.licensee.as_deref(), Some("ACME Ltd"));
    assert_eq!(license.claims.expires.unwrap().to_string(), "2027-06-30");
    // The decoded payload the document shows is the one signed.
    let (payload, _) = split(line).unwrap();
    let shown = doc
        .lines()
        .find(|l| l.starts_with("{\"plugin\":\"licensed\""))
        .unwrap();
    assert_eq!(String::from_utf8(payload).unwrap(), shown);
}
