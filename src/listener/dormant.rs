//! Dormant client connections. A cleartext HTTP/1 connection idle between requests needs only
//! its socket, yet as a task of its own it holds ~2.7 KB of heap (BENCHMARKS.md, fifth session:
//! the task with Pingora's accept future, the connection's future, Pingora's boxed stream and
//! socket digest, tokio's registration), 6x what nginx spends on an idle connection. A [`Lot`]
//! holds such connections as a descriptor and a small record each, in an epoll set of its own
//! that one task per worker thread waits on through tokio (an epoll descriptor is itself
//! pollable). When a socket turns readable, its record and socket are handed back
//! ([`Hooks::wake`]) to be served by a new task on that thread; when its deadline passes first,
//! [`Hooks::expire`] sees the record and the socket is closed; a client that hung up is closed
//! without a wake.
//!
//! The set is level-triggered: a request that arrived while the socket changed hands is seen at
//! once. A socket is taken out of the set before it is handed back; one that is closed leaves it
//! with its last descriptor (the lot holds the only one).

use crate::log_throttle::{self, Throttled};
use prometheus::IntGauge;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Events read per `epoll_wait`; further ready sockets are read by the next call.
const EVENTS: usize = 64;

/// Sockets handed back per turn of a lot's task before it lets the tasks it woke run.
const WAKES_PER_TURN: usize = 256;

/// What the owner of the connections does with them.
pub trait Hooks<T>: Send + Sync + 'static {
    /// `socket` is readable: serve `conn` on it. Runs on the lot's task: spawn, do not wait.
    fn wake(&self, conn: T, socket: std::net::TcpStream);
    /// `conn`'s deadline passed with nothing to read; its socket closes after this.
    fn expire(&self, conn: T);
    /// Connections joined or left the lot, and then none for [`SETTLE`]: the tasks that served
    /// them are gone, and what they held was freed on this thread.
    fn settled(&self) {}
}

/// How long a lot stays still before [`Hooks::settled`].
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// One worker thread's dormant connections. Cloning shares it.
pub struct Lot<T>(Arc<Shared<T>>);

impl<T> Clone for Lot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

struct Shared<T> {
    epoll: AsyncFd<OwnedFd>,
    state: Mutex<State<T>>,
    /// An earlier deadline than the task waits for, or the lot closed.
    changed: Notify,
    hooks: Box<dyn Hooks<T>>,
    /// Connections dormant in every lot.
    gauge: IntGauge,
}

struct Entry<T> {
    socket: OwnedFd,
    conn: T,
}

struct Slot<T> {
    /// Bumped each time the slot is emptied, so a token outlives neither its entry nor its
    /// deadline.
    generation: u32,
    entry: Option<Entry<T>>,
}

struct State<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// Deadlines and the tokens they were set for; those of entries already gone are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    closed: bool,
    /// When a connection last joined or left, if [`Hooks::settled`] has not run since.
    stirred: Option<Instant>,
}

fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

impl<T> State<T> {
    /// Entries held: every slot is either held or free.
    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The token the next entry will get.
    fn next_token(&self) -> u64 {
        match self.free.last() {
            Some(&index) => token(index, self.slots[index as usize].generation),
            None => token(self.slots.len() as u32, 0),
        }
    }

