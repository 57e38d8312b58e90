package import RNMCore
import Synchronization

/// Fan-out of daemon events to `events` subscribers, plus the control server's counters.
///
/// Each subscriber has its own bounded queue: a subscriber that reads too slowly loses its own oldest events
/// (and is told how many), and publishing never waits for anyone.
package final class EventHub: Sendable {
    package static let queueLimit = 1024

    private struct Subscriber {
        var lines: [String] = []
        var head = 0
        var dropped = 0
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 1
        var requests: [String: Int] = [:]  // "verb|result"
        var rejected = 0
        var dropped = 0
        var wake: (@Sendable () -> Void)? = nil
    }

    private let state = Mutex(State())
    private let active = Atomic<Int>(0)

    package init() {}

    /// Called (from any thread) whenever a subscriber has something new; the control server sets it.
    package func setWake(_ wake: @escaping @Sendable () -> Void) { state.withLock { $0.wake = wake } }

    package var hasSubscribers: Bool { active.load(ordering: .relaxed) > 0 }

    package func subscribe() -> Int {
        let id = state.withLock { s -> Int in
            defer { s.nextID += 1 }
            s.subscribers[s.nextID] = Subscriber()
            return s.nextID
        }
        active.add(1, ordering: .relaxed)
        return id
    }

    package func unsubscribe(_ id: Int) {
        let removed = state.withLock { $0.subscribers.removeValue(forKey: id) != nil }
        if removed { active.subtract(1, ordering: .relaxed) }
    }

    /// One JSON line to every subscriber.
    package func publish(_ event: JSON) {
        let line = event.text
        let wake = state.withLock { s -> (@Sendable () -> Void)? in
            for id in s.subscribers.keys {
                s.subscribers[id]!.lines.append(line)
                let pending = s.subscribers[id]!.lines.count - s.subscribers[id]!.head
                if pending > Self.queueLimit {
                    s.subscribers[id]!.head += 1
                    s.subscribers[id]!.dropped += 1
                    s.dropped += 1
                }
                if s.subscribers[id]!.head > 4096 {
                    s.subscribers[id]!.lines.removeFirst(s.subscribers[id]!.head)
                    s.subscribers[id]!.head = 0
                }
            }
            return s.wake
        }
        wake?()
    }

    /// Up to `max` queued lines for a subscriber, preceded by a `dropped` notice if it lost some.
    package func take(_ id: Int, max: Int, now: String) -> [String] {
        state.withLock { s -> [String] in
            guard var sub = s.subscribers[id] else { return [] }
            var out: [String] = []
            if sub.dropped > 0 {
                out.append(JSON.object([("time", .string(now)), ("event", .string("dropped")), ("count", .int(sub.dropped))]).text)
                sub.dropped = 0
            }
            let end = min(sub.lines.count, sub.head + max)
            out.append(contentsOf: sub.lines[sub.head..<end])
            sub.head = end
            if sub.head == sub.lines.count {
                sub.lines.removeAll(keepingCapacity: true)
                sub.head = 0
            }
            s.subscribers[id] = sub
            return out
        }
    }

    package func countRequest(verb: String, result: String) {
        state.withLock { $0.requests["\(verb)|\(result)", default: 0] += 1 }
    }

    package func countRejected() { state.withLock { $0.rejected += 1 } }

    package var rejected: Int { state.withLock { $0.rejected } }
    package var dropped: Int { state.withLock { $0.dropped } }

    package var requestCounts: [(verb: String, result: String, count: Int)] {
        state.withLock { s in
            s.requests.sorted { $0.key < $1.key }.map { kv in
                let parts = kv.key.split(separator: "|", maxSplits: 1).map(String.init)
                return (parts[0], parts.count > 1 ? parts[1] : "", kv.value)
            }
        }
    }

    /// For `status`.
    package var counters: [(String, Int)] {
        state.withLock { s in
            [("control_requests", s.requests.values.reduce(0, +)), ("control_rejected", s.rejected),
             ("events_dropped", s.dropped)]
        }
    }
}
