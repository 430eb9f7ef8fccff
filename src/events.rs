//! The pool's lifecycle events, each emitted from one function here, and the
//! span a job carries from its submitter to its worker.
//!
//! Without the `tracing` feature each event is the `log` record it always
//! was (same level, target and text), and [`Span`] is an empty type that
//! costs nothing. With it, each event is a `tracing` event with `job_id` and
//! `worker` fields (where they apply) and the same text, and a job runs, and
//! its worker emits its events, inside the span that was current where it
//! was submitted. `tracing`'s own `log` feature is on, so a program that
//! installs no `tracing` subscriber still gets these events as `log`
//! records.
//!
//! Events go to the dispatcher of the thread that emits them: for a
//! worker's events that is the global default subscriber
//! (`tracing::subscriber::set_global_default`), not one set with
//! `with_default` on the submitting thread.
//!
//! A tracked job holds its span only until a worker takes it to run the job
//! ([`SpanSlot::take`]) or the job is discarded unrun, so the finished
//! records kept for status queries keep no span open.
//!
//! Every function here runs the user's logger or subscriber: call them after
//! the bookkeeping they report, with no lock held. Entering and leaving a
//! span runs the subscriber too; a panic there ends the worker's thread,
//! as a panicking logger does, and the drop guard fails its job.

use crate::forensics::JobPanic;
use crate::job::{JobId, JobStatus};

/// The span that was current when a job was submitted, entered around its
/// run on the worker.
#[cfg(feature = "tracing")]
pub(crate) struct Span(tracing::Span);

/// Nothing: without the `tracing` feature a job carries no span.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Span;

/// The guard of an entered [`Span`].
#[cfg(feature = "tracing")]
pub(crate) type Entered<'a> = tracing::span::Entered<'a>;

/// The guard of an entered [`Span`]: nothing without the `tracing` feature.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Entered<'a>(std::marker::PhantomData<&'a ()>);

impl Span {
    /// The current span, on the submitting thread.
    #[cfg(feature = "tracing")]
    pub(crate) fn current() -> Self {
        Span(tracing::Span::current())
    }

    /// Nothing to capture without the `tracing` feature.
    #[cfg(not(feature = "tracing"))]
    pub(crate) fn current() -> Self {
        Span
    }

    /// Enters the span until the guard is dropped. Contained: entering
    /// runs the subscriber (user code), and a panic there costs the job its
    /// span (`None`), not the worker its thread, nor a claimed job its run.
    #[cfg(feature = "tracing")]
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        crate::unwind::catch(|| self.0.enter()).ok()
    }

    /// Nothing to enter without the `tracing` feature (nothing can panic).
    #[cfg(not(feature = "tracing"))]
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        Some(Entered(std::marker::PhantomData))
    }
}

/// A tracked job's [`Span`], until the worker that runs the job takes it.
#[cfg(feature = "tracing")]
pub(crate) struct SpanSlot(std::sync::Mutex<Option<Span>>);

/// Nothing: without the `tracing` feature a job carries no span.
#[cfg(not(feature = "tracing"))]
pub(crate) struct SpanSlot;

impl SpanSlot {
    /// Holds the current span, on the submitting thread.
    #[cfg(feature = "tracing")]
    pub(crate) fn current() -> Self {
        SpanSlot(std::sync::Mutex::new(Some(Span::current())))
    }

    /// Nothing to hold without the `tracing` feature.
    #[cfg(not(feature = "tracing"))]
    pub(crate) fn current() -> Self {
        SpanSlot
    }

    /// Takes the span out (a disabled span once taken): called by the one
    /// worker that runs the job, or when the job is discarded unrun.
    #[cfg(feature = "tracing")]
    pub(crate) fn take(&self) -> Span {
        crate::sync::lock(&self.0)
            .take()
            .unwrap_or(Span(tracing::Span::none()))
    }

