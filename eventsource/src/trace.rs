//! Tracing (feature `tracing`): spans and events through the `tracing` crate, or nothing
//! at all without the feature. Spans are at `DEBUG`, warnings about failures the library
//! absorbs (a snapshot not saved, a snapshot that no longer decodes) at `WARN`. With the
//! feature but no subscriber, each site costs one relaxed atomic load.

/// Enters a `DEBUG` span named `$name` with the given fields until the guard it
/// returns is dropped; `()` without the feature.
macro_rules! trace_span {
    ($name:literal $(, $($field:tt)*)?) => {{
        #[cfg(feature = "tracing")]
        let guard = ::tracing::debug_span!($name $(, $($field)*)?).entered();
        #[cfg(not(feature = "tracing"))]
        let guard = $crate::trace::NoSpan;
        guard
    }};
}

/// Records `$value` as the field `$field` of the span `$span` (declared with
/// `$field = tracing::field::Empty`).
macro_rules! trace_record {
    ($span:expr, $field:literal, $value:expr) => {{
        #[cfg(feature = "tracing")]
        {
            $span.record($field, $value);
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (&$span, &$value);
        }
    }};
}

/// A `DEBUG` event.
macro_rules! trace_debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        ::tracing::debug!($($arg)*);
    }};
}

/// A `WARN` event.
macro_rules! trace_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        ::tracing::warn!($($arg)*);
    }};
}

/// What [`trace_span!`] returns without the feature.
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoSpan;
