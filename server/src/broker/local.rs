//! The in-process broker: publishing is local delivery.

use super::{Event, EventSink};
use std::sync::Arc;

/// Delivers every published event straight to this node's sink.
#[derive(Clone)]
pub struct LocalBroker {
    sink: Arc<dyn EventSink>,
}

impl std::fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalBroker")
    }
}

impl LocalBroker {
    /// A broker that delivers to `sink`.
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self { sink }
    }

    pub(super) fn publish(&self, event: Event) {
        self.sink.deliver(Arc::new(event));
    }
}
