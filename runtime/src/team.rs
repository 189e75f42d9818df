//! A team of threads for the short parallel launches of a decode step.
//!
//! A decode step is a few hundred launches of tens of microseconds each. Rayon
//! puts idle workers to sleep and wakes them through the kernel, which costs
//! about as much as such a launch (a sixth of a 130M Mamba step's CPU time
//! went to the scheduler). The team's helpers instead spin between launches,
//! as llama.cpp's thread pool does, and sleep only after [`SPIN`] without work.
//! Each launch splits into one piece per member; the caller runs piece 0.
//!
//! One launch at a time: a caller that finds the team busy (another thread's
//! model, or a launch inside a launch) runs every piece itself.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper waits for the next launch before it sleeps: longer than
/// the gaps between the launches of one step, short enough that an idle
/// program stops spinning at once.
const SPIN: Duration = Duration::from_micros(200);

/// The work of one launch: called with each piece's index.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Team {
    /// Incremented to hand out a launch.
    epoch: AtomicU64,
    /// The launch being handed out; written only while `remaining` is 0 and
    /// the dispatch lock is held.
    job: UnsafeCell<Option<Job<'static>>>,
    /// Helpers still running their piece of the current launch.
    remaining: AtomicUsize,
    panicked: AtomicBool,
    /// Set by [`rest`]: helpers sleep at once instead of spinning.
    resting: AtomicBool,
    helpers: Vec<Helper>,
    dispatch: Mutex<()>,
}

struct Helper {
    thread: Thread,
    asleep: AtomicBool,
}

// SAFETY: `job` is written by the dispatcher alone, before the epoch that
// publishes it, and read by helpers after they see that epoch; the dispatcher
// waits for every helper before the borrow it holds ends.
unsafe impl Sync for Team {}

/// Members of the team (helpers and the caller): rayon's thread count, so
/// `RAYON_NUM_THREADS` sets both.
pub fn size() -> usize {
    team().map_or(1, |t| t.helpers.len() + 1)
}

/// Runs `work(piece)` for every piece in `0..size()`, in parallel, and returns
/// when all have finished.
pub fn run(work: &(dyn Fn(usize) + Sync)) {
    let Some(team) = team() else { return work(0) };
    let guard = match team.dispatch.try_lock() {
        Ok(guard) => guard,
        Err(_) => return (0..size()).for_each(work),
    };
    // SAFETY: the lifetime is erased only until every helper has finished
    // below, which happens before `work`'s borrow ends.
    let job: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(work) };
    // SAFETY: no helper reads `job` now: `remaining` is 0 and the lock is held.
    unsafe { *team.job.get() = Some(job) };
    team.remaining.store(team.helpers.len(), SeqCst);
    team.resting.store(false, SeqCst);
    team.epoch.fetch_add(1, SeqCst);
    for h in &team.helpers {
        // A helper sets `asleep` before its last look at the epoch: either it
        // sees the new epoch or this sees it asleep.
        if h.asleep.load(SeqCst) {
            h.thread.unpark();
        }
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(0)));
    while team.remaining.load(Acquire) != 0 {
        std::hint::spin_loop();
    }
    drop(guard);
    if let Err(payload) = mine {
        std::panic::resume_unwind(payload);
    }
    if team.panicked.swap(false, SeqCst) {
        panic!("a piece of a parallel launch panicked on a helper thread");
    }
}

/// Puts the helpers to sleep now rather than after their spin: the caller is
/// about to hand a long launch to rayon (or `gemm`), whose threads need the
/// cores the helpers would spin on. The next [`run`] wakes them.
pub fn rest() {
    if let Some(Some(team)) = TEAM_READY.get() {
        team.resting.store(true, Relaxed);
    }
}

