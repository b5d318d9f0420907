//! One call's tasks shared between the calling thread and rayon's threads.
//!
//! A parallel loop started from outside rayon's pool (`par_iter` from the thread that runs
//! the training loop) hands the whole loop to the pool and puts the caller to sleep on a latch
//! until the pool's threads are done: per call a wake-up of a pool thread, the caller's sleep
//! and its wake-up, and at `RAYON_NUM_THREADS=T` threads `T + 1` threads (the caller and `T`
//! of the pool's) taking turns on `T` cores while the pool's threads spin before sleeping.
//! [`run`] does what OpenMP does instead: the caller works on the tasks itself, and `T − 1` of
//! rayon's threads are asked (`rayon::spawn`) to join in. Every participant claims the next
//! task from a shared counter until none is left; the caller then waits, spinning, for the
//! tasks still running elsewhere, and never sleeps. A pool thread that wakes late finds no
//! task left and returns at once; one that never wakes (the pool busy with other work) leaves
//! all tasks to the caller. Used by the split GEMM (`ops::floor::gemm`), the chunk helpers of
//! `ops::floor::cpu` (convolution, pooling, radial basis, dropout, the graph ops' rows,
//! `relu`'s backward, `fit`'s batch gather), attention and layer norm; measured in the
//! README's performance section (sessions 12 and 13).
//!
//! While the caller runs a task it counts as a worker ([`in_task`]): a kernel called from
//! inside a task (a convolution's per-sample GEMM) runs on its thread, as it does on rayon's.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

