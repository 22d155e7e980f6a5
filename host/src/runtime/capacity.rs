//! Instance slots shared by every app of a server, and the reclaiming of idle
//! instances. The pooling allocator preallocates a fixed number of instance slots
//! (address space for each one's memories and tables); with many tenants those
//! slots, not the apps' own limits, are what runs out. Every live instance holds
//! one slot, idle or busy. When none is free, the least recently used idle
//! instance of any app gives its slot up, so a burst on one tenant can take the
//! slots other tenants are not using, and an idle tenant costs no slot at all
//! once its instances have been reclaimed.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::app::App;

/// How often idle instances are looked for: reclaiming is about memory, so a
/// second of slack on a timeout of a minute does not matter, and walking a
/// thousand apps once a second costs microseconds.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How long an instantiation waiting for a slot sleeps between looks when every
/// slot is busy (none idle to reclaim): short against a request's latency, long
/// enough not to spin.
const SLOT_POLL: Duration = Duration::from_millis(2);

pub struct Capacity {
    slots: Arc<Semaphore>,
    total: usize,
    /// Apps that may hold idle instances, for reclaiming. Weak: an app replaced
    /// by a deploy goes away once its last request is done.
    apps: Mutex<Vec<Weak<App>>>,
}

/// One instance slot, returned when the instance is dropped.
pub struct SlotPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Capacity {
    pub fn new(total: usize) -> Arc<Capacity> {
        let capacity = Arc::new(Capacity {
            slots: Arc::new(Semaphore::new(total)),
            total,
            apps: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&capacity);
        // Outside a tokio runtime (the `compile` command) nothing idles long enough
        // to matter, so there is no reaper.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let mut tick = tokio::time::interval(REAP_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(capacity) = weak.upgrade() else { break };
                    capacity.reap_idle();
                }
            });
        }
        capacity
    }

    /// Slots in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Slots held by live instances now.
    pub fn in_use(&self) -> usize {
        self.total - self.slots.available_permits()
    }

    pub fn register(&self, app: &Arc<App>) {
        let mut apps = self.apps.lock().unwrap();
        apps.retain(|a| a.strong_count() > 0);
        apps.push(Arc::downgrade(app));
    }

    /// A slot for a new instance: a free one, or one reclaimed from the least
    /// recently used idle instance of any app, or the first to come free.
    pub async fn acquire(&self) -> SlotPermit {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return SlotPermit(permit);
            }
            if !self.reclaim_one() {
                tokio::time::sleep(SLOT_POLL).await;
            }
        }
    }

    /// Drops the idle instance unused the longest, over all apps.
    fn reclaim_one(&self) -> bool {
        let apps: Vec<Arc<App>> = self.apps.lock().unwrap().iter().filter_map(Weak::upgrade).collect();
        let oldest = apps
            .iter()
            .filter_map(|app| Some((app.oldest_idle()?, app)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((since, app)) => app.drop_idle_since(since),
            None => false,
        }
    }

    /// Drops instances idle longer than their app's idle timeout.
    fn reap_idle(&self) {
        let apps: Vec<Arc<App>> = {
            let mut apps = self.apps.lock().unwrap();
            apps.retain(|a| a.strong_count() > 0);
            apps.iter().filter_map(Weak::upgrade).collect()
        };
        let now = Instant::now();
        for app in apps {
            app.drop_idle_before(now.checked_sub(app.config().idle_timeout).unwrap_or(now));
        }
    }
}
