internal import Glibc
public import RNMCore
import Synchronization

/// An `AddressMonitor` driven by the test: what `emit` is given reaches the daemon exactly as a real
/// monitor's output would, from the daemon's own monitor thread.
public final class ScriptedMonitor: AddressMonitor {
    private struct State {
        var queue: [MonitorOutput] = []
        var stopped = false
        var failure: String? = nil
    }

    private let state: Mutex<State>

    public init(initial: [MonitorOutput] = []) {
        state = Mutex(State(queue: initial))
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Queues output for the daemon.
    public func emit(_ output: MonitorOutput) { state.withLock { $0.queue.append(output) } }

    /// Makes `run` throw, as a monitor that cannot open its sockets would.
    public func fail(_ why: String) { state.withLock { $0.failure = why } }

    public func run(_ sink: (MonitorOutput) -> Void) throws {
        while true {
            let (batch, stopped, failure) = state.withLock { s -> ([MonitorOutput], Bool, String?) in
                defer { s.queue.removeAll() }
                return (s.queue, s.stopped, s.failure)
            }
            if let failure { throw Failure(description: failure) }
            for o in batch { sink(o) }
            if stopped { return }
            if batch.isEmpty { usleep(1000) }
        }
    }

    public func stop() { state.withLock { $0.stopped = true } }
}