thread_local! {
    /// Whether this thread is running a task of [`run`] (the caller's side).
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is one of rayon's or runs a task of [`run`]: a parallel loop
/// started here runs on this thread (a GEMM) or on rayon's pool from inside it.
#[inline]
pub(crate) fn in_task() -> bool {
    IN_TASK.with(Cell::get) || rayon::current_thread_index().is_some()
}

/// The state of one [`run`], shared with the pool threads asked to join in. It outlives the
/// call (a pool thread may pick its job up after the caller returned); `task` is dereferenced
/// only for a claimed task, and every claimed task finishes before the caller returns.
struct Shared {
    /// The next task to claim (claims past `tasks` find nothing).
    next: AtomicUsize,
    /// Tasks finished (also those that panicked).
    done: AtomicUsize,
    /// Whether a task panicked.
    panicked: AtomicBool,
    tasks: usize,
    /// The caller's `f`, its lifetime erased (see the SAFETY comment in [`run`]).
    task: *const (dyn Fn(usize) + Sync + 'static),
}

// SAFETY: `task` points to a `Sync` closure (callable from any thread through a shared
// reference) that [`run`] keeps alive for as long as any thread may call it: every thread
// calls it only for a task it claimed, and [`run`] returns only once every claimed task is
// done. The other fields are atomics or immutable.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims and runs tasks until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            // SAFETY: task `i < tasks` was claimed by this thread alone, so `run` has not
            // returned (it waits for `done == tasks`, and this task is not done yet): the
            // closure behind `task` is alive.
            let f = unsafe { &*self.task };
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            // Release: the task's writes happen before the caller's acquire load sees it done.
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// Runs `f(i)` for every `i < tasks`, each once, and returns when all are done: shared
/// between the calling thread and `threads − 1` of rayon's threads when called from outside
/// rayon's pool and outside a task; on one of rayon's threads, by rayon's work stealing; else
/// (one thread, or the caller already inside a task) in order on the calling thread. A task
/// that panics makes `run` panic after all tasks are done (no task is left running on
/// borrowed data).
pub(crate) fn run(tasks: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    if tasks == 0 {
        return;
    }
    if tasks == 1 || threads < 2 || IN_TASK.with(Cell::get) {
        (0..tasks).for_each(f);
        return;
    }
    if rayon::current_thread_index().is_some() || !SHARE.load(Ordering::Relaxed) {
        // On one of rayon's threads: rayon's work stealing, as a `par_iter` there. (Off
        // `SHARE`, the measurement aid's other arm: the whole loop on rayon's pool, the caller
        // asleep until it is done.)
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(f);
        return;
    }
    // SAFETY: only the lifetime is erased. The closure outlives every call through this
    // pointer: calls happen only for claimed tasks (`Shared::work`), and this function waits
    // below until every task is done (also when one panics: `work` catches it), so no call
    // starts or runs after `f`'s borrow ends.
    let task: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
    let shared = Arc::new(Shared { next: AtomicUsize::new(0), done: AtomicUsize::new(0), panicked: AtomicBool::new(false), tasks, task });
    for _ in 1..threads.min(tasks) {
        let s = Arc::clone(&shared);
        rayon::spawn(move || s.work());
    }
    let was = IN_TASK.with(|t| t.replace(true));
    shared.work();
    IN_TASK.with(|t| t.set(was));
    // The tasks other threads claimed are tens of microseconds each: spin, then yield.
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < tasks {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    if shared.panicked.load(Ordering::Relaxed) {
        panic!("typenet: a parallel task of a CPU kernel panicked");
    }
}

/// `f(i)` for every `i < tasks`, collected in order; run as [`run`] runs them.
pub(crate) fn map<R: Send>(tasks: usize, threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..tasks).map(|_| None).collect();
    let slots = Parts::new(&mut out);
    // SAFETY: task `i` takes slot `i` alone.
    run(tasks, threads, &|i| unsafe { slots.chunk(i, 1) }[0] = Some(f(i)));
    out.into_iter().map(|r| r.expect("share::run runs every task")).collect()
}

/// `f(&mut state, i)` for every `i < tasks`, in groups of consecutive tasks (a few per
/// thread), each group with a `state` of its own from `init` (scratch buffers made once per
/// group rather than once per task); run as [`run`] runs them.
pub(crate) fn for_each_init<S>(tasks: usize, threads: usize, init: impl Fn() -> S + Sync, f: impl Fn(&mut S, usize) + Sync) {
    let groups = if threads < 2 { 1 } else { (threads * GROUPS_PER_THREAD).min(tasks) };
    run(groups, threads, &|g| {
        let mut state = init();
        (tasks * g / groups..tasks * (g + 1) / groups).for_each(|i| f(&mut state, i));
    });
}

/// Groups per thread of [`for_each_init`]: enough for the caller to take over the groups of a
/// pool thread that wakes late.
const GROUPS_PER_THREAD: usize = 4;

/// A mutable slice handed out in chunks to the tasks of one [`run`], each task taking chunks
/// no other task takes (what `par_chunks_mut` does for rayon).
pub(crate) struct Parts<'a, T> {
    ptr: *mut T,
    len: usize,
    borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: a `Parts` is a `&mut [T]` handed out in disjoint chunks ([`Parts::chunk`]'s
// contract), which may move to other threads when `T: Send`, as `&mut [T]` may.
unsafe impl<T: Send> Send for Parts<'_, T> {}
// SAFETY: as for `Send`: threads sharing a `Parts` reach only disjoint chunks through it.
unsafe impl<T: Send> Sync for Parts<'_, T> {}

impl<'a, T> Parts<'a, T> {
    pub(crate) fn new(v: &'a mut [T]) -> Self {
        Parts { ptr: v.as_mut_ptr(), len: v.len(), borrow: std::marker::PhantomData }
    }

    /// Chunk `i` when the slice is cut into chunks of `size` elements (the last one shorter,
    /// past the end empty).
    ///
    /// # Safety
    /// While the returned slice lives, no other call returns an overlapping chunk (in a
    /// [`run`]: each task asks only for chunks of its own task index, all of one `size`).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn chunk(&self, i: usize, size: usize) -> &'a mut [T] {
        let lo = i.saturating_mul(size).min(self.len);
        let hi = lo.saturating_add(size).min(self.len);
        // SAFETY: `lo ≤ hi ≤ len` elements of the borrowed slice, overlapping no other live
        // chunk (contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(lo), hi - lo) }
    }
}

/// Whether [`run`] shares tasks with the caller (on by default); off, a call hands them all to
/// rayon's pool as a `par_iter` does. A measurement aid (`typenet::__private::set_shared_tasks`,
/// `benches/suite.rs` part `share`), not an API.
pub(crate) static SHARE: AtomicBool = AtomicBool::new(true);

/// Spin-loop hints the caller waits through before it yields its core instead.
const SPINS: u32 = 4000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_from_outside_the_pool() {
        for tasks in [0, 1, 2, 3, 7, 64] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            run(tasks, 4, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
        }
    }

    #[test]
    fn the_caller_counts_as_a_worker_inside_a_task_and_not_after() {
        // Inside a task on the calling thread, `in_task` holds and a nested `run` stays on
        // that thread; after `run`, the flag is clear again.
        let me = std::thread::current().id();
        let (outside, nested_elsewhere) = (AtomicBool::new(false), AtomicBool::new(false));
        assert!(!in_task());
        run(4, 2, &|_| {
            if std::thread::current().id() == me {
                if !in_task() {
                    outside.store(true, Ordering::Relaxed);
                }
                run(8, 2, &|_| {
                    if std::thread::current().id() != me {
                        nested_elsewhere.store(true, Ordering::Relaxed);
                    }
                });
            }
        });
        assert!(!outside.load(Ordering::Relaxed), "a task on the caller did not count as in a task");
        assert!(!nested_elsewhere.load(Ordering::Relaxed), "a nested run left the caller's thread");
        assert!(!in_task());
    }

    #[test]
    fn pool_threads_take_part() {
        // With tasks that wait for each other, one thread alone could not finish: the second
        // task runs on another thread while the first waits for it.
        if rayon::current_num_threads() < 2 {
            // `run` shares with the global pool; a one-thread global pool shares nothing.
            return;
        }
        let second_started = AtomicBool::new(false);
        let threads: Vec<std::sync::Mutex<Option<std::thread::ThreadId>>> = (0..2).map(|_| Default::default()).collect();
        run(2, 2, &|i| {
            *threads[i].lock().unwrap() = Some(std::thread::current().id());
            if i == 1 {
                second_started.store(true, Ordering::Release);
            } else {
                let t = std::time::Instant::now();
                while !second_started.load(Ordering::Acquire) && t.elapsed().as_secs() < 10 {
                    std::hint::spin_loop();
                }
            }
        });
        let ids: Vec<_> = threads.iter().map(|t| t.lock().unwrap().unwrap()).collect();
        assert_ne!(ids[0], ids[1], "both tasks ran on the calling thread");
    }

    #[test]
    fn map_and_for_each_init_cover_every_task_in_order() {
        for threads in [1, 2, 3] {
            for tasks in [0, 1, 5, 40] {
                assert_eq!(map(tasks, threads, |i| i * i), (0..tasks).map(|i| i * i).collect::<Vec<_>>());
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                let inits = AtomicUsize::new(0);
                for_each_init(tasks, threads, || inits.fetch_add(1, Ordering::Relaxed), |_, i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads, {tasks} tasks");
                assert!(inits.load(Ordering::Relaxed) <= (threads * GROUPS_PER_THREAD).min(tasks.max(1)));
            }
        }
    }

    #[test]
    fn a_panicking_task_panics_the_caller_after_all_tasks_ran() {
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            run(8, 2, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(i != 3, "task 3 fails");
            })
        }));
        assert!(r.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        assert!(!IN_TASK.with(Cell::get), "the flag is restored after a panic");
    }
}