fn team() -> Option<&'static Team> {
    static TEAM: OnceLock<Option<&'static Team>> = OnceLock::new();
    *TEAM.get_or_init(|| {
        let members = rayon::current_num_threads();
        if members <= 1 {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for piece in 1..members {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("seqc-team-{piece}"))
                .spawn(move || {
                    tx.send((piece, std::thread::current())).ok();
                    drop(tx);
                    // The team is published before any launch bumps the epoch.
                    let team = loop {
                        if let Some(Some(team)) = TEAM_READY.get() {
                            break *team;
                        }
                        std::thread::park();
                    };
                    help(team, piece);
                })
                .ok()?;
        }
        drop(tx);
        let mut threads: Vec<(usize, Thread)> = rx.iter().take(members - 1).collect();
        threads.sort_by_key(|(piece, _)| *piece);
        let helpers =
            threads.into_iter().map(|(_, thread)| Helper { thread, asleep: AtomicBool::new(false) }).collect();
        let team: &'static Team = Box::leak(Box::new(Team {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            resting: AtomicBool::new(false),
            helpers,
            dispatch: Mutex::new(()),
        }));
        TEAM_READY.set(Some(team)).ok();
        for h in &team.helpers {
            h.thread.unpark();
        }
        Some(team)
    })
}

/// The team, for helpers starting up (set once `TEAM` holds it).
static TEAM_READY: OnceLock<Option<&'static Team>> = OnceLock::new();

/// A helper's life: wait for an epoch, run its piece, repeat.
fn help(team: &Team, piece: usize) {
    // Helpers are held in piece order.
    let me = &team.helpers[piece - 1];
    // No launch precedes the team's publication: the first is epoch 1.
    let mut seen = 0;
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        while team.epoch.load(Acquire) == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            let resting = team.resting.load(Relaxed);
            if resting || (spins.is_multiple_of(256) && idle_since.elapsed() > SPIN) {
                me.asleep.store(true, SeqCst);
                if team.epoch.load(SeqCst) == seen {
                    std::thread::park();
                }
                me.asleep.store(false, SeqCst);
                idle_since = Instant::now();
            }
        }
        seen = team.epoch.load(Acquire);
        // SAFETY: published before the epoch this helper just saw; the
        // dispatcher keeps it alive until `remaining` reaches 0.
        let job = unsafe { (*team.job.get()).expect("a launch is published with its epoch") };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(piece))).is_err() {
            team.panicked.store(true, SeqCst);
        }
        team.remaining.fetch_sub(1, Release);
    }
}

/// Runs `work(piece)` for every piece, as [`run`] does, and returns the
/// results in piece order.
pub fn map<T: Send>(work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..size()).map(|_| Mutex::new(None)).collect();
    run(&|piece| {
        let value = work(piece);
        *slots[piece].lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every piece ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Every piece runs once per launch, over many launches (helpers spinning,
    /// and helpers woken after sleeping).
    #[test]
    fn every_piece_runs_once_per_launch() {
        let counts: Vec<AtomicUsize> = (0..size()).map(|_| AtomicUsize::new(0)).collect();
        for launch in 0..2000 {
            if launch % 500 == 0 {
                std::thread::sleep(SPIN * 3);
            }
            run(&|piece| {
                counts[piece].fetch_add(1, SeqCst);
            });
        }
        for (piece, c) in counts.iter().enumerate() {
            assert_eq!(c.load(SeqCst), 2000, "piece {piece}");
        }
        assert_eq!(map(|piece| piece * 10), (0..size()).map(|p| p * 10).collect::<Vec<_>>());
    }

    /// A launch inside a launch runs its pieces on the calling thread instead
    /// of waiting for the busy team.
    #[test]
    fn nested_launches_run_inline() {
        let total = AtomicUsize::new(0);
        run(&|_| {
            run(&|_| {
                total.fetch_add(1, SeqCst);
            });
        });
        assert_eq!(total.load(SeqCst), size() * size());
    }

    /// A panic in a piece reaches the caller, and the team still works after.
    #[test]
    fn a_panicking_piece_panics_the_launch() {
        let last = size() - 1;
        let caught = std::panic::catch_unwind(|| {
            run(&|piece| {
                if piece == last {
                    panic!("piece {piece} fails");
                }
            })
        });
        assert!(caught.is_err());
        assert_eq!(map(|piece| piece), (0..size()).collect::<Vec<_>>());
    }
}
