//! The server's clock. The core never reads time; the shell stamps every command with
//! [`Clock::now`]. Tests inject a [`ManualClock`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Fires when the clock is moved by hand, so timers can look again. The wall clock moves
    /// by itself: `None`.
    fn moves(&self) -> Option<tokio::sync::watch::Receiver<()>> {
        None
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        Timestamp::from_micros(micros)
    }
}

/// A clock that moves only when told to; auction timers follow it at once, so tests of
/// countdowns need no real sleeps.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: tokio::sync::watch::Sender<()>,
}

impl ManualClock {
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock { now: AtomicI64::new(at.as_micros()), moved: tokio::sync::watch::channel(()).0 }
    }

    pub fn set(&self, at: Timestamp) {
        self.now.store(at.as_micros(), Ordering::SeqCst);
        self.moved.send_replace(());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.now.load(Ordering::SeqCst))
    }

    fn moves(&self) -> Option<tokio::sync::watch::Receiver<()>> {
        Some(self.moved.subscribe())
    }
}
