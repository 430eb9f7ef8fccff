//! The `tracing` feature: a job runs, and its worker emits its lifecycle
//! events, inside the span that was current where it was submitted; the
//! events carry `job_id` and `worker` fields.
//!
//! Run with `cargo test --features tracing --test tracing`. Alone in its own
//! test binary: it sets the process's global subscriber, a small recorder
//! written here.
#![cfg(feature = "tracing")]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use harbor_pool::{JobResult, JobStatus, Pool};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
// `Current` is not re-exported by `tracing`.
use tracing_core::span::Current;

/// A span as the recorder knows it.
#[derive(Clone, Debug)]
struct SpanData {
    name: &'static str,
    fields: HashMap<String, String>,
    metadata: &'static Metadata<'static>,
    /// Handles to it still alive; 0 once closed.
    refs: usize,
}

/// An event as it was emitted: its fields (the message under "message"),
/// and the spans entered on its thread then, outermost first.
#[derive(Clone, Debug)]
struct Recorded {
    level: Level,
    target: String,
    fields: HashMap<String, String>,
    spans: Vec<SpanData>,
}

impl Recorded {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The value of field `field` of the span named `span` it ran in.
    fn span_field(&self, span: &str, field: &str) -> Option<&str> {
        self.spans
            .iter()
            .rev()
            .find(|s| s.name == span)
            .and_then(|s| s.fields.get(field))
            .map(String::as_str)
    }
}

/// Collects field values as text.
struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A subscriber that records every event with the spans entered around it.
struct Recorder {
    next_id: AtomicU64,
    spans: Mutex<HashMap<u64, SpanData>>,
    events: Mutex<Vec<Recorded>>,
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

static RECORDER: LazyLock<Recorder> = LazyLock::new(|| Recorder {
    next_id: AtomicU64::new(1),
    spans: Mutex::new(HashMap::new()),
    events: Mutex::new(Vec::new()),
});

/// A handle to install as the global subscriber.
struct Global;

impl Subscriber for Global {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let id = RECORDER.next_id.fetch_add(1, Ordering::Relaxed);
        let mut fields = HashMap::new();
        attributes.record(&mut Fields(&mut fields));
        let data = SpanData {
            name: attributes.metadata().name(),
            fields,
            metadata: attributes.metadata(),
            refs: 1,
        };
        lock(&RECORDER.spans).insert(id, data);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(data) = lock(&RECORDER.spans).get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut data.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(data) = lock(&RECORDER.spans).get_mut(&span.into_u64()) {
            data.refs += 1;
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let mut spans = lock(&RECORDER.spans);
        match spans.get_mut(&span.into_u64()) {
            Some(data) => {
                data.refs = data.refs.saturating_sub(1);
                data.refs == 0
            }
            None => false,
        }
    }

    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let ids = STACK.with(|stack| stack.borrow().clone());
        let spans = {
            let known = lock(&RECORDER.spans);
            ids.iter().filter_map(|id| known.get(id).cloned()).collect()
        };
        lock(&RECORDER.events).push(Recorded {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
            spans,
        });
    }

    fn enter(&self, span: &Id) {
        // A subscriber's own failure, for the test of a span that cannot be
        // entered.
        let refused = lock(&RECORDER.spans)
            .get(&span.into_u64())
            .is_some_and(|data| data.name == "refuses_entry");
        if refused {
            panic!("this subscriber refuses to enter `refuses_entry`");
        }
        STACK.with(|stack| stack.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        STACK.with(|stack| {
            let mut stack = stack.borrow_mut();
            if let Some(at) = stack.iter().rposition(|&id| id == span.into_u64()) {
                stack.remove(at);
            }
        });
    }

    fn current_span(&self) -> Current {
        let top = STACK.with(|stack| stack.borrow().last().copied());
        match top.and_then(|id| Some((id, lock(&RECORDER.spans).get(&id)?.metadata))) {
            Some((id, metadata)) => Current::new(Id::from_u64(id), metadata),
            None => Current::none(),
        }
    }
}

/// Sets the recorder as the global subscriber, once for both tests.
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tracing::subscriber::set_global_default(Global).unwrap());
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether every span named `name` whose field `field` is `value` is
/// closed (no handle to it is left).
fn closed(name: &str, field: &str, value: &str) -> bool {
    lock(&RECORDER.spans)
        .values()
        .filter(|s| s.name == name && s.fields.get(field).map(String::as_str) == Some(value))
        .all(|s| s.refs == 0)
}