    /// Nothing to take without the `tracing` feature.
    #[cfg(not(feature = "tracing"))]
    pub(crate) fn take(&self) -> Span {
        Span
    }
}

/// A tracked job was accepted (on the submitting thread).
pub(crate) fn submitted(id: JobId) {
    #[cfg(not(feature = "tracing"))]
    log::trace!(target: "harbor_pool::pool", "job {id} submitted");
    #[cfg(feature = "tracing")]
    tracing::trace!(target: "harbor_pool::pool", job_id = %id, "job {id} submitted");
}

/// A worker started a tracked job.
pub(crate) fn started(id: JobId, worker: &str) {
    #[cfg(not(feature = "tracing"))]
    log::debug!(target: "harbor_pool::worker", "job {id} started on {worker}");
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "harbor_pool::worker",
        job_id = %id,
        worker,
        "job {id} started on {worker}"
    );
}

/// A tracked job that ran ended with `status`, without panicking.
pub(crate) fn ended(id: JobId, status: &JobStatus, worker: &str) {
    #[cfg(not(feature = "tracing"))]
    log::debug!(target: "harbor_pool::worker", "job {id} ended {status} on {worker}");
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "harbor_pool::worker",
        job_id = %id,
        worker,
        status = status.as_str(),
        "job {id} ended {status} on {worker}"
    );
}

/// A job panicked: a tracked one (`Some(id)`) or an untracked one. The
/// pool's one report of it; the location is there when captured.
pub(crate) fn panicked(id: Option<JobId>, panic: &JobPanic) {
    let (worker, message, at) = (&panic.thread, &panic.message, panic.at());
    #[cfg(not(feature = "tracing"))]
    match id {
        Some(id) => log::warn!(
            target: "harbor_pool::worker",
            "job {id} panicked on {worker}{at}: {message}"
        ),
        None => log::warn!(
            target: "harbor_pool::worker",
            "untracked job panicked on {worker}{at}: {message}"
        ),
    }
    #[cfg(feature = "tracing")]
    {
        let location = panic.location.as_ref().map(tracing::field::display);
        match id {
            Some(id) => tracing::warn!(
                target: "harbor_pool::worker",
                job_id = %id,
                worker = worker.as_str(),
                location,
                "job {id} panicked on {worker}{at}: {message}"
            ),
            None => tracing::warn!(
                target: "harbor_pool::worker",
                worker = worker.as_str(),
                location,
                "untracked job panicked on {worker}{at}: {message}"
            ),
        }
    }
}

/// A worker thread died while running a job (from its drop guard): a
/// tracked one (`Some(id)`) or an untracked one. `message` is the text the
/// job was failed with, naming the worker.
pub(crate) fn job_lost(worker: &str, id: Option<JobId>, message: &str) {
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (worker, id);
        log::error!(target: "harbor_pool::worker", "{message}");
    }
    #[cfg(feature = "tracing")]
    match id {
        Some(id) => tracing::error!(
            target: "harbor_pool::worker",
            job_id = %id,
            worker,
            "{message}"
        ),
        None => tracing::error!(target: "harbor_pool::worker", worker, "{message}"),
    }
}

/// The supervisor joined a worker thread that died, with its panic message.
pub(crate) fn worker_died(worker: &str, message: &str) {
    #[cfg(not(feature = "tracing"))]
    log::error!(target: "harbor_pool::supervisor", "worker {worker} died: {message}");
    #[cfg(feature = "tracing")]
    tracing::error!(
        target: "harbor_pool::supervisor",
        worker,
        "worker {worker} died: {message}"
    );
}

/// The supervisor respawned a worker.
pub(crate) fn restarted(worker: &str) {
    #[cfg(not(feature = "tracing"))]
    log::info!(target: "harbor_pool::supervisor", "respawned worker {worker}");
    #[cfg(feature = "tracing")]
    tracing::info!(
        target: "harbor_pool::supervisor",
        worker,
        "respawned worker {worker}"
    );
}
