//! Browser sessions: a browser that presented the admin token once (`POST
//! /api/session`) carries a cookie instead of the token.
//!
//! A session is `<id>.<secret>` in the cookie `toru_session`: 16 random bytes
//! to find it, 32 random bytes compared in constant time. It ends after
//! `idle_timeout` without use, after `lifetime` in any case, at logout, and
//! with torud (sessions are kept in memory only). Failed logins are rate
//! limited for all clients together: a burst, then one try per interval.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::COOKIE;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "toru_session";
/// Sessions kept at once; the oldest goes when a new one would exceed this.
const MAX_SESSIONS: usize = 1024;
/// Failed logins allowed at once...
const LOGIN_BURST: f64 = 5.0;
/// ...then one per this long.
const LOGIN_INTERVAL: Duration = Duration::from_secs(2);

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionPolicy {
    /// Unused this long, a session ends.
    pub(crate) idle_timeout: Duration,
    /// A session ends this long after login, used or not.
    pub(crate) lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(3600),
            lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

struct Session {
    secret: [u8; 32],
    created: Instant,
    used: Instant,
}

/// Why a login was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginRefused {
    /// Too many wrong tokens lately: try again after this.
    Throttled(Duration),
    /// The token is wrong.
    WrongToken,
}

/// Every open session, and the failed-login bucket.
pub(crate) struct Sessions {
    policy: SessionPolicy,
    open: Mutex<HashMap<[u8; 16], Session>>,
    failures: Mutex<(f64, Instant)>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// No session yet.
    pub(crate) fn new(policy: SessionPolicy) -> Self {
        Self {
            policy,
            open: Mutex::new(HashMap::new()),
            failures: Mutex::new((LOGIN_BURST, Instant::now())),
        }
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Checks a login attempt against the rate limit first; `correct` says whether the
    /// token was right. A new session's cookie value when it was.
    pub(crate) fn login(&self, correct: bool) -> Result<String, LoginRefused> {
        {
            let mut bucket = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let refill = now.duration_since(bucket.1).as_secs_f64() / LOGIN_INTERVAL.as_secs_f64();
            bucket.0 = (bucket.0 + refill).min(LOGIN_BURST);
            bucket.1 = now;
            if bucket.0 < 1.0 {
                let wait = LOGIN_INTERVAL.mul_f64(1.0 - bucket.0);
                return Err(LoginRefused::Throttled(wait));
            }
            if !correct {
                bucket.0 -= 1.0;
                return Err(LoginRefused::WrongToken);
            }
        }
        let mut id = [0u8; 16];
        let mut secret = [0u8; 32];
        // Without randomness there is no safe session; getrandom fails only on a broken system.
        if getrandom::fill(&mut id).is_err() || getrandom::fill(&mut secret).is_err() {
            return Err(LoginRefused::WrongToken);
        }
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire(&mut open, now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(
            id,
            Session {
                secret,
                created: now,
                used: now,
            },
        );
        Ok(format!("{}.{}", hex(&id), hex(&secret)))
    }

    /// Whether `headers` carry the cookie of a live session; using it counts as activity.
    pub(crate) fn check(&self, headers: &HeaderMap) -> bool {
        let Some((id, secret)) = cookie(headers).and_then(parse) else {
            return false;
        };
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire(&mut open, now);
        match open.get_mut(&id) {
            Some(session) if bool::from(session.secret.ct_eq(&secret)) => {
                session.used = now;
                true
            }
            _ => false,
        }
    }

    /// Ends the session in `headers`, if any.
    pub(crate) fn logout(&self, headers: &HeaderMap) {
        if let Some((id, secret)) = cookie(headers).and_then(parse) {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            if open
                .get(&id)
                .is_some_and(|s| bool::from(s.secret.ct_eq(&secret)))
            {
                open.remove(&id);
            }
        }
    }

    fn expire(&self, open: &mut HashMap<[u8; 16], Session>, now: Instant) {
        let policy = self.policy;
        open.retain(|_, s| {
            now.duration_since(s.used) < policy.idle_timeout
                && now.duration_since(s.created) < policy.lifetime
        });
    }
}

/// The `toru_session` cookie's value in `headers`.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// `<32 hex>.<64 hex>` into its bytes; anything else is no session.
fn parse(value: &str) -> Option<([u8; 16], [u8; 32])> {
    let (id, secret) = value.split_once('.')?;
    Some((unhex(id)?, unhex(secret)?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `Set-Cookie` for a new session, or (with `None`) one that ends it.
pub(crate) fn set_cookie(value: Option<&str>, policy: SessionPolicy) -> String {
    match value {
        Some(value) => format!(
            "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            policy.lifetime.as_secs()
        ),
        None => format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE_NAME}={value}")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_session_opens_checks_and_closes() {
        let sessions = Sessions::new(SessionPolicy::default());
        let value = sessions.login(true).unwrap();
        assert_eq!(value.len(), 32 + 1 + 64);
        assert!(sessions.check(&with_cookie(&value)));
        sessions.logout(&with_cookie(&value));
        assert!(!sessions.check(&with_cookie(&value)));
    }

    #[test]
    fn forged_truncated_and_foreign_cookies_are_no_session() {
        let sessions = Sessions::new(SessionPolicy::default());
        let value = sessions.login(true).unwrap();
        let (id, secret) = value.split_once('.').unwrap();
        let mut flipped = secret.to_owned();
        flipped.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        for forged in [
            "",
            "x",
            id,
            &value[..value.len() - 1],
            &format!("{id}.{flipped}"),
            &format!("{}.{secret}", "0".repeat(32)),
            &format!("{value}0"),
            "zz.zz",
        ] {
            assert!(!sessions.check(&with_cookie(forged)), "{forged:?}");
        }
        assert!(!sessions.check(&HeaderMap::new()));
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_lifetime() {
        let idle = Sessions::new(SessionPolicy {
            idle_timeout: Duration::from_millis(50),
            lifetime: Duration::from_secs(60),
        });
        let value = idle.login(true).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert!(!idle.check(&with_cookie(&value)));

        let short = Sessions::new(SessionPolicy {
            idle_timeout: Duration::from_secs(60),
            lifetime: Duration::from_millis(100),
        });
        let value = short.login(true).unwrap();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(20));
            assert!(short.check(&with_cookie(&value)), "used, so not idle");
        }
        std::thread::sleep(Duration::from_millis(80));
        assert!(!short.check(&with_cookie(&value)), "past its lifetime");
    }

    #[test]
    fn wrong_tokens_are_throttled_after_a_burst() {
        let sessions = Sessions::new(SessionPolicy::default());
        for _ in 0..5 {
            assert_eq!(sessions.login(false), Err(LoginRefused::WrongToken));
        }
        assert!(matches!(
            sessions.login(false),
            Err(LoginRefused::Throttled(_))
        ));
        // Even the right token waits: the bucket is empty.
        assert!(matches!(
            sessions.login(true),
            Err(LoginRefused::Throttled(_))
        ));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_site_wide() {
        let cookie = set_cookie(Some("v"), SessionPolicy::default());
        assert_eq!(
            cookie,
            "toru_session=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
        );
        assert!(set_cookie(None, SessionPolicy::default()).contains("Max-Age=0"));
    }
}
