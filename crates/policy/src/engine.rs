//! The policy bundle in service, and replacing it without dropping requests.
//!
//! Readers take the current bundle with one atomic load; a reload builds the new
//! bundle off to the side and swaps it in only if it is valid. A failed reload
//! leaves the old bundle serving and remembers the error for `/readyz`.

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
    fingerprint: Fingerprint,
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
    /// attempt. On error the old bundle stays in service and the error is
    /// returned and remembered; the same broken files are not retried until
    /// they change again.
    pub fn reload_if_changed(&self) -> Result<ReloadOutcome, PolicyError> {
        let fingerprint = Fingerprint::of_dir(&self.dir);
        let mut tracking = self.lock();
        match &fingerprint {
            Ok(f) if *f == tracking.fingerprint => return Ok(ReloadOutcome::Unchanged),
            _ => {}
        }
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
        let attempt = fingerprint.and_then(|f| {
            let bundle = PolicyBundle::from_sources(&PolicySources::read_dir(&self.dir)?)?;
            Ok((f, bundle))
        });
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
                // Remember the broken state so the watcher does not retry it
                // every tick; a further edit changes the fingerprint again.
                if let Ok(f) = Fingerprint::of_dir(&self.dir) {
                    tracking.fingerprint = f;
                }
                tracking.status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}
