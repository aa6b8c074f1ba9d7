//! Socket-level helpers shared by listeners, forwarding and health checks.

pub mod close;
pub mod sockopt;
pub mod splice;

use std::cell::RefCell;

/// Size of the per-thread scratch buffer.
pub const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Runs `f` with the thread's scratch buffer: bytes read and written on in the same poll, or
/// discarded. Never held across an `.await`, so no connection's future carries a buffer. If
/// the buffer is somehow in use (a nested call), `f` gets a fresh one instead.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; SCRATCH_SIZE]),
    })
}