/// Every event recorded so far with `job_id` equal to `id`.
fn events_of(id: &str) -> Vec<Recorded> {
    lock(&RECORDER.events)
        .iter()
        .filter(|event| event.field("job_id") == Some(id))
        .cloned()
        .collect()
}

/// Every event recorded so far whose message contains `text`.
fn events_saying(text: &str) -> Vec<Recorded> {
    lock(&RECORDER.events)
        .iter()
        .filter(|event| event.message().contains(text))
        .cloned()
        .collect()
}

#[test]
fn jobs_and_their_events_carry_the_submitting_span() {
    common::quiet_panics();
    install();
    let pool = Pool::builder()
        .workers(2)
        .thread_name("traced")
        .build()
        .unwrap();

    // A tracked job submitted in a request's span: its own event, and the
    // pool's events about it, are all inside that span.
    let (ok, failing) = tracing::info_span!("request", request_id = 7).in_scope(|| {
        let ok = pool
            .submit(|_| {
                tracing::info!("inside the job");
                Ok(1)
            })
            .unwrap();
        let failing = pool
            .submit(|_| -> JobResult<()> { panic!("boom") })
            .unwrap();
        (ok, failing)
    });
    // Submitted in another span: carries that one, not the request's.
    let other =
        tracing::info_span!("batch", batch = 3).in_scope(|| pool.submit(|_| Ok(2)).unwrap());
    let (ok_id, failing_id, other_id) = (
        ok.id().to_string(),
        failing.id().to_string(),
        other.id().to_string(),
    );
    assert_eq!(ok.join().unwrap(), 1);
    assert_eq!(
        failing.wait(common::PATIENCE),
        Some(JobStatus::Failed("boom".into()))
    );
    assert_eq!(other.join().unwrap(), 2);
    // The events after a job's status turned terminal come a moment later.
    common::join(&pool);
    assert!(common::eventually(|| {
        [&ok_id, &failing_id, &other_id]
            .iter()
            .all(|id| events_of(id).len() == 3)
    }));

    let inside = events_saying("inside the job");
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].span_field("request", "request_id"), Some("7"));

    for (id, last, level) in [
        (&ok_id, "ended completed", Level::DEBUG),
        (&failing_id, "panicked on traced-", Level::WARN),
    ] {
        let events = events_of(id);
        let texts: Vec<&str> = events.iter().map(Recorded::message).collect();
        assert!(texts[0].ends_with("submitted"), "{texts:?}");
        assert!(texts[1].contains("started on traced-"), "{texts:?}");
        assert!(texts[2].contains(last), "{texts:?}");
        assert_eq!(events[2].level, level);
        for event in &events {
            assert_eq!(
                event.span_field("request", "request_id"),
                Some("7"),
                "{event:?}"
            );
            assert!(event.span_field("batch", "batch").is_none(), "{event:?}");
        }
        // Every event on a worker names it.
        for event in &events[1..] {
            assert!(
                event
                    .field("worker")
                    .is_some_and(|w| w.starts_with("traced-")),
                "{event:?}"
            );
            assert_eq!(event.target, "harbor_pool::worker");
        }
    }
    let failed = &events_of(&failing_id)[2];
    assert_eq!(failed.field("location"), None, "not captured by default");

    // The finished jobs' records are retained, but hold their spans no
    // longer: the request's span is closed.
    assert!(pool.info(ok_id.parse().unwrap()).is_some());
    assert!(common::eventually(|| closed("request", "request_id", "7")));

    let events = events_of(&other_id);
    assert_eq!(events.len(), 3);
    for event in &events {
        assert_eq!(event.span_field("batch", "batch"), Some("3"));
        assert!(event.span_field("request", "request_id").is_none());
    }

    // An untracked job runs in its submitter's span, and so does the
    // pool's report of its panic.
    tracing::info_span!("request", request_id = 8).in_scope(|| {
        pool.execute(|| tracing::info!("inside untracked")).unwrap();
        pool.execute(|| panic!("untracked boom")).unwrap();
    });
    common::join(&pool);
    assert!(common::eventually(|| {
        !events_saying("untracked job panicked").is_empty()
    }));
    let inside = events_saying("inside untracked");
    assert_eq!(inside[0].span_field("request", "request_id"), Some("8"));
    let panicked = &events_saying("untracked job panicked")[0];
    assert_eq!(panicked.span_field("request", "request_id"), Some("8"));
    assert!(panicked.field("worker").is_some());
    assert!(panicked.field("job_id").is_none());
}

