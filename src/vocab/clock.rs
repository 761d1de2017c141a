//! Time as an input. The server reads the system clock; a test sets the time it needs, so no
//! assertion depends on the day or hour it happens to run.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Where "now" comes from. Cheap to clone; clones of a fixed clock share its time.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands at `at` until moved.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Some(Arc::new(Mutex::new(at))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(t) => *t.lock().expect("clock lock poisoned"),
        }
    }

    /// Moves a fixed clock (the system clock moves by itself and ignores this).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(t) = &self.0 {
            *t.lock().expect("clock lock poisoned") = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_fixed_clock_stands_still_until_set_and_clones_share_it() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 30, 0).unwrap();
        let c = Clock::fixed(at);
        let twin = c.clone();
        assert_eq!(c.now(), at);
        twin.set(at + chrono::Duration::hours(1));
        assert_eq!(c.now(), at + chrono::Duration::hours(1));
    }
}
