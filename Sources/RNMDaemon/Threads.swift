internal import CRNMShims
internal import Glibc

/// Dedicated OS threads for blocking C loops (the netlink reader). Swift's cooperative pool must never block.
package enum Threads {
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// The calling thread's kernel id (gettid).
    package static func currentThreadID() -> Int32 { RNM_gettid() }

    /// Starts a detached thread named `name` (at most 15 bytes are kept) running `body`. The stack is
    /// reserved, not resident: only the pages a thread touches count.
    package static func detach(name: String, stackSize: Int = 256 * 1024, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        // Small stacks: the loops keep their buffers on the heap. The reconciler's is larger for libnftables'
        // parser and evaluator on big tables.
        pthread_attr_setstacksize(&attr, stackSize)
        var tid = pthread_t()
        let rc = pthread_create(&tid, &attr, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        _ = RNM_pthread_setname(tid, String(name.utf8.prefix(15))!)
    }
}
