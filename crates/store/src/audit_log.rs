//! Group commit for the audit log.
//!
//! Every request handler must know its audit events are durable before it
//! answers, but one fsync per event would cap throughput at the disk's sync
//! rate. So handlers queue their events and wait; one writer task per node takes
//! whatever is queued, seals it onto the chain, writes it in one transaction and
//! wakes every waiter. Under load, one fsync covers hundreds of events.

use std::fmt;
use std::mem;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use mandate_core::{AuditEvent, AuditRecord, ChainHead, HeadSealer};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{AuditError, StoreError};
use crate::store::Store;

/// Limits of an [`AuditLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLogConfig {
    /// Most events written in one transaction (a single larger append is still
    /// written whole). Default 1024.
    pub max_batch: usize,
    /// Most events queued and not yet committed; beyond it `append` waits.
    /// Bounds memory under a write stall. Default 65536.
    pub queue_capacity: usize,
}

impl Default for AuditLogConfig {
    fn default() -> AuditLogConfig {
        AuditLogConfig {
            max_batch: 1024,
            queue_capacity: 65536,
        }
    }
}

/// One node's audit chain, appended to with group commit. Cheap to clone; all
/// clones feed the same writer.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    node_id: String,
    /// `None` once shut down. Held only to send, never across an await.
    queue: RwLock<Option<mpsc::UnboundedSender<Pending>>>,
    /// One permit per queued event.
    room: Arc<Semaphore>,
    capacity: u32,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// One `append` call waiting for its events to be committed.
struct Pending {
    events: Vec<AuditEvent>,
    done: oneshot::Sender<Result<(), AuditError>>,
    /// Returned to the queue when the batch is done.
    _room: OwnedSemaphorePermit,
}

impl AuditLog {
    /// Loads `node_id`'s chain head from `store` (registering the chain, sealed,
    /// if it is new) and starts the writer task. Every head written is sealed
    /// with `sealer`.
    pub async fn start(
        store: Arc<dyn Store>,
        node_id: String,
        sealer: HeadSealer,
        config: AuditLogConfig,
    ) -> Result<AuditLog, StoreError> {
        let head = match store.audit_head(&node_id).await? {
            Some(head) => head,
            None => {
                let genesis = ChainHead::GENESIS;
                store
                    .register_audit_chain(&node_id, &sealer.seal(&node_id, &genesis))
                    .await?;
                genesis
            }
        };
        let capacity = u32::try_from(config.queue_capacity.clamp(1, Semaphore::MAX_PERMITS))
            .unwrap_or(u32::MAX);
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            store,
            sealer,
            node_id: node_id.clone(),
            head: Some(head),
            max_batch: config.max_batch.max(1),
            queue: receiver,
            carried: None,
        };
        let handle = tokio::spawn(writer.run());
        Ok(AuditLog {
            shared: Arc::new(Shared {
                node_id,
                queue: RwLock::new(Some(sender)),
                room: Arc::new(Semaphore::new(capacity as usize)),
                capacity,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The node whose chain this is.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// Appends `events` in order and returns once they are committed. On `Err`
    /// the caller must fail closed: treat the events as not recorded.
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        if events.is_empty() {
            let queue = self.shared.queue.read();
            let open = queue.unwrap_or_else(PoisonError::into_inner).is_some();
            return if open {
                Ok(())
            } else {
                Err(AuditError::Closed)
            };
        }
        let wanted = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let room = Arc::clone(&self.shared.room)
            .acquire_many_owned(wanted.min(self.shared.capacity))
            .await
            .map_err(|_| AuditError::Closed)?;
        let (done, committed) = oneshot::channel();
        {
            let queue = self
                .shared
                .queue
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let sender = queue.as_ref().ok_or(AuditError::Closed)?;
            let pending = Pending {
                events,
                done,
                _room: room,
            };
            sender.send(pending).map_err(|_| AuditError::Closed)?;
        }
        // The writer drops `done` unanswered only if it died.
        committed.await.unwrap_or(Err(AuditError::Closed))
    }

    /// Stops taking events, commits everything already queued and waits for
    /// the writer to finish. Later appends fail with [`AuditError::Closed`].
    pub async fn shutdown(&self) {
        self.shared
            .queue
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.shared.room.close();
        let handle = self.shared.writer.lock().await.take();
        if let Some(handle) = handle
            && let Err(err) = handle.await
        {
            tracing::error!(node = %self.shared.node_id, error = %err, "audit writer task failed");
        }
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

/// The one task that seals and writes a node's records.
struct Writer {
    store: Arc<dyn Store>,
    sealer: HeadSealer,
    node_id: String,
    /// The committed head, or `None` after a failed write (it may have landed
    /// anyway), to be reloaded from the store before the next batch.
    head: Option<ChainHead>,
    max_batch: usize,
    queue: mpsc::UnboundedReceiver<Pending>,
    /// An append taken off the queue that did not fit the last batch.
    carried: Option<Pending>,
}

impl Writer {
    async fn run(mut self) {
        while let Some(mut batch) = self.next_batch().await {
            let outcome = self
                .commit(&mut batch)
                .await
                .map_err(|err| AuditError::Write(Arc::new(err)));
            for pending in batch {
                // A waiter that gave up is no longer listening; that is fine.
                let _ = pending.done.send(outcome.clone());
            }
        }
    }

    /// Waits for one append, then takes whatever else is queued, up to
    /// `max_batch` events. `None` once the queue is closed and empty.
    async fn next_batch(&mut self) -> Option<Vec<Pending>> {
        let first = match self.carried.take() {
            Some(pending) => pending,
            None => self.queue.recv().await?,
        };
        let mut count = first.events.len();
        let mut batch = vec![first];
        while count < self.max_batch {
            let Ok(pending) = self.queue.try_recv() else {
                break;
            };
            if count + pending.events.len() > self.max_batch {
                self.carried = Some(pending);
                break;
            }
            count += pending.events.len();
            batch.push(pending);
        }
        Some(batch)
    }

    /// Seals `batch` onto the head and writes it in one transaction.
    async fn commit(&mut self, batch: &mut [Pending]) -> Result<(), StoreError> {
        let head = match self.head.take() {
            Some(head) => head,
            None => self
                .store
                .audit_head(&self.node_id)
                .await?
                .unwrap_or(ChainHead::GENESIS),
        };
        let mut tip = head;
        let records: Vec<AuditRecord> = batch
            .iter_mut()
            .flat_map(|pending| mem::take(&mut pending.events))
            .map(|event| {
                let record = AuditRecord::seal(&self.node_id, tip, event);
                tip = record.head();
                record
            })
            .collect();
        let started = Instant::now();
        let seal = self.sealer.seal(&self.node_id, &tip);
        let written = self.store.append_audit(&records, &seal).await;
        metrics::histogram!("mandate_audit_write_seconds").record(started.elapsed().as_secs_f64());
        match written {
            Ok(()) => {
                self.head = Some(tip);
                metrics::counter!("mandate_audit_records_total").increment(records.len() as u64);
                metrics::histogram!("mandate_audit_batch_size").record(records.len() as f64);
                Ok(())
            }
            Err(err) => {
                // `self.head` stays `None`: reload before the next batch.
                metrics::counter!("mandate_audit_write_errors_total").increment(1);
                tracing::error!(node = %self.node_id, records = records.len(), error = %err, "audit write failed");
                Err(err)
            }
        }
    }
}
