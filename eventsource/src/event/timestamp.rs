//! [`Timestamp`]: a point in time in UTC with microsecond precision, as stored with
//! every event.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time in UTC, with microsecond precision, as stored with every event.
///
/// ```
/// use eventsource::Timestamp;
///
/// let t = Timestamp::from_micros(1_700_000_000_123_456);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// The instant `time`, truncated to whole microseconds (towards the epoch), and
    /// clamped to the range of an `i64` of microseconds (about 292,000 years either side
    /// of 1970). Also `Timestamp::from(time)`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use eventsource::Timestamp;
    ///
    /// let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_nanos(1_500));
    /// assert_eq!(t.as_micros(), 1);
    /// let now = SystemTime::now();
    /// let back: SystemTime = Timestamp::from(now).into();
    /// assert!(now.duration_since(back)? < Duration::from_micros(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_system_time(time: SystemTime) -> Self {
        let micros = match time.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Timestamp(micros)
    }

    /// The time `micros` microseconds after the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The same instant as a [`SystemTime`]. Also `SystemTime::from(timestamp)`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use eventsource::Timestamp;
    ///
    /// let t = Timestamp::from_micros(-2_000_001);
    /// assert_eq!(t.to_system_time(), UNIX_EPOCH - Duration::from_micros(2_000_001));
    /// assert_eq!(SystemTime::from(t), t.to_system_time());
    /// ```
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl From<SystemTime> for Timestamp {
    /// See [`Timestamp::from_system_time`].
    fn from(time: SystemTime) -> Self {
        Timestamp::from_system_time(time)
    }
}

impl From<Timestamp> for SystemTime {
    /// See [`Timestamp::to_system_time`].
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, e.g. `2023-11-14T22:13:20.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        assert_eq!(
            Timestamp::from_micros(0).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::from_micros(951_782_400_000_001).to_string(),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            Timestamp::from_micros(-1).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn timestamps_convert_to_and_from_system_time() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            let t = Timestamp::from_micros(micros);
            let time = SystemTime::from(t);
            assert_eq!(Timestamp::from(time), t, "{micros}");
        }
        // Below a microsecond: truncated towards the epoch, on both sides.
        let after = UNIX_EPOCH + Duration::from_nanos(2_999);
        let before = UNIX_EPOCH - Duration::from_nanos(2_999);
        assert_eq!(Timestamp::from(after).as_micros(), 2);
        assert_eq!(Timestamp::from(before).as_micros(), -2);
    }
}
