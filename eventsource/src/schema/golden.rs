//! Golden samples: example JSON of each historical event version, kept as files next to
//! the tests, each proved to still decode to the expected current value.

use std::collections::BTreeSet;
use std::error::Error as _;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::SchemaError;
use crate::aggregate::EventSet;
use crate::error::UpcastError;
use crate::event::EventKey;
use crate::event::{DecodeFailure, Payload};
use crate::upcast::{LiftError, Upcasters};

/// Why one sample file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleProblem {
    /// The file is not named `<event name>@<version>[.<label>].json`.
    #[error("the file name is not `<event name>@<version>[.<label>].json`")]
    FileName,
    /// The file is not JSON.
    #[error("the file is not JSON")]
    Json(#[source] serde_json::Error),
    /// The JSON is not `{"payload": ..., "expected": [...]}`.
    #[error("{reason}")]
    Format {
        /// What is missing or wrong.
        reason: String,
    },
    /// An upcaster failed on the sample.
    #[error("the sample does not upcast")]
    Upcast(#[source] UpcastError),
    /// The sample (or what the upcasters made of it) does not decode.
    #[error("the sample does not decode")]
    Decode(#[source] DecodeFailure),
    /// An `expected` entry does not decode as the current version of its type.
    #[error("`expected[{index}]` does not decode")]
    Expected {
        /// The entry's index.
        index: usize,
        /// Why.
        #[source]
        source: DecodeFailure,
    },
    /// The file has no `expected` value yet.
    #[error("no `expected` value; the sample decodes to {actual}")]
    NoExpected {
        /// What it decodes to, in the format of `expected`.
        actual: String,
    },
    /// The sample decodes to other events than expected.
    #[error("the sample decodes to {actual}, expected {expected}")]
    Mismatch {
        /// The expected events, re-encoded.
        expected: String,
        /// What the sample decodes to.
        actual: String,
    },
}

/// A sample file that failed.
#[derive(Debug)]
pub struct SampleFailure {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub problem: SampleProblem,
}

impl fmt::Display for SampleFailure {
    /// The file name, the problem and its causes, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.file.file_name().unwrap_or(self.file.as_os_str());
        write!(f, "{}: {}", name.to_string_lossy(), self.problem)?;
        let mut source = self.problem.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// What [`check_samples`] found.
#[derive(Debug, Default)]
pub struct SampleReport {
    /// How many sample files were checked.
    pub checked: usize,
    /// The files that failed, in file name order.
    pub failures: Vec<SampleFailure>,
    /// The historical versions with no sample: older versions of `upcast_from` chains
    /// and the keys of the upcasters.
    pub missing: Vec<EventKey>,
}

impl SampleReport {
    /// Whether every sample decodes as expected and no historical version lacks one.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && self.missing.is_empty()
    }
}

/// Checks every `*.json` sample in `dir` against the events `E` and `upcasters`.
///
/// A sample is a file named `<event name>@<version>.json` (add `.<label>` before `.json`
/// for several samples of one version) holding the stored payload and the events it
/// must decode to now, each at the current version of its type:
///
/// ```json
/// {
///   "payload": { "owner": "olga" },
///   "expected": [
///     { "type": "account.opened", "payload": { "owner": "olga", "currency": "EUR" } }
///   ]
/// }
/// ```
///
/// `expected` is a list because upcasters may split an event or drop it (`[]`); an entry
/// may give a `"version"` other than the current one. A sample without `expected` fails
/// with what it decodes to, ready to paste.
///
/// # Errors
/// [`SchemaError::Io`] when the folder or a file cannot be read. Problems with the
/// samples themselves are in the report.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, Upcasters};
/// use eventsource::schema::check_samples;
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "account.opened", version = 2)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Opened { pub owner: String, pub currency: String }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "account", events(Opened))]
/// pub struct Account;
/// # impl Apply<Opened> for Account { fn apply(&mut self, _: &Opened) {} }
///
/// let upcasters = Upcasters::new().payload("account.opened", 1, |mut p| {
///     p["currency"] = "EUR".into();
///     Ok(p)
/// });
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("account.opened@1.json"), r#"{
///     "payload": {"owner": "olga"},
///     "expected": [{"type": "account.opened", "payload": {"owner": "olga", "currency": "EUR"}}]
/// }"#)?;
/// let report = check_samples::<AccountEvent>(dir.path(), &upcasters)?;
/// assert_eq!(report.checked, 1);
/// assert!(report.is_ok(), "{report:?}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_samples<E: EventSet>(
    dir: impl AsRef<Path>,
    upcasters: &Upcasters,
) -> Result<SampleReport, SchemaError> {
    let dir = dir.as_ref();
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SchemaError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    let mut report = SampleReport::default();
    let mut sampled = BTreeSet::new();
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(key) = name.as_deref().and_then(sample_key) else {
            report.failures.push(SampleFailure {
                file,
                problem: SampleProblem::FileName,
            });
            continue;
        };
        let text = std::fs::read_to_string(&file).map_err(io_error(&file))?;
        report.checked += 1;
        if let Err(problem) = check_sample::<E>(upcasters, &key, &text) {
            report.failures.push(SampleFailure { file, problem });
        }
        sampled.insert(key);
    }
    let mut historical: BTreeSet<EventKey> = E::HISTORIES
        .iter()
        .flat_map(|history| history.iter().skip(1))
        .map(|s| EventKey::new(s.name, s.version))
        .collect();
    historical.extend(upcasters.registered());
    report.missing = historical.difference(&sampled).cloned().collect();
    Ok(report)
}

