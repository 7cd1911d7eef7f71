//! Pod garbage collection (reference/rkt.md §2.11), in one pass: crashed runners are recorded
//! as exited, exited pods past the grace period are marked `Garbage`, prepared pods past the
//! expiry are marked too, and garbage is deleted. A pod whose lock is held is never touched.

use std::fs;
use std::path::PathBuf;

use super::fsio::{self, TMP_PREFIX};
use super::state::PodState;
use super::store::{PodLock, read_record, remove_tmp_files, write_record};
use super::{PodError, PodStore};
use crate::schema::PodUuid;

/// What one gc pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcReport {
    /// `Running` records whose runner was gone, now recorded as `Exited`.
    pub crashed: Vec<PodUuid>,
    /// Exited past the grace period, or prepared past the expiry: marked `Garbage`.
    pub marked: Vec<PodUuid>,
    /// Deleted.
    pub removed: Vec<PodUuid>,
    /// Skipped because their lock is held.
    pub busy: Vec<PodUuid>,
    /// Temp files, half-created pods, interrupted deletions and dangling names removed.
    pub leftovers: Vec<PathBuf>,
    /// Pods gc could not handle (e.g. a corrupt `state.json`), with the reason; gc goes on.
    pub errors: Vec<String>,
}

impl PodStore {
    /// One gc pass at time `now` (unix seconds).
    pub fn gc(
        &self,
        grace_secs: u64,
        expire_prepared_secs: u64,
        now: i64,
    ) -> Result<GcReport, PodError> {
        let mut report = GcReport::default();
        self.gc_trash(&mut report)?;
        let limits = (secs(grace_secs), secs(expire_prepared_secs));
        for uuid in self.uuids()? {
            let result = self.gc_pod(uuid, limits, now, &mut report);
            // A pod that vanished meanwhile was removed by someone else: not an error.
            if let Err(e) = result
                && self.pod_dir(uuid).exists()
            {
                report.errors.push(format!("pod {uuid}: {e}"));
            }
        }
        self.gc_names(&mut report)?;
        Ok(report)
    }

    fn gc_pod(
        &self,
        uuid: PodUuid,
        (grace, expire): (i64, i64),
        now: i64,
        report: &mut GcReport,
    ) -> Result<(), PodError> {
        let dir = self.pod_dir(uuid);
        let Some(lock) = PodLock::try_acquire(&dir, uuid)? else {
            report.busy.push(uuid);
            return Ok(());
        };
        report.leftovers.extend(remove_tmp_files(&dir)?);
        let Some(mut record) = read_record(&dir)? else {
            report.leftovers.push(dir);
            return self.delete(uuid, None, lock);
        };
        if record.state == PodState::Running {
            record.advance(PodState::Exited, now)?;
            write_record(&dir, &record)?;
            report.crashed.push(uuid);
        }
        let expired = match record.state {
            PodState::Exited => now - record.exited.unwrap_or(record.created) >= grace,
            PodState::Prepared => now - record.created >= expire,
            _ => false,
        };
        if expired {
            record.advance(PodState::Garbage, now)?;
            write_record(&dir, &record)?;
            report.marked.push(uuid);
        }
        if record.state == PodState::Garbage {
            self.delete(uuid, record.name.as_ref(), lock)?;
            report.removed.push(uuid);
        }
        Ok(())
    }

    /// Finishes deletions a crash interrupted, and removes temp entries in `pods/`.
    fn gc_trash(&self, report: &mut GcReport) -> Result<(), PodError> {
        report.leftovers.extend(remove_tmp_files(self.pods_dir())?);
        let trash = self.trash_dir();
        let entries = fs::read_dir(&trash).map_err(super::io_err("read", &trash))?;
        for e in entries {
            let path = e.map_err(super::io_err("read", &trash))?.path();
            match fsio::remove_tree(&path) {
                Ok(()) => report.leftovers.push(path),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        Ok(())
    }

    /// Removes name links whose pod is gone or garbage, and temp links, under the names lock.
    fn gc_names(&self, report: &mut GcReport) -> Result<(), PodError> {
        let _names = self.names_lock()?;
        let names = self.names_dir();
        let entries = fs::read_dir(&names).map_err(super::io_err("read", &names))?;
        for e in entries {
            let e = e.map_err(super::io_err("read", &names))?;
            let file_name = e.file_name().to_string_lossy().into_owned();
            let dead = match file_name.parse() {
                _ if file_name.starts_with(TMP_PREFIX) => true,
                Ok(name) => self.name_owner(&name)?.is_none(),
                Err(_) => false,
            };
            if dead && fs::remove_file(e.path()).is_ok() {
                report.leftovers.push(e.path());
            }
        }
        fsio::sync_dir(&names)
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}
