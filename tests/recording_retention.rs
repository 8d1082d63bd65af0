//! Retention of recordings (`recording.retention_days`, `recording.retention_bytes`), through
//! `recording::Library::sweep`, the function the server runs at start and every 10 minutes:
//! recordings of ended shows older than the age limit go, then the oldest ended ones until the
//! total fits the byte limit; a live show's recording is never touched, whatever its age or size.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hawker::recording::{file, Library};

const DAY: u64 = 86_400;

/// A recording of `bytes` bytes (media + events) last written `age_days` ago.
fn recording(dir: &Path, show: &str, bytes: usize, age_days: u64, now: u64) {
    let d = dir.join(show);
    std::fs::create_dir_all(&d).unwrap();
    let mut media = file::MAGIC.to_vec();
    media.resize(bytes - 10, 0x55);
    let when = UNIX_EPOCH + Duration::from_secs(now - age_days * DAY);
    for (name, content) in [(file::MEDIA, media), (file::EVENTS, vec![b'\n'; 10])] {
        std::fs::write(d.join(name), content).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(d.join(name))
            .unwrap();
        f.set_modified(when).unwrap();
    }
}

fn shows(lib: &Library) -> Vec<String> {
    lib.list().into_iter().map(|s| s.show).collect()
}

#[test]
fn old_and_oversized_recordings_of_ended_shows_go_live_ones_stay() {
    let dir = std::env::temp_dir().join(format!("hawker-retention-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    recording(&dir, "old-ended", 1_000, 40, now);
    recording(&dir, "old-live", 1_000, 40, now);
    recording(&dir, "mid-ended", 3_000, 10, now);
    recording(&dir, "new-ended", 2_000, 1, now);
    let lib = Library::new(dir.clone());
    assert_eq!(
        shows(&lib),
        ["mid-ended", "new-ended", "old-ended", "old-live"]
    );
    let ended = |s: &str| s.ends_with("-ended");

    // No limits: nothing goes.
    assert!(lib.sweep(now, None, 0, ended).is_empty());

    // 30 days: the 40-day-old ended show goes, the 40-day-old live one stays.
    let removed = lib.sweep(now, Some(Duration::from_secs(30 * DAY)), 0, ended);
    assert_eq!(removed, ["old-ended"]);
    assert_eq!(shows(&lib), ["mid-ended", "new-ended", "old-live"]);

    // 4 000 bytes in all (6 000 now): the oldest ended show goes first, and only as many as
    // needed; the live one counts in the total but is never removed.
    let removed = lib.sweep(now, Some(Duration::from_secs(30 * DAY)), 4_000, ended);
    assert_eq!(removed, ["mid-ended"]);
    assert_eq!(shows(&lib), ["new-ended", "old-live"]);

    // A limit below what live shows alone take: every ended recording goes, live ones stay.
    let removed = lib.sweep(now, None, 500, ended);
    assert_eq!(removed, ["new-ended"]);
    assert_eq!(shows(&lib), ["old-live"]);
    assert!(
        dir.join("old-live").join(file::MEDIA).exists(),
        "the live show's media is still on disk"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
