//! The process allocator is mimalloc (`main.rs`: fewer instructions per request than glibc's,
//! BENCHMARKS.md). It keeps the pages a thread freed until that thread allocates again, so a
//! worker whose connections have all gone dormant keeps what their tasks held while nothing
//! happens: with dormant connections and no collection, 5.9–11.7 KiB per idle connection at
//! 10,000 with the process idle, against 1.2–1.3 KiB once a trickle of requests had run
//! (`benches/idle_memory.py`; BENCHMARKS.md, seventh session).

/// Gives the calling thread's freed pages back to the system now. Walks that thread's heap:
/// for quiet moments (a dormant lot that has settled), not for the request path.
pub fn release_freed() {
    // SAFETY: no arguments; mimalloc collects the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
