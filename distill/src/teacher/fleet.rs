//! A fleet of OpenAI-compatible servers (vLLM, SGLang, `workbench serve`) behind one teacher:
//! each request goes to the server with the fewest requests outstanding (the next in turn among
//! equals), a server that fails [`TAKE_OUT_AFTER`] times in a row is taken out, and a health
//! check (`GET {base}/models`) brings it back. What each server did is counted for the summary.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Failures in a row (of the server's making: no connection, a timeout, a 5xx, an unreadable
/// answer) that take a server out of the rotation.
pub const TAKE_OUT_AFTER: u32 = 3;
/// The first health check of a server taken out comes this long after; each failed check doubles
/// the wait, up to [`CHECK_MAX`].
pub const CHECK_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between health checks.
pub const CHECK_MAX: Duration = Duration::from_secs(30);

/// What one server did, for the stage's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServerStats {
    /// `host:port`.
    pub host: String,
    /// Requests sent to it (retries included).
    pub requests: u64,
    /// Good answers it gave.
    pub answered: u64,
    /// Requests that failed on it.
    pub failed: u64,
    /// Tokens it generated (or scored).
    pub tokens: u64,
    /// Seconds its requests were in flight, summed (a server answering several at once counts
    /// each).
    pub busy_seconds: f64,
    /// Times it was taken out of the rotation.
    pub taken_out: u32,
    /// Times a health check brought it back.
    pub brought_back: u32,
    /// Whether it was out of the rotation at the end.
    pub out_at_end: bool,
}

#[derive(Debug)]
struct Health {
    /// Failures in a row.
    failures: u32,
    /// Out of the rotation until a health check passes.
    out: bool,
    next_check: Instant,
    wait: Duration,
    checking: bool,
    taken_out: u32,
    brought_back: u32,
}

/// One server of the fleet.
#[derive(Debug)]
pub struct Server {
    /// Its base URL, ending in `/`.
    pub url: reqwest::Url,
    /// `host:port`, for messages and the summary.
    pub host: String,
    outstanding: AtomicUsize,
    requests: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    tokens: AtomicU64,
    busy_micros: AtomicU64,
    health: Mutex<Health>,
}

impl Server {
    fn new(url: reqwest::Url, host: String) -> Server {
        Server {
            url,
            host,
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            busy_micros: AtomicU64::new(0),
            health: Mutex::new(Health {
                failures: 0,
                out: false,
                next_check: Instant::now(),
                wait: CHECK_FIRST,
                checking: false,
                taken_out: 0,
                brought_back: 0,
            }),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it is in the rotation.
    pub fn is_in(&self) -> bool {
        !self.health().out
    }
}

/// A request in flight on a server: ends with [`Lease::answered`] or [`Lease::failed`] (a lease
/// dropped otherwise, as when the request's task is cancelled, counts as neither).
pub struct Lease<'a> {
    server: &'a Server,
    started: Instant,
}

impl Lease<'_> {
    /// The server.
    pub fn server(&self) -> &Server {
        self.server
    }

    /// A good answer with `tokens` tokens: the server's run of failures ends.
    pub fn answered(self, tokens: u64) {
        self.server.answered.fetch_add(1, Ordering::Relaxed);
        self.server.tokens.fetch_add(tokens, Ordering::Relaxed);
        let mut h = self.server.health();
        h.failures = 0;
        // With every server out, requests go to them anyway: an answer brings its server back.
        if h.out {
            h.out = false;
            h.brought_back += 1;
            h.wait = CHECK_FIRST;
        }
    }

