//! The demo jobs `POST /jobs` starts: their JSON spec and what each runs
//! on a `job` worker.

use std::time::Duration;

use harbor_pool::{CancelToken, JobResult};
use serde_json::Value;

/// The longest a sleep demo job, or a progress job's steps in all, may take.
pub(crate) const DEMO_SLEEP_MAX: Duration = Duration::from_secs(3600);
/// The most steps a progress job may have.
pub(crate) const PROGRESS_STEPS_MAX: u64 = 1_000_000;

/// A parsed `POST /jobs` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JobSpec {
    pub(crate) demo: Demo,
    pub(crate) timeout: Option<Duration>,
}

/// The demo jobs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Demo {
    /// Sleeps, waking early when cancelled.
    Sleep(Duration),
    /// Counts to a number, checking its token every 64 Ki steps.
    Count(u64),
    /// Panics with this message.
    Panic(String),
    /// Returns this error.
    Fail(String),
    /// Sleeps `step` this many times, reporting progress after each.
    Progress { steps: u64, step: Duration },
}

const KINDS: &str = "\"sleep\", \"count\", \"progress\", \"panic\" or \"fail\"";

impl JobSpec {
    /// Parses a `POST /jobs` body; the error is the 400's message.
    pub(crate) fn parse(body: &[u8]) -> Result<JobSpec, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| format!("malformed JSON body: {err}"))?;
        let object = value
            .as_object()
            .ok_or("the body must be a JSON object such as {\"kind\":\"sleep\",\"ms\":2000}")?;
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the body needs a string \"kind\": one of {KINDS}"))?;
        let number = |field: &str| {
            object
                .get(field)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("a {kind} job needs \"{field}\", a non-negative integer"))
        };
        let message = |default: &str| match object.get("message") {
            None => Ok(default.to_owned()),
            Some(Value::String(message)) => Ok(message.clone()),
            Some(_) => Err("\"message\" must be a string".to_owned()),
        };
        let demo = match kind {
            "sleep" => {
                let ms = Duration::from_millis(number("ms")?);
                if ms > DEMO_SLEEP_MAX {
                    return Err(format!("\"ms\" may be at most {}", millis(DEMO_SLEEP_MAX)));
                }
                Demo::Sleep(ms)
            }
            "count" => Demo::Count(number("to")?),
            "progress" => {
                let steps = number("steps")?;
                let ms = number("ms")?;
                if steps > PROGRESS_STEPS_MAX {
                    return Err(format!("\"steps\" may be at most {PROGRESS_STEPS_MAX}"));
                }
                if steps.saturating_mul(ms) > millis(DEMO_SLEEP_MAX) {
                    return Err(format!(
                        "\"steps\" times \"ms\" may be at most {}",
                        millis(DEMO_SLEEP_MAX)
                    ));
                }
                Demo::Progress {
                    steps,
                    step: Duration::from_millis(ms),
                }
            }
            "panic" => Demo::Panic(message("deliberate panic in a demo job")?),
            "fail" => Demo::Fail(message("deliberate failure in a demo job")?),
            other => return Err(format!("unknown kind {other:?}; expected {KINDS}")),
        };
        let timeout = match object.get("timeout_ms") {
            None => None,
            Some(value) => Some(Duration::from_millis(
                value
                    .as_u64()
                    .ok_or("\"timeout_ms\" must be a non-negative integer")?,
            )),
        };
        Ok(JobSpec { demo, timeout })
    }
}

impl Demo {
    /// Runs on a `job` worker.
    pub(crate) fn run(self, token: &CancelToken) -> JobResult<()> {
        match self {
            Demo::Sleep(duration) => token.sleep(duration)?,
            Demo::Count(to) => {
                let mut sum = 0_u64;
                for i in 0..to {
                    if i % (1 << 16) == 0 {
                        token.check()?;
                    }
                    sum = sum.wrapping_add(std::hint::black_box(i));
                }
                std::hint::black_box(sum);
            }
            Demo::Progress { steps, step } => {
                token.set_progress(0, Some(steps));
                for done in 1..=steps {
                    token.sleep(step)?;
                    token.set_progress(done, Some(steps));
                    token.set_progress_message(format!("step {done} of {steps}"));
                }
            }
            Demo::Panic(message) => panic!("{message}"),
            Demo::Fail(message) => return Err(message.into()),
        }
        Ok(())
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses() {
        let parse = |body: &str| JobSpec::parse(body.as_bytes());
        assert_eq!(
            parse(r#"{"kind":"sleep","ms":5,"timeout_ms":7}"#),
            Ok(JobSpec {
                demo: Demo::Sleep(Duration::from_millis(5)),
                timeout: Some(Duration::from_millis(7)),
            })
        );
        assert_eq!(
            parse(r#"{"kind":"progress","steps":3,"ms":10}"#).map(|spec| spec.demo),
            Ok(Demo::Progress {
                steps: 3,
                step: Duration::from_millis(10)
            })
        );
        assert_eq!(
            parse(r#"{"kind":"panic"}"#).map(|spec| spec.demo),
            Ok(Demo::Panic("deliberate panic in a demo job".into()))
        );
        for (body, mentions) in [
            (r#"{"kind":"progress","ms":1}"#, "steps"),
            (r#"{"kind":"progress","steps":1}"#, "ms"),
            (
                r#"{"kind":"progress","steps":2000000,"ms":0}"#,
                "at most 1000000",
            ),
            (r#"{"kind":"progress","steps":1000,"ms":3600000}"#, "times"),
            (r#"{"kind":"sleep","ms":3600001}"#, "at most 3600000"),
            (r#"{"kind":"dance"}"#, "\"progress\""),
        ] {
            let error = parse(body).expect_err(body);
            assert!(error.contains(mentions), "{body}: {error}");
        }
    }

    #[test]
    fn a_progress_job_reports_each_step() {
        let pool = harbor_pool::Pool::new(1).unwrap();
        let demo = Demo::Progress {
            steps: 3,
            step: Duration::ZERO,
        };
        let handle = pool.submit(move |token| demo.run(token)).unwrap();
        let id = handle.id();
        handle.join().unwrap();
        let progress = pool.info(id).and_then(|info| info.progress).unwrap();
        assert_eq!((progress.done, progress.total), (3, Some(3)));
        assert_eq!(progress.message.as_deref(), Some("step 3 of 3"));
    }
}
