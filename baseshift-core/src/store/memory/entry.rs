//! One workflow as the memory store keeps it.

use crate::hash::FastMap;
use crate::ids::Name;
use crate::state::{CompactValue, JobRecord, WorkflowRecord};

/// One workflow: its header and its job records in template order.
///
/// The header is kept with a `null` input; the input itself is kept apart in its compact
/// form (a one-entry JSON object costs a 640-byte B-tree node as a `Value`, its length as
/// text) and put back by [`WorkflowEntry::record`]: a backlog of waiting workflows is
/// mostly inputs nobody reads until the workflow's first job runs.
#[derive(Debug)]
pub(super) struct WorkflowEntry {
    pub(super) header: WorkflowRecord,
    input: CompactValue,
    pub(super) jobs: Vec<JobRecord>,
    /// Job positions by id, for workflows of more than [`SCAN_LIMIT`] jobs; smaller
    /// ones are scanned (no map per workflow: most workflows are small). Boxed, and
    /// `None` for those: with the map's 40 bytes inline the entry took the allocator's
    /// 384-byte size class, 320 without (64 bytes per workflow the store keeps).
    positions: Option<Box<FastMap<Name, usize>>>,
}

/// Up to this many jobs, a workflow's jobs are found by a scan rather than a map.
pub(super) const SCAN_LIMIT: usize = 16;

impl WorkflowEntry {
    /// `positions` is empty for a workflow the caller left to scans (see [`SCAN_LIMIT`]).
    pub(super) fn new(mut header: WorkflowRecord, jobs: Vec<JobRecord>, positions: FastMap<Name, usize>) -> Box<Self> {
        let input = CompactValue::new(std::mem::take(&mut header.input));
        let positions = (!positions.is_empty()).then(|| Box::new(positions));
        Box::new(WorkflowEntry { header, input, jobs, positions })
    }

    /// The header as written, input included.
    pub(super) fn record(&self) -> WorkflowRecord {
        let mut header = self.header.clone();
        header.input = self.input.to_value();
        header
    }

    /// Replaces the header (and the input with the one it carries), leaving the old
    /// header (its input `null`) in `header`.
    pub(super) fn swap_header(&mut self, header: &mut WorkflowRecord) {
        self.input = CompactValue::new(std::mem::take(&mut header.input));
        std::mem::swap(&mut self.header, header);
    }

    pub(super) fn position(&self, job_id: &str) -> Option<usize> {
        match &self.positions {
            None => self.jobs.iter().position(|j| j.job_id == job_id),
            Some(positions) => positions.get(job_id).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records the store keeps per workflow stay within the allocator's size classes
    /// they were fitted to (mimalloc's 320-byte class): one field more and every kept
    /// workflow costs 64 bytes more.
    #[test]
    fn kept_records_fit_their_size_classes() {
        assert!(std::mem::size_of::<WorkflowEntry>() <= 320, "{}", std::mem::size_of::<WorkflowEntry>());
        assert!(std::mem::size_of::<JobRecord>() <= 320, "{}", std::mem::size_of::<JobRecord>());
    }
}
