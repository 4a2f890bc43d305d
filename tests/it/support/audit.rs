//! The audit log a test broker writes to `<data_dir>/audit.log`, one JSON object a line
//! (its fields: README.md).

use std::path::Path;
use std::time::Duration;

use crate::support::broker::TestBroker;
use crate::support::wait::eventually;

/// Every line of `<data_dir>/audit.log`, parsed.
pub(crate) fn audit_lines_in(data_dir: &Path) -> Vec<serde_json::Value> {
    parse_lines(&std::fs::read_to_string(data_dir.join("audit.log")).unwrap_or_default())
}

/// `<data_dir>/audit.log` as it is on disk (empty when missing), for checks of its framing.
pub(crate) fn audit_text_in(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("audit.log")).unwrap_or_default()
}

fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl TestBroker {
    /// Every audit line so far, parsed.
    pub(crate) fn audit_lines(&self) -> Vec<serde_json::Value> {
        parse_lines(&self.audit_text())
    }

    /// The raw audit log.
    pub(crate) fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit_file).unwrap_or_default()
    }

    /// The audit lines once `done` holds for them (refusals are appended asynchronously).
    pub(crate) async fn audit_until(
        &self,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        eventually(Duration::from_secs(5), || {
            let lines = self.audit_lines();
            let ok = done(&lines);
            async move { ok.then_some(lines) }
        })
        .await
    }
}

/// Every line of the gate's audit log, `<data_dir>/gate-audit.log`, once `done` holds for them.
pub(crate) async fn gate_audit_until(
    data_dir: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    eventually(Duration::from_secs(5), || {
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(data_dir.join("gate-audit.log"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        let ok = done(&lines);
        async move { ok.then_some(lines) }
    })
    .await
}
