//! The box's time zone, checked because every FDM time is local time.
//!
//! Records, receipts and tickets carry the machine's local time with its offset (the reference
//! gives the ticket date as "local time of the POS"). The offset is always written, so a journal
//! stays unambiguous whatever the zone, but a box left in UTC (or in the zone of whoever
//! prepared the SD card) prints tickets with the wrong hour. fdmd does not override the machine's
//! zone; `fdmd check-config` and the daemon's start warn when it is not `Europe/Brussels`.

use std::path::Path;

/// The zone every Belgian establishment uses.
pub const BELGIAN_ZONE: &str = "Europe/Brussels";

/// The local zone's name as the C library and chrono find it: `TZ` if set, else the target of
/// the `/etc/localtime` link, else `/etc/timezone`. `None` when none of them names one.
pub fn local_zone_name() -> Option<String> {
    let link = std::fs::read_link("/etc/localtime").ok();
    let etc_timezone = std::fs::read_to_string("/etc/timezone").ok();
    zone_name_from(
        std::env::var("TZ").ok().as_deref(),
        link.as_deref(),
        etc_timezone.as_deref(),
    )
}

/// [`local_zone_name`] from its three sources (separate for tests).
pub fn zone_name_from(
    tz: Option<&str>,
    localtime_link: Option<&Path>,
    etc_timezone: Option<&str>,
) -> Option<String> {
    if let Some(tz) = tz {
        // POSIX allows a leading ':'; an empty TZ means UTC.
        let tz = tz.trim().trim_start_matches(':');
        return Some(if tz.is_empty() { "UTC" } else { tz }.to_owned());
    }
    if let Some(link) = localtime_link {
        let text = link.to_string_lossy();
        if let Some((_, zone)) = text.split_once("zoneinfo/") {
            return Some(zone.to_owned());
        }
    }
    etc_timezone
        .map(str::trim)
        .filter(|zone| !zone.is_empty())
        .map(str::to_owned)
}

/// A warning for the installer when the zone is not Belgium's (or cannot be told).
pub fn zone_warning(zone: Option<&str>) -> Option<String> {
    let fix = format!("run `timedatectl set-timezone {BELGIAN_ZONE}` and restart fdmd");
    match zone {
        Some(BELGIAN_ZONE) => None,
        Some(zone) => Some(format!(
            "the box's time zone is {zone}, not {BELGIAN_ZONE}: FDM times and tickets use local \
             time, so tickets would show the wrong hour; {fix}"
        )),
        None => Some(format!(
            "the box's time zone could not be determined (no TZ, /etc/localtime or \
             /etc/timezone): FDM times and tickets use local time; {fix}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_comes_from_tz_then_the_localtime_link_then_etc_timezone() {
        let link = Path::new("/usr/share/zoneinfo/Europe/Brussels");
        assert_eq!(
            zone_name_from(Some(":Europe/Paris"), Some(link), Some("UTC\n")).as_deref(),
            Some("Europe/Paris")
        );
        assert_eq!(
            zone_name_from(Some(""), Some(link), None).as_deref(),
            Some("UTC")
        );
        assert_eq!(
            zone_name_from(None, Some(link), Some("UTC\n")).as_deref(),
            Some(BELGIAN_ZONE)
        );
        assert_eq!(
            zone_name_from(None, Some(Path::new("/etc/other")), Some("Etc/UTC\n")).as_deref(),
            Some("Etc/UTC")
        );
        assert_eq!(zone_name_from(None, None, Some("  \n")), None);
    }

    #[test]
    fn only_belgium_passes_without_a_warning() {
        assert_eq!(zone_warning(Some(BELGIAN_ZONE)), None);
        let warning = zone_warning(Some("Etc/UTC")).unwrap_or_default();
        assert!(
            warning.contains("Etc/UTC") && warning.contains("timedatectl"),
            "{warning}"
        );
        assert!(zone_warning(None).is_some());
    }
}
