//! A few threads kept busy-waiting for the next parallel pass of a generation.
//!
//! A decoding step at batch 16 is some twenty parallel passes of 20–100 µs each, with short serial
//! parts between them. On rayon's pool an idle worker goes to sleep after a few microseconds
//! without work, and waking it again costs a system call on the critical path and tens of
//! microseconds before it runs: measured on the 4M student, about thirteen context switches a
//! step and 12% of the time in the kernel's scheduler. A team is made for one generation: its helpers spin on an
//! atomic between passes (and only park after [`SPIN`] without one), so a pass starts in well under
//! a microsecond. The thread that calls [`Team::map`] works too, and waits for the last task.
//!
//! Tasks are claimed one at a time from a counter tagged with the pass's number, so a helper that
//! wakes late never runs a task of a pass it did not read. Results come back in task order, so
//! what a pass computes does not depend on which thread ran which task.
//!
//! The one `unsafe` is the job's lifetime, widened to `'static` for the helpers to hold; the
//! caller waits for every task of the pass, panics included, before the job goes away.
#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper spins without a pass before it parks (woken by the next one).
pub const SPIN: Duration = Duration::from_micros(200);

/// The job of one pass: task `i` runs `f(i)`. The pointer is only called while the pass is
/// live, and [`Team::map`] does not return before every claimed task has finished.
type Job = &'static (dyn Fn(usize) + Sync);

#[derive(Default)]
struct Shared {
    /// The pass's number (high 32 bits) and its next unclaimed task (low 32 bits).
    ticket: AtomicU64,
    /// The pass's number, its job and its task count, set together.
    current: Mutex<Option<(u64, Job, usize)>>,
    /// Tasks of the current pass finished (or abandoned by a panic).
    done: AtomicUsize,
    /// A task panicked on a helper.
    panicked: AtomicBool,
    quit: AtomicBool,
}

/// Threads that run the parallel passes of one generation; see the module's doc.
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    pass: u64,
}

impl Team {
    /// A team of `threads` (the caller and `threads - 1` helpers). If the system refuses a
    /// thread, the team is smaller: it computes the same, more slowly.
    pub fn new(threads: usize) -> Team {
        let shared = Arc::new(Shared::default());
        let helpers = (1..threads.max(1))
            .map_while(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("workbench-decode-{i}"))
                    .spawn(move || helper(&shared))
                    .ok()
            })
            .collect();
        Team {
            shared,
            helpers,
            pass: 0,
        }
    }

    /// A team as large as rayon's pool (`RAYON_NUM_THREADS`, else the cores).
    pub fn of_pool() -> Team {
        Team::new(rayon::current_num_threads())
    }

    /// Threads, the caller's included.
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// `[f(0), f(1), …, f(n - 1)]`, the tasks spread over the team.
    pub fn map<T: Send + Sync>(&mut self, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        if self.helpers.is_empty() || n <= 1 {
            return (0..n).map(f).collect();
        }
        let slots: Vec<OnceLock<T>> = (0..n).map(|_| OnceLock::new()).collect();
        let task = |i: usize| {
            let _ = slots[i].set(f(i));
        };
        self.run(n, &task);
        slots
            .into_iter()
            .map(|s| s.into_inner().expect("every task of a pass ran"))
            .collect()
    }

    fn run(&mut self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        assert!(n < 1 << 32, "team: too many tasks in one pass");
        self.pass += 1;
        let pass = self.pass;
        // SAFETY: the job is only called for claimed tasks of this pass, and this function waits
        // below (even when a task panics) until every task of the pass has finished or been
        // abandoned, so `task` outlives every call.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(task) };
        let shared = &*self.shared;
        {
            let mut current = shared.current.lock().unwrap_or_else(|e| e.into_inner());
            *current = Some((pass, job, n));
            shared.done.store(0, Ordering::Relaxed);
            shared.ticket.store(pass << 32, Ordering::Release);
        }
        for h in &self.helpers {
            h.thread().unpark();
        }
        let failed = catch_unwind(AssertUnwindSafe(|| work(shared, pass, job, n))).err();
        if failed.is_some() {
            abandon(shared, pass, n);
        }
        let mut spins = 0u32;
        while shared.done.load(Ordering::Acquire) < n {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 12) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(payload) = failed {
            std::panic::resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::Relaxed) {
            panic!("team: a task panicked on a decoding thread");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        for h in &self.helpers {
            h.thread().unpark();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Claims and runs tasks of `pass` until none is left, counting each one done as it ends.
fn work(shared: &Shared, pass: u64, job: Job, n: usize) {
    let mut t = shared.ticket.load(Ordering::Acquire);
    loop {
        if t >> 32 != pass || (t & 0xFFFF_FFFF) as usize >= n {
            return;
        }
        match shared
            .ticket
            .compare_exchange_weak(t, t + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                job((t & 0xFFFF_FFFF) as usize);
                shared.done.fetch_add(1, Ordering::AcqRel);
                t += 1;
            }
            Err(now) => t = now,
        }
    }
}

/// After a task of `pass` panicked: it and every task nobody claimed yet count as done, so the
/// caller stops waiting and reports the panic.
fn abandon(shared: &Shared, pass: u64, n: usize) {
    let t = shared.ticket.swap(pass << 32 | n as u64, Ordering::AcqRel);
    let unclaimed = if t >> 32 == pass {
        n.saturating_sub((t & 0xFFFF_FFFF) as usize)
    } else {
        0
    };
    shared.done.fetch_add(1 + unclaimed, Ordering::AcqRel);
}

fn helper(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let pass = loop {
            if shared.quit.load(Ordering::Acquire) {
                return;
            }
            let pass = shared.ticket.load(Ordering::Acquire) >> 32;
            if pass != seen {
                break pass;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && started.elapsed() > SPIN {
                std::thread::park();
            } else {
                std::hint::spin_loop();
            }
        };
        seen = pass;
        // The pass may be over already (then `current` is empty or a later one; a later one is
        // served on the next turn).
        let current = *shared.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some((p, job, n)) = current else { continue };
        if p != pass {
            continue;
        }
        if catch_unwind(AssertUnwindSafe(|| work(shared, pass, job, n))).is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
            abandon(shared, pass, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_maps_in_task_order_pass_after_pass() {
        for threads in [1, 2, 3] {
            let mut team = Team::new(threads);
            assert_eq!(team.threads(), threads);
            for pass in 0..500usize {
                let n = pass % 7;
                let got = team.map(n, |i| i * i + pass);
                let want: Vec<usize> = (0..n).map(|i| i * i + pass).collect();
                assert_eq!(got, want, "threads {threads}, pass {pass}");
            }
        }
    }

    #[test]
    fn a_team_wakes_after_parking() {
        let mut team = Team::new(2);
        assert_eq!(team.map(4, |i| i), vec![0, 1, 2, 3]);
        std::thread::sleep(SPIN * 5);
        assert_eq!(team.map(4, |i| i + 1), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let mut team = Team::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.map(64, |i| {
                assert!(i != 40, "task 40 fails");
                i
            })
        }));
        assert!(r.is_err());
        // The team still works afterwards.
        assert_eq!(team.map(3, |i| i), vec![0, 1, 2]);
    }
}
