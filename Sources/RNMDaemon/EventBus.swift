import Dispatch
import Synchronization

/// A bounded multi-producer, single-consumer queue between the event sources and the reconciler.
///
/// - The consumer takes **everything** queued at once (`next()`): that is the coalescing. Nothing sleeps on
///   a debounce; under load, batches grow by themselves.
/// - Each element has a weight (a netlink batch weighs its event count). When the queued weight reaches the
///   capacity, producer threads block in `send` until the consumer drains. For the netlink thread that means
///   the kernel's socket buffer fills and reports ENOBUFS, which the monitor answers with a full dump: memory
///   stays bounded and nothing is silently lost.
/// - Weight-0 elements (reload requests, control commands) are never blocked.
package final class EventBus<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var weight = 0
        var consumer: CheckedContinuation<[Element]?, Never>? = nil
        var waiters: [DispatchSemaphore] = []
        var closed = false
        var highWater = 0
    }

    private let state = Mutex(State())
    package let capacity: Int

    package init(capacity: Int = 65_536) {
        self.capacity = capacity
    }

    /// Queues `element`. Blocks the calling **thread** while the bus is full (never call it from a task with a
    /// non-zero weight). Returns false if the bus is closed.
    @discardableResult
    package func send(_ element: Element, weight: Int = 1) -> Bool {
        while true {
            let outcome: (resume: CheckedContinuation<[Element]?, Never>?, items: [Element], wait: DispatchSemaphore?, ok: Bool) =
                state.withLock { s in
                    if s.closed { return (nil, [], nil, false) }
                    if weight > 0, s.weight > 0, s.weight + weight > capacity {
                        let sem = DispatchSemaphore(value: 0)
                        s.waiters.append(sem)
                        return (nil, [], sem, true)
                    }
                    s.items.append(element)
                    s.weight += weight
                    s.highWater = max(s.highWater, s.weight)
                    if let c = s.consumer {
                        s.consumer = nil
                        let items = s.items
                        s.items = []
                        s.weight = 0
                        return (c, items, nil, true)
                    }
                    return (nil, [], nil, true)
                }
            if let sem = outcome.wait {
                sem.wait()
                continue
            }
            outcome.resume?.resume(returning: outcome.items)
            return outcome.ok
        }
    }

    /// Everything queued, waiting if nothing is. nil once the bus is closed and empty, or the task is cancelled.
    package func next() async -> [Element]? {
        if let ready = takeNow() { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<[Element]?, Never>) in
                let immediate: [Element]?? = state.withLock { s in
                    if !s.items.isEmpty {
                        let items = s.items
                        s.items = []
                        s.weight = 0
                        return .some(items)
                    }
                    if s.closed || Task.isCancelled { return .some(nil) }
                    s.consumer = c
                    return .none
                }
                if let immediate {
                    wakeWaiters()
                    c.resume(returning: immediate)
                }
            }
        } onCancel: {
            let c = state.withLock { s -> CheckedContinuation<[Element]?, Never>? in
                defer { s.consumer = nil }
                return s.consumer
            }
            c?.resume(returning: nil)
        }
    }

    /// Everything queued right now, without waiting (possibly empty). nil if closed and empty.
    package func drainNow() -> [Element]? {
        if let ready = takeNow() { return ready }
        return state.withLock { $0.closed } ? nil : []
    }

    private func takeNow() -> [Element]? {
        let items: [Element]? = state.withLock { s in
            guard !s.items.isEmpty else { return nil }
            let items = s.items
            s.items = []
            s.weight = 0
            return items
        }
        if items != nil { wakeWaiters() }
        return items
    }

    private func wakeWaiters() {
        let waiters = state.withLock { s -> [DispatchSemaphore] in
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.signal() }
    }

    /// Stops the bus: the consumer's `next()` returns what is left, then nil; blocked producers return false.
    package func close() {
        let c = state.withLock { s -> CheckedContinuation<[Element]?, Never>? in
            s.closed = true
            defer { s.consumer = nil }
            return s.consumer
        }
        c?.resume(returning: nil)
        wakeWaiters()
    }

    /// The largest queued weight seen (for tests and metrics).
    package var highWater: Int { state.withLock { $0.highWater } }
}
