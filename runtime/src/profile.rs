//! Time per launch, summed by kernel (`seqc bench --profile`). Off unless
//! enabled; when off, a launch costs one relaxed atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<Option<HashMap<String, (f64, usize)>>> = Mutex::new(None);

pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

pub(crate) fn start() -> Option<Instant> {
    ON.load(Ordering::Relaxed).then(Instant::now)
}

pub(crate) fn record(what: String, since: Instant) {
    let dt = since.elapsed().as_secs_f64();
    let mut t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    let e = t.get_or_insert_with(HashMap::new).entry(what).or_insert((0.0, 0));
    e.0 += dt;
    e.1 += 1;
}

/// Seconds and launch counts by kernel name, most time first; clears them.
pub fn take() -> Vec<(String, f64, usize)> {
    let mut t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    let mut rows: Vec<(String, f64, usize)> =
        t.take().unwrap_or_default().into_iter().map(|(k, (s, n))| (k, s, n)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows
}
