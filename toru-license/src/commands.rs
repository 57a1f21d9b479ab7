//! The commands that make and read keys and licences.

use std::path::Path;

use chrono::{NaiveDate, SubsecRound, Utc};
use serde_json::{Value, json};
use toru_plugin_api::license::vendor::SecretKey;
use toru_plugin_api::license::{Claims, License, MAX_LEN};
use toru_plugin_api::protocol::metadata::validate_id;

use crate::{Command, Failure, files};

/// The longest licensee name.
const MAX_LICENSEE: usize = 200;

/// Runs `command` (not the local ones: completions and man pages).
pub(crate) fn run(command: &Command, json: bool) -> Result<(), Failure> {
    match command {
        Command::Keygen { file } => keygen(file),
        Command::PublicKey { key } => {
            println!("{}", files::read_secret(key)?.public());
            Ok(())
        }
        Command::Sign {
            key,
            plugin,
            instance,
            expires,
            licensee,
            out,
        } => {
            let claims = claims(plugin, instance, expires.as_deref(), licensee.as_deref())?;
            let key = files::read_secret(key)?;
            let line = key
                .sign(&claims)
                .map_err(|e| Failure::Failed(format!("cannot encode the licence: {e}")))?;
            if line.len() > MAX_LEN {
                return Err(Failure::Failed(format!(
                    "the licence would be {} bytes, more than the {MAX_LEN} a licence may be",
                    line.len()
                )));
            }
            let shown = if json {
                json!({ "license": line, "claims": claims }).to_string()
            } else {
                line.clone()
            };
            match out {
                Some(path) => {
                    files::write(path, &line)?;
                    eprintln!(
                        "toru-license: licence of {} for instance {} written to {}",
                        claims.plugin,
                        claims.instance,
                        path.display()
                    );
                    if json {
                        println!("{shown}");
                    }
                }
                None => println!("{shown}"),
            }
            Ok(())
        }
        Command::Inspect { file } => inspect(file, json),
        Command::Verify {
            file,
            public_key,
            plugin,
            instance,
            at,
        } => verify(
            file,
            public_key,
            plugin.as_deref(),
            instance.as_deref(),
            at.as_deref(),
            json,
        ),
        Command::Completions { .. } | Command::GenerateMan { .. } => Err(Failure::Usage(
            "this command is handled before the others".into(),
        )),
    }
}

/// `keygen FILE`: the secret key in FILE, the public key in FILE.pub and on stdout.
fn keygen(file: &Path) -> Result<(), Failure> {
    let key = SecretKey::generate()
        .map_err(|e| Failure::Failed(format!("the OS gave no random bytes: {e}")))?;
    let public = key.public().to_string();
    let mut public_file = file.as_os_str().to_owned();
    public_file.push(".pub");
    let public_file = std::path::PathBuf::from(public_file);
    if public_file.exists() {
        return Err(Failure::Failed(format!(
            "{} exists: it is kept as it is (name another file)",
            public_file.display()
        )));
    }
    files::write_new(file, &key.to_text(), 0o600)?;
    files::write_new(&public_file, &public, 0o644)?;
    eprintln!(
        "toru-license: secret key written to {} (mode 0600): keep it private and keep a copy; \
         every licence is signed with it. The public key, also in {}, goes into the plugin's \
         metadata:",
        file.display(),
        public_file.display()
    );
    println!("{public}");
    Ok(())
}

/// The claims of a new licence, each argument checked.
fn claims(
    plugin: &str,
    instance: &str,
    expires: Option<&str>,
    licensee: Option<&str>,
) -> Result<Claims, Failure> {
    validate_id(plugin).map_err(|e| Failure::Usage(format!("--plugin: {e}")))?;
    let instance = uuid::Uuid::parse_str(instance.trim())
        .map_err(|e| {
            Failure::Usage(format!(
                "--instance {instance:?} is not an instance id (a UUID, as `toructl instance-id` \
                 prints it): {e}"
            ))
        })?
        .hyphenated()
        .to_string();
    let now = Utc::now();
    let expires = expires.map(|text| day(text, "--expires")).transpose()?;
    if let Some(last) = expires
        && last < now.date_naive()
    {
        return Err(Failure::Usage(format!(
            "--expires {last} is in the past: the licence would never be valid"
        )));
    }
    let licensee = licensee
        .map(|name| {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > MAX_LICENSEE {
                return Err(Failure::Usage(format!(
                    "--licensee must be 1 to {MAX_LICENSEE} characters"
                )));
            }
            if name.chars().any(char::is_control) {
                return Err(Failure::Usage(
                    "--licensee holds a control character".into(),
                ));
            }
            Ok(name.to_owned())
        })
        .transpose()?;
    Ok(Claims {
        plugin: plugin.to_owned(),
        instance,
        licensee,
        issued_at: now.trunc_subsecs(0),
        expires,
        extra: serde_json::Map::new(),
    })
}

/// `YYYY-MM-DD`.
fn day(text: &str, flag: &str) -> Result<NaiveDate, Failure> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|e| Failure::Usage(format!("{flag} {text:?} is not a day (YYYY-MM-DD): {e}")))
}

/// `inspect FILE`: the claims, said to be unchecked.
fn inspect(file: &Path, json: bool) -> Result<(), Failure> {
    let text = files::read_text(file, "licence")?;
    let license = License::read_unverified(&text).map_err(|e| Failure::Failed(e.to_string()))?;
    if json {
        let mut shown = serde_json::to_value(&license.claims)
            .map_err(|e| Failure::Failed(format!("cannot encode: {e}")))?;
        if let Value::Object(map) = &mut shown {
            map.insert("signature_checked".into(), Value::Bool(false));
        }
        println!("{shown}");
        return Ok(());
    }
    print_claims(&license.claims);
    println!("signature  not checked (`toru-license verify --public-key KEY` checks it)");
    Ok(())
}

/// `verify FILE --public-key KEY [--plugin ID] [--instance UUID] [--at DAY]`.
fn verify(
    file: &Path,
    public_key: &str,
    plugin: Option<&str>,
    instance: Option<&str>,
    at: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let key = files::read_public(public_key)?;
    let text = files::read_text(file, "licence")?;
    // What it claims to be for stands in for what was not asked.
    let claimed = License::read_unverified(&text).map_err(|e| Failure::Failed(e.to_string()))?;
    let plugin = plugin.unwrap_or(&claimed.claims.plugin);
    let instance = instance.unwrap_or(&claimed.claims.instance);
    let now = match at {
        Some(text) => day(text, "--at")?
            .and_hms_opt(12, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| Failure::Usage("--at: no such time".into()))?,
        None => Utc::now(),
    };
    match License::verify(&text, &key, instance, plugin, now) {
        Ok(license) => {
            if json {
                println!("{}", json!({ "valid": true, "claims": license.claims }));
            } else {
                print_claims(&license.claims);
                println!("signature  good: signed by {key}");
                println!("valid      yes, on {}", now.format("%Y-%m-%d"));
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!("{}", json!({ "valid": false, "error": e.to_string() }));
            }
            Err(Failure::Failed(format!("not valid: {e}")))
        }
    }
}

fn print_claims(claims: &Claims) {
    let expires = claims
        .expires
        .map_or_else(|| "never".to_owned(), |d| d.to_string());
    println!("plugin     {}", claims.plugin);
    println!("instance   {}", claims.instance);
    println!("licensee   {}", claims.licensee.as_deref().unwrap_or("-"));
    println!("issued_at  {}", claims.issued_at.to_rfc3339());
    println!("expires    {expires}");
    for (field, value) in &claims.extra {
        println!("{field:<10} {value}");
    }
}
