import Dispatch
import Synchronization

/// A task executor backed by one dedicated OS thread.
///
/// The reconciler runs here (`withTaskExecutorPreference`), so its blocking netlink calls never occupy
/// Swift's cooperative pool, every transaction is sent from the same named thread (nftables notifications
/// name the sending thread: `nft monitor` shows "by process <tid> (rnmd-reconcile)"), and an idle daemon
/// sleeps in one futex wait with no timer.
package final class ThreadExecutor: TaskExecutor {
    private let jobs = Mutex<[UnownedJob]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let threadID = Atomic<Int32>(0)

    package init(name: String) {
        let started = DispatchSemaphore(value: 0)
        Threads.detach(name: name) { [self] in
            threadID.store(Threads.currentThreadID(), ordering: .releasing)
            started.signal()
            run()
        }
        started.wait()
    }

    /// The kernel thread id (what nftables reports as the "process" of our transactions).
    package var tid: Int32 { threadID.load(ordering: .acquiring) }

    package func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        jobs.withLock { $0.append(unowned) }
        wake.signal()
    }

    private func run() -> Never {
        while true {
            wake.wait()
            let batch = jobs.withLock { q -> [UnownedJob] in
                defer { q.removeAll(keepingCapacity: true) }
                return q
            }
            for job in batch {
                job.runSynchronously(on: asUnownedTaskExecutor())
            }
        }
    }
}
