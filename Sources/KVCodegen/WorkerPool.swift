// The worker threads split kernels run on: `parallelRows` in every Kernels.swift.
//
// Rationale. `DispatchQueue.concurrentPerform` cost about 7 µs per call here, so only kernels
// of at least 2^19 multiply-adds were split, and none of a small model's were: tiny-llama's
// decode ran at the same ms/token on two threads as on one. The pool below keeps
// kvplanThreads − 1 threads that wait for work by spinning on an atomic generation counter
// (`pause` between reads), so a split costs a cache line going to the workers and coming back,
// and the calling thread runs part 0 itself. (The planned transfers are split along the same
// contiguous parts — Schedule.swift's `move` — so each core multiplies weight rows it copied
// itself; without that, the splits made decode 2× slower, measured.)
//
// A worker that has seen no work for 2 ms sleeps on a condition variable instead, so an idle
// library costs nothing. A decode step's split kernels come tens of microseconds apart (the
// planned transfers between them take that long) and a wake-up from the condition variable
// cost 20–80 µs here, so a spin of 0.1 ms made two threads 3–6× slower than one (measured). The
// caller bumps the counter under the mutex the sleepers check it under, so no wake-up is lost.
//
// Each call waits for every worker to report before it returns, which is what makes handing
// the workers a non-escaping closure safe. One lock keeps the pool to one caller at a time (a
// second caller — another thread stepping the same library, or a split inside a split — runs
// its parts itself). `kvplan_set_threads` stops and joins the old workers before starting new
// ones (the runtime sets 1 before dlclose, so no thread runs in an unmapped library). Parts are
// the same contiguous row ranges as before, so split results stay bit-identical to one thread's.