    /// A failure; `server_fault` when the server (not the request) is to blame, which counts
    /// towards taking it out. Returns whether this failure took it out.
    pub fn failed(self, server_fault: bool) -> bool {
        self.server.failed.fetch_add(1, Ordering::Relaxed);
        if !server_fault {
            return false;
        }
        let mut h = self.server.health();
        h.failures += 1;
        if h.failures >= TAKE_OUT_AFTER && !h.out {
            h.out = true;
            h.taken_out += 1;
            h.wait = CHECK_FIRST;
            h.next_check = Instant::now() + h.wait;
            return true;
        }
        false
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.server.outstanding.fetch_sub(1, Ordering::Relaxed);
        let micros = self.started.elapsed().as_micros() as u64;
        self.server.busy_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The servers and the turn among equals.
#[derive(Debug)]
pub struct Fleet {
    servers: Vec<Server>,
    turn: AtomicUsize,
}

impl Fleet {
    /// A fleet of `(base URL, host)`; at least one.
    pub fn new(urls: Vec<(reqwest::Url, String)>) -> Fleet {
        Fleet {
            servers: urls
                .into_iter()
                .map(|(url, host)| Server::new(url, host))
                .collect(),
            turn: AtomicUsize::new(0),
        }
    }

    /// The servers.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// Servers taken out whose health check is due; each is marked as being checked, so one
    /// check runs at a time per server.
    pub fn due_checks(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut due = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            let mut h = s.health();
            if h.out && !h.checking && h.next_check <= now {
                h.checking = true;
                due.push(i);
            }
        }
        due
    }

    /// The outcome of server `i`'s health check: back in the rotation, or checked again after a
    /// longer wait.
    pub fn checked(&self, i: usize, healthy: bool) -> bool {
        let mut h = self.servers[i].health();
        h.checking = false;
        if healthy {
            let back = h.out;
            if back {
                h.brought_back += 1;
            }
            h.out = false;
            h.failures = 0;
            h.wait = CHECK_FIRST;
            back
        } else {
            h.wait = (h.wait * 2).min(CHECK_MAX);
            h.next_check = Instant::now() + h.wait;
            false
        }
    }

    /// The server for the next request: of those in the rotation (or, when every one is out,
    /// of all: the request itself is then the check), the one with the fewest requests
    /// outstanding, the next in turn among equals.
    pub fn lease(&self) -> Lease<'_> {
        let n = self.servers.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        // One look at who is in: another request may take a server out meanwhile, and a second
        // look could then find none in after the first found one.
        let ins: Vec<bool> = self.servers.iter().map(Server::is_in).collect();
        let any_in = ins.contains(&true);
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| !any_in || ins[i])
            .min_by_key(|&i| self.servers[i].outstanding.load(Ordering::Relaxed))
            .expect("a fleet has a server");
        let server = &self.servers[pick];
        server.outstanding.fetch_add(1, Ordering::Relaxed);
        server.requests.fetch_add(1, Ordering::Relaxed);
        Lease {
            server,
            started: Instant::now(),
        }
    }

    /// What each server did so far.
    pub fn stats(&self) -> Vec<ServerStats> {
        self.servers
            .iter()
            .map(|s| {
                let h = s.health();
                ServerStats {
                    host: s.host.clone(),
                    requests: s.requests.load(Ordering::Relaxed),
                    answered: s.answered.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    tokens: s.tokens.load(Ordering::Relaxed),
                    busy_seconds: s.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
                    taken_out: h.taken_out,
                    brought_back: h.brought_back,
                    out_at_end: h.out,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Fleet {
        Fleet::new(
            (0..n)
                .map(|i| {
                    let url =
                        reqwest::Url::parse(&format!("http://127.0.0.1:{}/v1/", 9000 + i)).unwrap();
                    (url, format!("127.0.0.1:{}", 9000 + i))
                })
                .collect(),
        )
    }

    #[test]
    fn requests_go_to_the_least_busy_server_and_take_turns_among_equals() {
        let f = fleet(3);
        // Three at once: one each.
        let a = f.lease();
        let b = f.lease();
        let c = f.lease();
        let mut hosts = vec![
            a.server().host.clone(),
            b.server().host.clone(),
            c.server().host.clone(),
        ];
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), 3);
        // The one that finished first gets the next.
        let free = b.server().host.clone();
        b.answered(5);
        let d = f.lease();
        assert_eq!(d.server().host, free);
        drop((a, c, d));
    }

    #[test]
    fn a_failing_server_is_taken_out_and_a_health_check_brings_it_back() {
        let f = fleet(2);
        let bad = f.servers()[0].host.clone();
        let mut outs = 0;
        for _ in 0..20 {
            let l = f.lease();
            if l.server().host == bad {
                outs += usize::from(l.failed(true));
            } else {
                l.answered(1);
            }
        }
        assert_eq!(outs, 1, "taken out once");
        assert!(!f.servers()[0].is_in());
        let s = f.stats();
        assert_eq!(s[0].failed, u64::from(TAKE_OUT_AFTER));
        assert_eq!(s[0].answered, 0);
        // While out, nothing goes to it.
        for _ in 0..5 {
            let l = f.lease();
            assert_ne!(l.server().host, bad);
            l.answered(1);
        }
        // Not due yet; then due, checked once at a time; a failed check waits longer.
        assert!(f.due_checks().is_empty());
        std::thread::sleep(CHECK_FIRST);
        assert_eq!(f.due_checks(), [0]);
        assert!(f.due_checks().is_empty(), "one check at a time");
        assert!(!f.checked(0, false));
        assert!(!f.servers()[0].is_in());
        std::thread::sleep(CHECK_FIRST * 2);
        assert_eq!(f.due_checks(), [0]);
        assert!(f.checked(0, true), "brought back");
        assert!(f.servers()[0].is_in());
        let s = f.stats();
        assert_eq!(
            (s[0].taken_out, s[0].brought_back, s[0].out_at_end),
            (1, 1, false)
        );
        assert_eq!(s[1].failed, 0);
        // A failure of the request's making (a 400) does not count towards taking it out.
        for _ in 0..10 {
            let l = f.lease();
            l.failed(false);
        }
        assert!(f.servers().iter().all(Server::is_in));
    }

    #[test]
    fn with_every_server_out_the_requests_still_go_somewhere() {
        let f = fleet(2);
        for _ in 0..(2 * TAKE_OUT_AFTER) {
            f.lease().failed(true);
        }
        assert!(f.servers().iter().all(|s| !s.is_in()));
        let l = f.lease();
        l.answered(3);
        assert_eq!(f.stats().iter().map(|s| s.tokens).sum::<u64>(), 3);
        // The server that answered is back in the rotation.
        assert_eq!(f.servers().iter().filter(|s| s.is_in()).count(), 1);
    }
}
