//! Why the exchange cannot serve, if it cannot: a journal failure, an auction task that
//! stopped on a bug (both until a restart), or a required recorder that is down (until it is
//! back). The gRPC layer reports NOT_SERVING while any reason stands.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

pub struct Health {
    reasons: Mutex<BTreeMap<String, String>>,
    /// The standing reasons joined, `None` while serving.
    summary: watch::Sender<Option<String>>,
}

impl Default for Health {
    fn default() -> Health {
        Health { reasons: Mutex::new(BTreeMap::new()), summary: watch::channel(None).0 }
    }
}

impl Health {
    /// `source` cannot serve, for `why`.
    pub fn set(&self, source: &str, why: String) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        if reasons.get(source) != Some(&why) {
            reasons.insert(source.to_owned(), why);
            self.publish(&reasons);
        }
    }

    /// `source` serves again.
    pub fn clear(&self, source: &str) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        if reasons.remove(source).is_some() {
            self.publish(&reasons);
        }
    }

    fn publish(&self, reasons: &BTreeMap<String, String>) {
        let summary = (!reasons.is_empty()).then(|| reasons.values().cloned().collect::<Vec<_>>().join("; "));
        self.summary.send_replace(summary);
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.summary.subscribe()
    }

    pub fn current(&self) -> Option<String> {
        self.summary.borrow().clone()
    }
}