extension SwiftEmitter {
    /// The pool, `kvplan_set_threads` and `parallelRows`, for the head of every Kernels.swift.
    static let workerPool = """
    /// Threads large kernels are split over (set by the runtime through kvplan_set_threads).
    nonisolated(unsafe) var kvplanThreads = 1
    /// kvplanThreads − 1 worker threads, or nil on one thread.
    nonisolated(unsafe) var kvplanPool: KVPlanPool?

    /// Held by a split call while it uses the pool and by kvplan_set_threads while it replaces it.
    /// A split call that finds it taken — another thread's step in the same library, or a split
    /// inside a split — runs its parts itself, in order: the same results.
    nonisolated(unsafe) let kvplanPoolLock: UnsafeMutablePointer<pthread_mutex_t> = {
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        return lock
    }()

    /// The current thread count, for the runtime.
    @_cdecl("kvplan_threads")
    public func kvplan_threads() -> Int { kvplanThreads }
    @_cdecl("kvplan_set_threads")
    public func kvplan_set_threads(_ n: Int) {
        let n = max(1, n)
        pthread_mutex_lock(kvplanPoolLock)
        defer { pthread_mutex_unlock(kvplanPoolLock) }
        guard n != kvplanThreads || (n > 1) != (kvplanPool != nil) else { return }
        kvplanPool?.stop()
        kvplanPool = n > 1 ? KVPlanPool(workers: n &- 1) : nil
        kvplanThreads = n
    }

    /// Worker threads that run parts 1… of a split kernel while the calling thread runs part 0
    /// (WorkerPool.swift in KVCodegen says how they wait).
    final class KVPlanPool: @unchecked Sendable {
        /// Bumped once per split call, and once to stop.
        let generation = Atomic<Int>(0)
        /// Workers yet to finish the current call.
        let pending = Atomic<Int>(0)
        /// The current call's parts (written before the bump that publishes them).
        var job: ((Int) -> Void)?
        var parts = 0
        var stopping = false
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        var threads: [pthread_t] = []

        init(workers: Int) {
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(wake, nil)
            // Workers 1…threads.count (fewer than asked if the system refuses a thread: the
            // parts are then dealt round-robin over those there are).
            for _ in 0..<workers {
                let context = Unmanaged.passRetained(KVPlanWorker(pool: self, index: threads.count &+ 1)).toOpaque()
                var thread = pthread_t()
                guard pthread_create(&thread, nil, { context in
                    let worker = Unmanaged<KVPlanWorker>.fromOpaque(context!).takeRetainedValue()
                    worker.pool.work(worker.index)
                    return nil
                }, context) == 0 else {
                    Unmanaged<KVPlanWorker>.fromOpaque(context).release()
                    break
                }
                threads.append(thread)
            }
        }

        /// One worker's loop: wait for a new generation, run its part, report.
        func work(_ index: Int) {
            var seen = 0
            while true {
                var now = generation.load(ordering: .acquiring), spins = 0
                let since = ContinuousClock.now
                while now == seen {
                    spins &+= 1
                    if spins & 255 != 0 || ContinuousClock.now - since < .milliseconds(2) {
                        kvplanPause()
                    } else {
                        pthread_mutex_lock(mutex)
                        while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(wake, mutex) }
                        pthread_mutex_unlock(mutex)
                    }
                    now = generation.load(ordering: .acquiring)
                }
                seen = now
                if stopping { return }
                if let job {
                    var p = index
                    while p < parts { job(p); p &+= stride }
                }
                pending.subtract(1, ordering: .releasing)
            }
        }

        /// Parts apart that one thread runs: the workers and the calling thread.
        var stride: Int { threads.count &+ 1 }

        /// Runs body(p) for p in 0..<parts, part 0 (and every stride-th after it) on the calling
        /// thread; returns when all are done.
        func run(_ parts: Int, _ body: (Int) -> Void) {
            withoutActuallyEscaping(body) { body in
                job = body
                self.parts = parts
                pending.store(threads.count, ordering: .relaxed)
                publish()
                var p = 0
                while p < parts { body(p); p &+= stride }
                // A worker the system has not scheduled yet gets the core sooner if this one yields.
                var spins = 0
                while pending.load(ordering: .acquiring) > 0 {
                    spins &+= 1
                    if spins & 1023 == 0 { sched_yield() } else { kvplanPause() }
                }
                job = nil
            }
        }

        /// Starts the next generation, waking the workers that sleep.
        func publish() {
            pthread_mutex_lock(mutex)
            generation.add(1, ordering: .releasing)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
        }

        /// Ends every worker, waits for them and frees the lock and condition they waited on (the
        /// pool is not used after; kvplan_set_threads drops it).
        func stop() {
            stopping = true
            publish()
            for thread in threads { pthread_join(thread, nil) }
            threads = []
            pthread_mutex_destroy(mutex)
            pthread_cond_destroy(wake)
            mutex.deallocate()
            wake.deallocate()
        }
    }

    /// A worker thread's start context.
    final class KVPlanWorker {
        let pool: KVPlanPool, index: Int
        init(pool: KVPlanPool, index: Int) { self.pool = pool; self.index = index }
    }

    /// A spin-wait hint to the core (x86 `pause`, from the prefetch module; without it a plain
    /// re-read).
    @inline(__always)
    func kvplanPause() {
    #if KVPLAN_PREFETCH
        kvplan_pause()
    #endif
    }

    /// Runs body(lo, hi) over 0..<n, split in contiguous parts over kvplanThreads when the work
    /// (multiply-adds) is at least 2^15: a split costs about a microsecond (the worker pool), and
    /// the smallest split kernel saves several.
    @inline(__always)
    func parallelRows(_ n: Int, work: Int, _ body: (Int, Int) -> Void) {
        let parts = work >= 1 << 15 ? min(kvplanThreads, n) : 1
        guard parts > 1, pthread_mutex_trylock(kvplanPoolLock) == 0 else { body(0, n); return }
        defer { pthread_mutex_unlock(kvplanPoolLock) }
        guard let pool = kvplanPool else { body(0, n); return }
        pool.run(parts) { p in body(n &* p / parts, n &* (p &+ 1) / parts) }
    }

    """
}