/// [`check_samples`] as a test assertion: panics naming each failed sample and why, and
/// each historical version without a sample.
///
/// # Panics
/// When the report is not [ok](SampleReport::is_ok) or the folder cannot be read (by
/// design: it is a test assertion).
///
/// ```
/// # use eventsource::{event, Aggregate, Apply, Upcasters};
/// # use serde::{Deserialize, Serialize};
/// # #[event(name = "light.switched")]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # pub struct Switched { pub on: bool }
/// # #[derive(Debug, Default, Aggregate)]
/// # #[aggregate(name = "light", events(Switched))]
/// # pub struct Light;
/// # impl Apply<Switched> for Light { fn apply(&mut self, _: &Switched) {} }
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("lamp.toggled@1.json"), r#"{"payload": {}, "expected": [{"type": "light.switched", "payload": {"on": true}}]}"#)?;
/// let upcasters = Upcasters::new().custom("lamp.toggled", 1, &[("light.switched", 1)], |_| {
///     Ok(vec![eventsource::RawEvent::new("light.switched", 1, serde_json::json!({"on": true}))])
/// });
/// // In a test of your crate: `assert_samples::<LightEvent>("tests/golden", &upcasters)`.
/// eventsource::schema::assert_samples::<LightEvent>(dir.path(), &upcasters);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[track_caller]
pub fn assert_samples<E: EventSet>(dir: impl AsRef<Path>, upcasters: &Upcasters) {
    let dir = dir.as_ref();
    let report = match check_samples::<E>(dir, upcasters) {
        Ok(report) => report,
        Err(e) => panic!("golden samples in `{}`: {e}", dir.display()),
    };
    if report.is_ok() {
        return;
    }
    let mut message = format!(
        "golden samples in `{}` for `{}`:",
        dir.display(),
        std::any::type_name::<E>()
    );
    for failure in &report.failures {
        let _ = write!(message, "\n  - {failure}");
    }
    for key in &report.missing {
        let _ = write!(
            message,
            "\n  - no sample of `{key}`, a version the code still reads: add `{key}.json`"
        );
    }
    panic!("{message}");
}

/// `name@version` from `name@version[.label].json`.
fn sample_key(file_name: &str) -> Option<EventKey> {
    let stem = file_name.strip_suffix(".json")?;
    let (name, rest) = stem.rsplit_once('@')?;
    let digits = rest.split_once('.').map_or(rest, |(digits, _)| digits);
    if name.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(EventKey::new(name, digits.parse().ok()?))
}

fn check_sample<E: EventSet>(
    upcasters: &Upcasters,
    key: &EventKey,
    text: &str,
) -> Result<(), SampleProblem> {
    let format = |reason: &str| SampleProblem::Format {
        reason: reason.to_owned(),
    };
    let sample: Value = serde_json::from_str(text).map_err(SampleProblem::Json)?;
    let payload = sample
        .get("payload")
        .cloned()
        .ok_or_else(|| format("no `payload`: the stored JSON of the event"))?;
    let mut actual = Vec::new();
    upcasters
        .lift::<E>(
            &key.event_type,
            key.version,
            Payload::Value(payload),
            &mut |e| actual.push(e),
        )
        .map_err(|failure| match failure {
            LiftError::Upcast(e) => SampleProblem::Upcast(e),
            LiftError::Decode(e) => SampleProblem::Decode(e),
        })?;
    let Some(expected) = sample.get("expected") else {
        return Err(SampleProblem::NoExpected {
            actual: render(&actual),
        });
    };
    let entries = match expected {
        Value::Array(entries) => entries.as_slice(),
        single => std::slice::from_ref(single),
    };
    let mut wanted = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let bad = |what: &str| format(&format!("`expected[{index}]` {what}"));
        let event_type = entry
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no `type` string"))?;
        let version = match entry.get("version") {
            Some(v) => v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("has a `version` that is not a u32"))?,
            None => E::TYPES
                .iter()
                .find(|t| t.name == event_type)
                .map(|t| t.version)
                .ok_or(SampleProblem::Expected {
                    index,
                    source: DecodeFailure::UnknownType,
                })?,
        };
        let payload = entry
            .get("payload")
            .cloned()
            .ok_or_else(|| bad("has no `payload`"))?;
        let event = E::decode(event_type, version, Payload::Value(payload))
            .map_err(|source| SampleProblem::Expected { index, source })?;
        wanted.push(event);
    }
    if wanted == actual {
        Ok(())
    } else {
        Err(SampleProblem::Mismatch {
            expected: render(&wanted),
            actual: render(&actual),
        })
    }
}

/// Events in the format of `expected`, on one line.
fn render<E: EventSet>(events: &[E]) -> String {
    let entries: Vec<Value> = events
        .iter()
        .map(|event| {
            let ty = event.event_type();
            let payload = event
                .encode()
                .and_then(|json| serde_json::from_str(&json))
                .unwrap_or_else(|e| Value::String(format!("<cannot encode: {e}>")));
            serde_json::json!({ "type": ty.name, "version": ty.version, "payload": payload })
        })
        .collect();
    Value::Array(entries).to_string()
}

#[cfg(test)]
mod tests {
    use super::sample_key;
    use crate::event::EventKey;

    #[test]
    fn sample_files_are_named_after_the_stored_version() {
        let key = |t: &str, v| Some(EventKey::new(t, v));
        assert_eq!(
            sample_key("account.opened@1.json"),
            key("account.opened", 1)
        );
        assert_eq!(sample_key("a@b@12.minimal.json"), key("a@b", 12));
        assert_eq!(sample_key("account.opened.json"), None);
        assert_eq!(sample_key("x@.json"), None);
        assert_eq!(sample_key("x@1a.json"), None);
        assert_eq!(sample_key("@1.json"), None);
    }
}
