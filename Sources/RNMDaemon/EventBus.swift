internal import Glibc

/// A bounded multi-producer, single-consumer queue between the event sources and the reconciler.
///
/// - The consumer takes **everything** queued at once (`next`): that is the coalescing. Nothing sleeps on a
///   debounce; under load, batches grow by themselves.
/// - Each element has a weight (a netlink batch weighs its event count). When the queued weight reaches the
///   capacity, producers block in `send` until the consumer drains. For the netlink thread that means the
///   kernel's socket buffer fills and reports ENOBUFS, which the monitor answers with a full dump: memory
///   stays bounded and nothing is silently lost.
/// - Weight-0 elements (reload requests, control commands) are never blocked.
///
/// Built on a pthread mutex and condition variables (CLOCK_MONOTONIC), not on Dispatch or Swift concurrency:
/// an idle daemon then sleeps in one futex wait per thread, with no timer anywhere (libdispatch's worker
/// pool would add a 1 Hz monitor timer).
package final class EventBus<Element: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: every stored var below is read and written only with `mutex` held.
    private var mutex = pthread_mutex_t()
    private var notEmpty = pthread_cond_t()
    private var notFull = pthread_cond_t()
    private var items: [Element] = []
    private var weight = 0
    private var closed = false
    private var peak = 0
    package let capacity: Int

    package init(capacity: Int = 65_536) {
        self.capacity = capacity
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&notEmpty, &attr)
        pthread_cond_init(&notFull, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(&notEmpty)
        pthread_cond_destroy(&notFull)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// Queues `element`; blocks the calling thread while the bus is full. Returns false if the bus is closed.
    @discardableResult
    package func send(_ element: Element, weight: Int = 1) -> Bool {
        locked {
            while !closed, weight > 0, self.weight > 0, self.weight + weight > capacity {
                pthread_cond_wait(&notFull, &mutex)
            }
            if closed { return false }
            items.append(element)
            self.weight += weight
            peak = max(peak, self.weight)
            pthread_cond_signal(&notEmpty)
            return true
        }
    }

    /// Everything queued, waiting up to `timeout` (forever if nil) for something to arrive.
    /// Returns [] on timeout and nil once the bus is closed and empty.
    package func next(timeout: Duration? = nil) -> [Element]? {
        locked {
            if items.isEmpty && !closed {
                if let timeout {
                    var deadline = Self.deadline(after: timeout)
                    while items.isEmpty && !closed {
                        if pthread_cond_timedwait(&notEmpty, &mutex, &deadline) == ETIMEDOUT { break }
                    }
                } else {
                    while items.isEmpty && !closed { pthread_cond_wait(&notEmpty, &mutex) }
                }
            }
            if items.isEmpty { return closed ? nil : [] }
            let out = items
            items = []
            weight = 0
            pthread_cond_broadcast(&notFull)
            return out
        }
    }

    /// Waits until `timeout` passes or the bus closes, without taking anything. False if the bus is closed.
    package func pause(_ timeout: Duration) -> Bool {
        locked {
            var deadline = Self.deadline(after: timeout)
            while !closed {
                if pthread_cond_timedwait(&notEmpty, &mutex, &deadline) == ETIMEDOUT { break }
            }
            return !closed
        }
    }

    /// Stops the bus: `next` returns what is left, then nil; blocked producers return false.
    package func close() {
        locked {
            closed = true
            pthread_cond_broadcast(&notEmpty)
            pthread_cond_broadcast(&notFull)
        }
    }

    package var isClosed: Bool { locked { closed } }

    /// The largest queued weight seen (for tests and metrics).
    package var highWater: Int { locked { peak } }

    private static func deadline(after d: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (s, atto) = d.components
        var sec = now.tv_sec + Int(s)
        var nsec = now.tv_nsec + Int(atto / 1_000_000_000)
        if nsec >= 1_000_000_000 {
            sec += 1
            nsec -= 1_000_000_000
        }
        return timespec(tv_sec: sec, tv_nsec: nsec)
    }
}
