//! How often one patient may register push devices on this node: a fixed
//! window per person (`notify.device_registration_limit`), so an app (or
//! anyone holding a patient's token) cannot churn through device rows.

use crate::config::RateLimit;
use crate::domain::PersonKey;
use dashmap::DashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Registrations per person in the current window.
#[derive(Debug, Default)]
pub struct DeviceRegistrations {
    windows: DashMap<PersonKey, (Instant, u32)>,
}

impl DeviceRegistrations {
    /// Counts one registration of `person`; false when `limit` is used up
    /// for the current window.
    pub fn try_register(&self, person: &PersonKey, limit: RateLimit) -> bool {
        let window = Duration::from_secs(limit.window_secs);
        let now = Instant::now();
        // Forget finished windows now and then, so the map stays small.
        if self.windows.len() > 10_000 {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let mut entry = self.windows.entry(person.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        if entry.1 >= limit.max {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_person_gets_max_registrations_per_window_and_others_are_apart() {
        let limits = DeviceRegistrations::default();
        let limit = RateLimit {
            max: 2,
            window_secs: 60,
        };
        let alex = PersonKey::new(&"c1".into(), &"pat-alex".into());
        let sam = PersonKey::new(&"c1".into(), &"pat-sam".into());
        assert!(limits.try_register(&alex, limit));
        assert!(limits.try_register(&alex, limit));
        assert!(!limits.try_register(&alex, limit));
        assert!(limits.try_register(&sam, limit), "another person's window");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limits.try_register(&alex, limit), "a new window");
    }
}