    /// Stores `entry` under [`Self::next_token`]; whether its deadline is now the earliest.
    fn insert(&mut self, entry: Entry<T>, deadline: Option<Instant>) -> bool {
        let token = self.next_token();
        match self.free.pop() {
            Some(index) => self.slots[index as usize].entry = Some(entry),
            None => self.slots.push(Slot {
                generation: 0,
                entry: Some(entry),
            }),
        }
        let Some(deadline) = deadline else {
            return false;
        };
        let earliest = self.deadlines.peek().is_none_or(|top| deadline < top.0 .0);
        self.deadlines.push(Reverse((deadline, token)));
        // Deadlines of woken entries stay until they come up; rebuilt before they outnumber
        // the live ones, so a connection woken every second does not grow the heap.
        if self.deadlines.len() > 2 * self.live() + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|d| is_live(slots, d.0 .1));
        }
        earliest
    }

    /// [`Self::take`], noting the stir.
    fn take_stirring(&mut self, token: u64) -> Option<Entry<T>> {
        let entry = self.take(token)?;
        self.stirred = Some(Instant::now());
        Some(entry)
    }

    fn take(&mut self, token: u64) -> Option<Entry<T>> {
        let slot = self.slots.get_mut((token & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(token as u32);
        Some(entry)
    }

    /// Entries whose deadline is not after `now`, and the next deadline.
    fn due(&mut self, now: Instant) -> (Vec<Entry<T>>, Option<Instant>) {
        let mut due = Vec::new();
        while let Some(&Reverse((deadline, token))) = self.deadlines.peek() {
            if deadline > now {
                return (due, Some(deadline));
            }
            self.deadlines.pop();
            due.extend(self.take(token));
        }
        (due, None)
    }
}

fn is_live<T>(slots: &[Slot<T>], token: u64) -> bool {
    slots
        .get((token & 0xffff_ffff) as usize)
        .is_some_and(|s| u64::from(s.generation) == token >> 32 && s.entry.is_some())
}

impl<T: Send + 'static> Lot<T> {
    /// A lot whose task runs on the current runtime.
    pub fn start(hooks: Box<dyn Hooks<T>>, gauge: IntGauge) -> io::Result<Self> {
        // SAFETY: no pointers; the descriptor is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an `OwnedFd` keeps its one descriptor open until the `AsyncFd` drops it.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }
            .map_err(io::Error::from)?;
        let shared = Arc::new(Shared {
            epoll,
            state: Mutex::new(State {
                slots: Vec::new(),
                free: Vec::new(),
                deadlines: BinaryHeap::new(),
                closed: false,
                stirred: None,
            }),
            changed: Notify::new(),
            hooks,
            gauge,
        });
        tokio::spawn(run(shared.clone()));
        Ok(Self(shared))
    }

    /// Holds `conn` on `socket` until the socket is readable or `deadline` passes (`None`: no
    /// deadline). Refused, and both given back, once the lot is closed or if the socket cannot
    /// join the set.
    pub fn park(
        &self,
        socket: OwnedFd,
        conn: T,
        deadline: Option<Instant>,
    ) -> Result<(), (OwnedFd, T)> {
        let shared = &*self.0;
        let mut state = shared.lock();
        if state.closed {
            return Err((socket, conn));
        }
        // Added under the lock: an event for the token is handled only once the entry is there.
        let events = libc::EPOLLIN | libc::EPOLLRDHUP;
        if let Err(e) = shared.control(libc::EPOLL_CTL_ADD, &socket, events, state.next_token()) {
            static NO_JOIN: Throttled = Throttled::new(log_throttle::STORM);
            NO_JOIN.warn(format_args!(
                "a dormant connection could not join its epoll set: {e}"
            ));
            return Err((socket, conn));
        }
        let earliest = state.insert(Entry { socket, conn }, deadline);
        // The task learns of a first stir, to settle after it.
        let first_stir = state.stirred.replace(Instant::now()).is_none();
        drop(state);
        shared.gauge.inc();
        if earliest || first_stir {
            shared.changed.notify_one();
        }
        Ok(())
    }

    /// Closes every dormant connection and refuses later ones; the lot's task ends.
    pub fn close(&self) {
        let entries: Vec<Entry<T>> = {
            let mut state = self.0.lock();
            state.closed = true;
            state.deadlines.clear();
            state.free.clear();
            state.slots.drain(..).filter_map(|s| s.entry).collect()
        };
        self.0.gauge.sub(entries.len() as i64);
        // Dropped outside the lock: a record's drop may take locks of its own.
        drop(entries);
        self.0.changed.notify_one();
    }

    /// Connections dormant in this lot.
    pub fn count(&self) -> usize {
        self.0.lock().live()
    }
}

