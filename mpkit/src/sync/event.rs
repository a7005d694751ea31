//! [`Event`]: a flag in shared memory that processes wait for.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::sleep::{self, Slept, sleep_on};
use super::spin_while;
use crate::base::segment::{
    Elem, HEADER_SIZE, Header, ObjectKind, Segment, ShmError, Spec, segment_object,
};
use crate::sys;

#[repr(C)]
struct EventState {
    flag: AtomicU32,
    waiters: AtomicU32,
}

fn event_spec() -> Spec {
    Spec {
        kind: ObjectKind::Event,
        elem: Elem::NONE,
        len: 0,
        size: HEADER_SIZE + 64,
        cells: &[],
    }
}

fn create_event(name: Option<&str>) -> Result<Segment, ShmError> {
    Segment::create(event_spec(), name, 0o600, |base| {
        // SAFETY: fresh segment with room for EventState at HEADER_SIZE.
        unsafe {
            base.as_ptr()
                .add(HEADER_SIZE)
                .cast::<EventState>()
                .write(EventState {
                    flag: AtomicU32::new(0),
                    waiters: AtomicU32::new(0),
                });
        }
        Ok(())
    })
}

/// A flag processes can wait for (Python's `multiprocessing.Event`).
///
/// ```
/// use std::time::Duration;
/// use mpkit::sync::Event;
/// let e = Event::new()?;
/// assert!(!e.wait(Some(Duration::from_millis(1)))?);
/// e.set();
/// assert!(e.is_set() && e.wait(None)?);
/// e.clear();
/// assert!(!e.is_set());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Event {
    seg: Segment,
}

segment_object!(Event, |_: &Header| event_spec());

impl Event {
    fn from_segment(seg: Segment) -> Self {
        Event { seg }
    }

    /// A new anonymous event, not set.
    pub fn new() -> Result<Event, ShmError> {
        create_event(None).map(Event::from_segment)
    }

    /// A new named event, not set.
    pub fn create(name: &str) -> Result<Event, ShmError> {
        create_event(Some(name)).map(Event::from_segment)
    }

    /// Attaches to a named event.
    pub fn open(name: &str) -> Result<Event, ShmError> {
        Segment::open(name, |_| event_spec()).map(Event::from_segment)
    }

    fn state(&self) -> &EventState {
        // SAFETY: the header check proved an Event layout.
        unsafe { self.seg.at::<EventState>(HEADER_SIZE).as_ref() }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let s = self.state();
        s.flag.store(1, Ordering::SeqCst);
        if s.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&s.flag, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state().flag.store(0, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state().flag.load(Ordering::SeqCst) != 0
    }

    /// Waits until the flag is set (true) or `timeout` passes (false);
    /// `None` waits forever. An error when the OS refused the sleep (the
    /// flag may be set or not), or when another process truncated the
    /// event's file: [`io::ErrorKind::InvalidData`] around
    /// [`ShmError::Corrupt`], within 100 ms of the cut even for a waiter
    /// already asleep (see [Truncated files](crate::sync#truncated-files)).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let s = self.state();
        // Set already: true at once, without looking at the truncation
        // flag (one more load costs a third of this path); after a cut, the
        // flag can only be set in this process's private zeros, by itself.
        if self.is_set() {
            return Ok(true);
        }
        let deadline = sys::deadline_after(timeout);
        loop {
            if self.is_set() {
                return self.unless_truncated(true);
            }
            spin_while(&s.flag, 0, deadline);
            if self.is_set() {
                return self.unless_truncated(true);
            }
            s.waiters.fetch_add(1, Ordering::SeqCst);
            let r = sleep_on(&self.seg, &s.flag, 0, deadline);
            s.waiters.fetch_sub(1, Ordering::SeqCst);
            if r? == Slept::TimedOut {
                return self.unless_truncated(self.is_set());
            }
        }
    }

    /// `Ok(answer)`, unless the file was found truncated meanwhile.
    #[inline]
    fn unless_truncated(&self, answer: bool) -> io::Result<bool> {
        if self.seg.truncated() {
            return Err(sleep::truncated_io());
        }
        Ok(answer)
    }
}