#[test]
fn worker_deaths_and_restarts_are_events_naming_the_worker() {
    common::quiet_panics();
    install();
    let pool = Pool::builder()
        .workers(1)
        .thread_name("reborn")
        .on_thread_start(|_| {
            static ONCE: std::sync::Once = std::sync::Once::new();
            let mut first = false;
            ONCE.call_once(|| first = true);
            if first {
                panic!("start hook");
            }
        })
        .build()
        .unwrap();
    assert!(common::eventually(|| {
        pool.stats().restarts == 1 && !events_saying("respawned worker reborn-0").is_empty()
    }));
    let died = events_saying("worker reborn-0 died: start hook");
    assert_eq!(died.len(), 1);
    assert_eq!(died[0].level, Level::ERROR);
    assert_eq!(died[0].field("worker"), Some("reborn-0"));
    let restarted = &events_saying("respawned worker reborn-0")[0];
    assert_eq!(restarted.field("worker"), Some("reborn-0"));
    assert_eq!(restarted.target, "harbor_pool::supervisor");
}

/// A job run inline (a job of the pool joined it) whose span the
/// subscriber fails to enter still runs and ends: a panic there would
/// leave it `Running` forever on a thread that goes on.
#[test]
fn an_inline_job_whose_span_cannot_be_entered_still_runs() {
    common::quiet_panics();
    install();
    let pool = std::sync::Arc::new(Pool::builder().workers(1).build().unwrap());
    let inner = std::sync::Arc::clone(&pool);
    let (child_id, child) = std::sync::mpsc::channel();
    let outer = pool
        .submit(move |_| {
            // Current (not entered) where the child is submitted: the
            // child's worker enters it.
            let span = tracing::info_span!("refuses_entry");
            let id = span.id().unwrap().into_u64();
            STACK.with(|stack| stack.borrow_mut().push(id));
            let handle = inner.submit(|_| Ok(5));
            STACK.with(|stack| stack.borrow_mut().retain(|&other| other != id));
            let handle = handle.unwrap();
            child_id.send(handle.id()).unwrap();
            // Runs the child here, inline.
            Ok(handle.join())
        })
        .unwrap();
    let child = child.recv_timeout(common::PATIENCE).unwrap();
    let joined = outer.join().unwrap();
    assert_eq!(joined.ok(), Some(5));
    assert_eq!(pool.status(child), Some(JobStatus::Completed));
}

/// An untracked job whose span the subscriber fails to enter still runs,
/// and costs the pool no thread.
#[test]
fn an_untracked_job_whose_span_cannot_be_entered_still_runs() {
    common::quiet_panics();
    install();
    let pool = Pool::builder().workers(1).build().unwrap();
    let (ran_tx, ran) = std::sync::mpsc::channel();
    // Current (not entered) where the job is submitted.
    let span = tracing::info_span!("refuses_entry");
    let id = span.id().unwrap().into_u64();
    STACK.with(|stack| stack.borrow_mut().push(id));
    let submitted = pool.execute(move || ran_tx.send(()).unwrap());
    STACK.with(|stack| stack.borrow_mut().retain(|&other| other != id));
    submitted.unwrap();
    ran.recv_timeout(common::PATIENCE).unwrap();
    assert!(pool.join_timeout(common::PATIENCE));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.restarts), (1, 0), "{stats:?}");
}