impl<T: 'static> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn control(&self, op: i32, socket: &OwnedFd, events: i32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.get_ref().as_raw_fd(),
                op,
                socket.as_raw_fd(),
                &mut event,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Hands back or closes the connections whose sockets are ready, up to
    /// [`WAKES_PER_TURN`]; whether the set was found empty.
    fn wake_ready(&self) -> bool {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut handled = 0;
        while handled < WAKES_PER_TURN {
            // SAFETY: `events` has room for `EVENTS` entries; a zero timeout never blocks.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.get_ref().as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    0,
                )
            };
            if n <= 0 {
                // Interrupted: tried again on the next readiness (the set stays ready).
                return n == 0;
            }
            for event in &events[..n as usize] {
                // Copied out: the kernel's struct is packed.
                let (token, flags) = (event.u64, event.events as i32);
                let Some(entry) = self.lock().take_stirring(token) else {
                    continue;
                };
                self.gauge.dec();
                if flags & libc::EPOLLIN == 0 || hung_up(flags, &entry.socket) {
                    continue;
                }
                // Out of the set first: the socket stays open and will be registered anew.
                if let Err(e) = self.control(libc::EPOLL_CTL_DEL, &entry.socket, 0, 0) {
                    static NO_LEAVE: Throttled = Throttled::new(log_throttle::STORM);
                    NO_LEAVE.warn(format_args!(
                        "a dormant connection could not leave its epoll set: {e}"
                    ));
                    continue;
                }
                self.hooks.wake(entry.conn, entry.socket.into());
            }
            handled += n as usize;
        }
        false
    }
}

/// Whether a socket reported with `flags` was closed by its client with nothing left to read
/// (a request sent just before a half-close is still served).
fn hung_up(flags: i32, socket: &OwnedFd) -> bool {
    if flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) == 0 {
        return false;
    }
    let mut byte = 0u8;
    // SAFETY: one byte of room; a non-blocking peek.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n <= 0
}

/// A lot's task: waits for ready sockets, deadlines and changes until the lot is closed.
async fn run<T: Send + 'static>(shared: Arc<Shared<T>>) {
    loop {
        let now = Instant::now();
        let (due, next, settle, stirred) = {
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            let (due, next) = state.due(now);
            let settle = state.stirred.is_some_and(|at| at + SETTLE <= now);
            if settle {
                state.stirred = None;
            }
            (due, next, settle, state.stirred)
        };
        shared.gauge.sub(due.len() as i64);
        for entry in due {
            shared.hooks.expire(entry.conn);
        }
        if settle {
            shared.hooks.settled();
        }
        let next = match (next, stirred.map(|at| at + SETTLE)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            ready = shared.epoll.readable() => match ready {
                Ok(mut guard) => {
                    if shared.wake_ready() {
                        guard.clear_ready();
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) => {
                    log::error!("the dormant connections' epoll set failed: {e}; closing them");
                    Lot(shared).close();
                    return;
                }
            },
            () = shared.changed.notified() => {}
            () = deadline => {}
        }
    }
}

/// The lots of every worker thread that parked a connection, started on first use.
pub struct Lots<T> {
    state: Mutex<ByThread<T>>,
    gauge: IntGauge,
}

struct ByThread<T> {
    closed: bool,
    lots: Vec<(ThreadId, Lot<T>)>,
}

impl<T: Send + 'static> Lots<T> {
    /// No lots yet; `gauge` counts the connections dormant in all of them.
    pub fn new(gauge: IntGauge) -> Self {
        Self {
            state: Mutex::new(ByThread {
                closed: false,
                lots: Vec::new(),
            }),
            gauge,
        }
    }

    /// Parks `conn` in the current thread's lot, started with `hooks()` if the thread has none
    /// (so it is woken on the thread that parked it). See [`Lot::park`].
    pub fn park(
        &self,
        socket: OwnedFd,
        conn: T,
        deadline: Option<Instant>,
        hooks: impl FnOnce() -> Box<dyn Hooks<T>>,
    ) -> Result<(), (OwnedFd, T)> {
        let lot = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.closed {
                return Err((socket, conn));
            }
            let thread = std::thread::current().id();
            match state.lots.iter().find(|(t, _)| *t == thread) {
                Some((_, lot)) => lot.clone(),
                None => match Lot::start(hooks(), self.gauge.clone()) {
                    Ok(lot) => {
                        state.lots.push((thread, lot.clone()));
                        lot
                    }
                    Err(e) => {
                        static NO_SET: Throttled = Throttled::new(log_throttle::STORM);
                        NO_SET.warn(format_args!("no dormant set for idle connections: {e}"));
                        return Err((socket, conn));
                    }
                },
            }
        };
        lot.park(socket, conn, deadline)
    }

    /// Closes every lot's connections and refuses later ones.
    pub fn close(&self) {
        let lots = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.closed = true;
            std::mem::take(&mut state.lots)
        };
        for (_, lot) in lots {
            lot.close();
        }
    }
}

/// A descriptor of its own for the socket under `fd`, which its current owner may then close.
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller's descriptor is open for the duration of the call.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

#[cfg(test)]
mod tests;
