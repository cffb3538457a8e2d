//! The `[retention]` section: how often the retention worker looks for
//! consultations whose messages are due for deletion, and where it exports
//! them first, if anywhere. Each clinic's retention itself is a clinic
//! setting (`message_retention_days` of its policy), not configuration.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Seconds between two retention passes.
pub const RETENTION_INTERVAL_SECS: u64 = 3_600;

/// Message retention.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between two passes of the retention worker (the first runs
    /// at start).
    pub interval_secs: u64,
    /// When set, each consultation's messages are written to
    /// `<export_dir>/<consultation id>.jsonl` (one JSON object per message)
    /// before they are deleted; a failed export deletes nothing.
    pub export_dir: Option<PathBuf>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_secs: RETENTION_INTERVAL_SECS,
            export_dir: None,
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.interval_secs == 0 {
            problems.push("retention.interval_secs must be at least 1".into());
        }
        if self
            .export_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            problems.push("retention.export_dir must not be empty when set".into());
        }
    }
}
