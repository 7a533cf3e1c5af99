//! Web sessions: random ids (256 bits) kept only as SHA-256 in memory, an idle and an absolute
//! expiry, a CSRF token per session, and a bound on sign-in attempts.
//!
//! The cookie is `fdmd_session=…; HttpOnly; SameSite=Strict; Path=/` (no `Secure`: the box
//! serves plain HTTP on the LAN, see docs/web.md). Every change made with a session must carry
//! the session's CSRF token in the `X-CSRF-Token` header.

use super::owner::{OwnerError, random_bytes, same};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "fdmd_session";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// No session lasts longer than this.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once (the oldest goes first).
const MAX_SESSIONS: usize = 64;
/// Failed sign-ins allowed per peer address within [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
/// The window of [`MAX_FAILURES`].
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failed sign-ins allowed from all peers together within [`FAILURE_WINDOW`].
const MAX_FAILURES_ALL: u32 = 30;

/// A live session, as a request sees it.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The session's CSRF token.
    pub csrf: String,
    /// Signed in with the set-up code: the owner still has to set a password.
    pub must_set_password: bool,
}

struct Session {
    csrf: String,
    created: Instant,
    last_used: Instant,
    must_set_password: bool,
}

struct Failures {
    since: Instant,
    count: u32,
}

/// Sessions and sign-in attempts.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    all_failures: Mutex<Option<Failures>>,
}

fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Sessions {
    /// Starts a session; returns (session id for the cookie, its CSRF token).
    pub fn create(&self, must_set_password: bool) -> Result<(String, String), OwnerError> {
        let id = hex::encode(random_bytes::<32>()?);
        let csrf = hex::encode(random_bytes::<32>()?);
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| live(s, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            key(&id),
            Session {
                csrf: csrf.clone(),
                created: now,
                last_used: now,
                must_set_password,
            },
        );
        Ok((id, csrf))
    }

    /// The live session of this id (and marks it used).
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(id);
        let s = sessions.get_mut(&k)?;
        if !live(s, now) {
            sessions.remove(&k);
            return None;
        }
        s.last_used = now;
        Some(SessionInfo {
            csrf: s.csrf.clone(),
            must_set_password: s.must_set_password,
        })
    }

    /// The owner set a password in this session.
    pub fn password_set(&self, id: &str) {
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&key(id))
        {
            s.must_set_password = false;
        }
    }

    /// Ends a session (sign-out).
    pub fn remove(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(id));
    }

    /// Whether `peer` may try to sign in now.
    pub fn may_try(&self, peer: IpAddr) -> bool {
        let now = Instant::now();
        let all_ok = self
            .all_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|f| {
                now.duration_since(f.since) > FAILURE_WINDOW || f.count < MAX_FAILURES_ALL
            });
        let peer_ok = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .is_none_or(|f| now.duration_since(f.since) > FAILURE_WINDOW || f.count < MAX_FAILURES);
        all_ok && peer_ok
    }

    /// Counts a failed sign-in of `peer`.
    pub fn failed(&self, peer: IpAddr) {
        let now = Instant::now();
        let bump = |f: &mut Failures| {
            if now.duration_since(f.since) > FAILURE_WINDOW {
                *f = Failures {
                    since: now,
                    count: 0,
                };
            }
            f.count += 1;
        };
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() > 4096 {
            failures.retain(|_, f| now.duration_since(f.since) <= FAILURE_WINDOW);
        }
        bump(failures.entry(peer).or_insert(Failures {
            since: now,
            count: 0,
        }));
        drop(failures);
        let mut all = self
            .all_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        bump(all.get_or_insert(Failures {
            since: now,
            count: 0,
        }));
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < IDLE && now.duration_since(s.created) < ABSOLUTE
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether the request's `X-CSRF-Token` header is the session's token.
pub fn csrf_ok(headers: &hyper::HeaderMap, session: &SessionInfo) -> bool {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| same(given.as_bytes(), session.csrf.as_bytes()))
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ABSOLUTE.as_secs()
    )
}

/// The `Set-Cookie` value that drops the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_rate_limit() {
        let s = Sessions::default();
        let (id, csrf) = s.create(false).expect("create");
        let info = s.get(&id).expect("live");
        assert_eq!(info.csrf, csrf);
        let mut headers = hyper::HeaderMap::new();
        assert!(!csrf_ok(&headers, &info));
        headers.insert("x-csrf-token", csrf.parse().expect("header"));
        assert!(csrf_ok(&headers, &info));
        s.remove(&id);
        assert!(s.get(&id).is_none());
        let peer: IpAddr = [192, 168, 1, 9].into();
        for _ in 0..MAX_FAILURES {
            assert!(s.may_try(peer));
            s.failed(peer);
        }
        assert!(!s.may_try(peer));
        assert!(s.may_try([192, 168, 1, 10].into()));
    }

    #[test]
    fn cookie_parsing() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            hyper::header::COOKIE,
            "a=b; fdmd_session=abc; c=d".parse().expect("header"),
        );
        assert_eq!(cookie_value(&headers), Some("abc"));
    }
}
