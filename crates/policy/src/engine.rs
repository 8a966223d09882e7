//! The policy bundle in service, and replacing it without dropping requests.
//!
//! Readers take the current bundle with one atomic load; a reload builds the new
//! bundle off to the side and swaps it in only if it is valid. A failed reload
//! leaves the old bundle serving and remembers the error for `/readyz`.
//!
//! A change on disk is loaded only once it has held still for two polls: an
//! editor writing a file, or a copy of several files (a permit before the
//! forbid that narrows it), must not be put into service half-way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::bundle::PolicyBundle;
use crate::error::PolicyError;
use crate::load::{Fingerprint, PolicySources};

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing on disk changed.
    Unchanged,
    /// Files changed since the last poll; loading waits until they hold still.
    Settling,
    /// A new bundle is in service.
    Reloaded,
}

/// The state of the engine's policy loading.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// How many bundles have been put into service (1 after start).
    pub generation: u64,
    /// Number of policies in service.
    pub policies: usize,
    /// The error of the last reload attempt, if it failed; the previous bundle
    /// is still in service.
    pub last_error: Option<String>,
}

struct Tracking {
    /// The files as last loaded (or last found broken).
    fingerprint: Fingerprint,
    /// A changed state seen at the previous poll, not yet loaded.
    settling: Option<Fingerprint>,
    status: ReloadStatus,
}

/// Holds the policy bundle in service for a policy directory.
pub struct PolicyEngine {
    dir: PathBuf,
    current: ArcSwap<PolicyBundle>,
    tracking: Mutex<Tracking>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("dir", &self.dir)
            .field("status", &self.status())
            .finish()
    }
}

impl PolicyEngine {
    /// Loads `dir`. An invalid directory is an error: Mandate refuses to start
    /// rather than serve with no policies or half of them.
    pub fn load(dir: &Path) -> Result<PolicyEngine, PolicyError> {
        let fingerprint = Fingerprint::of_dir(dir)?;
        let bundle = PolicyBundle::from_sources(&PolicySources::read_dir(dir)?)?;
        let status = ReloadStatus {
            generation: 1,
            policies: bundle.policy_count(),
            last_error: None,
        };
        Ok(PolicyEngine {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(bundle),
            tracking: Mutex::new(Tracking {
                fingerprint,
                settling: None,
                status,
            }),
        })
    }

    /// The directory this engine loads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bundle in service now. Cheap; hold it for the length of one decision.
    pub fn current(&self) -> Arc<PolicyBundle> {
        self.current.load_full()
    }

    /// The loading status.
    pub fn status(&self) -> ReloadStatus {
        self.lock().status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.tracking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reloads if any policy, schema or entity file changed since the last
    /// attempt and has not changed since the previous poll. On error the old
    /// bundle stays in service and the error is returned and remembered; the
    /// same broken files are not retried until they change again.
    pub fn reload_if_changed(&self) -> Result<ReloadOutcome, PolicyError> {
        let fingerprint = Fingerprint::of_dir(&self.dir);
        let mut tracking = self.lock();
        if let Ok(f) = &fingerprint {
            if *f == tracking.fingerprint {
                tracking.settling = None;
                return Ok(ReloadOutcome::Unchanged);
            }
            if tracking.settling.as_ref() != Some(f) {
                tracking.settling = Some(f.clone());
                return Ok(ReloadOutcome::Settling);
            }
        }
        tracking.settling = None;
        self.reload_locked(&mut tracking, fingerprint)
    }

    /// Reloads unconditionally (SIGHUP).
    pub fn reload(&self) -> Result<ReloadOutcome, PolicyError> {
        let fingerprint = Fingerprint::of_dir(&self.dir);
        let mut tracking = self.lock();
        self.reload_locked(&mut tracking, fingerprint)
    }

    fn reload_locked(
        &self,
        tracking: &mut Tracking,
        fingerprint: Result<Fingerprint, PolicyError>,
    ) -> Result<ReloadOutcome, PolicyError> {
        // The fingerprint was taken before the files are read: if they change
        // meanwhile, the next poll sees a difference and loads them again.
        let attempt = fingerprint.map(|f| {
            let bundle = PolicySources::read_dir(&self.dir)
                .and_then(|sources| PolicyBundle::from_sources(&sources));
            (f, bundle)
        });
        let attempt = match attempt {
            Ok((f, Ok(bundle))) => Ok((f, bundle)),
            Ok((f, Err(e))) => {
                // Remembered as broken: not retried until the files change.
                tracking.fingerprint = f;
                Err(e)
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok((f, bundle)) => {
                tracking.fingerprint = f;
                tracking.status.generation += 1;
                tracking.status.policies = bundle.policy_count();
                tracking.status.last_error = None;
                self.current.store(Arc::new(bundle));
                Ok(ReloadOutcome::Reloaded)
            }
            Err(e) => {
                tracking.status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_change_is_loaded_only_after_it_holds_still_for_two_polls() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.cedar",
            "permit(principal, action, resource);",
        );
        let engine = PolicyEngine::load(dir.path()).unwrap();
        assert_eq!(
            engine.reload_if_changed().unwrap(),
            ReloadOutcome::Unchanged
        );
        // A half-written change: seen once, not loaded.
        write(
            dir.path(),
            "a.cedar",
            "permit(principal, action, resource);\n// more",
        );
        assert_eq!(engine.reload_if_changed().unwrap(), ReloadOutcome::Settling);
        assert_eq!(engine.status().generation, 1);
        // Still changing: still not loaded.
        write(
            dir.path(),
            "b.cedar",
            "forbid(principal, action, resource);",
        );
        assert_eq!(engine.reload_if_changed().unwrap(), ReloadOutcome::Settling);
        // Quiet for a poll: loaded, both files at once.
        assert_eq!(engine.reload_if_changed().unwrap(), ReloadOutcome::Reloaded);
        assert_eq!(engine.status().policies, 2);
    }

    #[test]
    fn broken_files_keep_the_old_policies_and_are_not_retried_until_they_change() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.cedar",
            "permit(principal, action, resource);",
        );
        let engine = PolicyEngine::load(dir.path()).unwrap();
        write(dir.path(), "a.cedar", "permit(principal");
        assert_eq!(engine.reload_if_changed().unwrap(), ReloadOutcome::Settling);
        assert!(engine.reload_if_changed().is_err());
        assert_eq!(engine.current().policy_count(), 1);
        assert!(engine.status().last_error.unwrap().contains("a.cedar"));
        assert_eq!(
            engine.reload_if_changed().unwrap(),
            ReloadOutcome::Unchanged
        );
        write(
            dir.path(),
            "a.cedar",
            "forbid(principal, action, resource);",
        );
        assert_eq!(engine.reload_if_changed().unwrap(), ReloadOutcome::Settling);
        assert_eq!(engine.reload_if_changed().unwrap(), ReloadOutcome::Reloaded);
        assert_eq!(engine.status().last_error, None);
    }
}
