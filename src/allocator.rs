//! The binary's allocator: mimalloc, told to keep freed memory for a while.
//!
//! Training allocates and frees every activation on every step. glibc handed those large blocks
//! back to the kernel, so each step paid the page faults and the zeroing again; mimalloc keeps
//! them, but it returns ("purges") memory that has stayed free for its purge delay (1 s by
//! default), and the kernel zeroes those pages again when they are touched next. With the
//! default, the model benchmark's 12 training steps of the 4M student took 36,000 page faults
//! (many of them 2 MiB transparent huge pages); with a delay of 10 s, about 400, and the step
//! is faster (`benches/README.md`). Memory still goes back to the system 10 s after a burst (a
//! server between requests).
//!
//! Also compiled into `benches/model.rs`, so the benchmark measures the binary's allocator.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its position in mimalloc's `mi_option_t` (mimalloc.h, version 3;
/// `libmimalloc-sys` does not name it). A test reads its default back.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process, in milliseconds.
const KEEP_MS: std::ffi::c_long = 10_000;

/// Sets the purge delay. Call first thing in `main`, before any thread starts (mimalloc's
/// options are not synchronised).
pub fn configure() {
    // SAFETY: `mi_option_set` writes one integer of mimalloc's option table; `PURGE_DELAY` is a
    // valid option (checked by the test below) and no other thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, KEEP_MS) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_configure_sets() {
        // SAFETY: reading an option of mimalloc's table (test threads may race on the lazy
        // initialisation of one integer, which mimalloc tolerates).
        let (option, keep) = (super::PURGE_DELAY, super::KEEP_MS);
        let default = unsafe { libmimalloc_sys::mi_option_get(option) };
        // mimalloc 3's default purge delay (1000 ms; its neighbours in the table default to 1
        // and 0), unless the environment or an earlier call set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                default == 1000 || default == keep,
                "option {option} is not the purge delay (value {default})"
            );
        }
        super::configure();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(option) }, keep);
    }
}
