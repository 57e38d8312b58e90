package import Logging
package import RNMCore
import Synchronization

/// Everything that reaches the reconciler, over one bounded bus.
package enum DaemonEvent: Sendable {
    /// Incremental netlink changes.
    case net([NetEvent])
    /// A full netlink dump (initial, or after an overrun) and when the monitor started it.
    case snapshot(links: [Link], addresses: [Address], overrun: Bool, since: ContinuousClock.Instant = .now)
    /// Re-read the config file (SIGHUP).
    case reload
    /// The netlink monitor could not run; the daemon cannot do its job.
    case monitorFailed(String)
}

/// Counters since start.
package struct Counters: Sendable, Equatable {
    package var netEvents = 0
    package var overruns = 0
    package var resyncs = 0
    package var transactionsOK = 0
    package var transactionsFailed = 0
    package var reloadsOK = 0
    package var reloadsFailed = 0

    package init() {}
}

/// Back-off for failed commits: 100 ms doubling to 30 s.
package struct RetryPolicy: Sendable {
    package var initial: Duration
    package var maximum: Duration

    package init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = maximum
    }
}

package struct ReconcilerError: Error, CustomStringConvertible {
    package var description: String
}

/// The one owner of the state. Folds events into `ReconcileState`, plans, and commits each plan as one
/// transaction, acknowledged before the next. Coalesces by taking everything queued at once.
///
/// `run()` blocks the thread it is called on (the daemon's `rnmd-reconcile` thread) until the bus closes.
package final class Reconciler: Sendable {
    private let bus: EventBus<DaemonEvent>
    private let backend: any FirewallBackend
    private let logger: Logger
    private let configPath: String
    private let loadConfig: @Sendable (String) throws(ConfigError) -> Config
    private let retry: RetryPolicy
    private let initialConfig: Config
    private let onConverged: @Sendable (Int) -> Void

    private let shared = Mutex(Shared())

    private struct Shared {
        var counters = Counters()
        var converged = false
        var generation = 1
    }

    /// - Parameters:
    ///   - onConverged: called after each commit that left the kernel equal to the desired state, with the
    ///     number of transactions so far (the daemon logs "converged" the first time; tests wait on it).
    package init(
        config: Config, configPath: String, bus: EventBus<DaemonEvent>, backend: any FirewallBackend,
        logger: Logger, retry: RetryPolicy = RetryPolicy(),
        loadConfig: @escaping @Sendable (String) throws(ConfigError) -> Config,
        onConverged: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        initialConfig = config
        self.configPath = configPath
        self.bus = bus
        self.backend = backend
        self.logger = logger
        self.retry = retry
        self.loadConfig = loadConfig
        self.onConverged = onConverged
    }

    package var counters: Counters { shared.withLock { $0.counters } }
    package var configGeneration: Int { shared.withLock { $0.generation } }

    /// Runs until the bus is closed. Throws only if the monitor reported that it cannot run.
    package func run() throws {
        try loop()
    }

    private func count(_ body: (inout Counters) -> Void) {
        shared.withLock { body(&$0.counters) }
    }

    private func loop() throws {
        var state = ReconcileState(config: initialConfig)
        guard readBack(into: &state) else { return }
        var haveSnapshot = false
        var failures = 0
        var revertTo: Config? = nil
        var resyncStarted: ContinuousClock.Instant? = nil

        while true {
            // After a failed commit: wait out the back-off, then take whatever arrived meanwhile.
            let batch: [DaemonEvent]?
            if failures > 0 {
                let delay = min(retry.initial * (1 << min(failures - 1, 20)), retry.maximum)
                guard bus.pause(delay), readBack(into: &state) else { return }
                batch = bus.next(timeout: .zero)
            } else {
                batch = bus.next()
            }
            guard let batch else { return }

            for event in batch {
                switch event {
                case .net(let events):
                    count { $0.netEvents += events.count }
                    for e in events { state.apply(e) }
                case .snapshot(let links, let addresses, let overrun, let since):
                    if overrun {
                        count {
                            $0.overruns += 1
                            $0.resyncs += 1
                        }
                        resyncStarted = since
                        logger.warning(
                            "netlink overrun: the kernel dropped notifications; resynchronising from a full dump",
                            metadata: [
                                "links": "\(links.count)", "addresses": "\(addresses.count)",
                                "dump_ms": "\(Self.ms(ContinuousClock.now - since))",
                            ])
                    }
                    state.apply(.snapshot(links: links, addresses: addresses))
                    if !haveSnapshot {
                        for iface in state.absentInterfaces {
                            logger.notice("interface \(iface.name) (zone \(iface.zone)) is not present; waiting for it")
                        }
                    }
                    haveSnapshot = true
                case .reload:
                    if let previous = reload(&state) { revertTo = previous }
                case .monitorFailed(let why):
                    logger.critical("netlink monitor failed: \(why)")
                    throw ReconcilerError(description: "netlink monitor failed: \(why)")
                }
            }
            // Until the first dump arrived we know nothing about addresses: committing now would empty sets.
            guard haveSnapshot else { continue }

            let plan = state.plan()
            if plan.isEmpty {
                failures = 0
                revertTo = nil
                if let t = resyncStarted {
                    logger.notice("resync done, nothing to change", metadata: ["total_ms": "\(Self.ms(ContinuousClock.now - t))"])
                    resyncStarted = nil
                }
                markConverged(0)
                continue
            }
            let started = ContinuousClock.now
            do {
                try backend.commit(plan)
                state.committed(plan)
                failures = 0
                revertTo = nil
                let total = shared.withLock { s -> Int in
                    s.counters.transactionsOK += 1
                    return s.counters.transactionsOK
                }
                logger.debug(
                    "committed",
                    metadata: [
                        "added": "\(plan.addedCount)", "removed": "\(plan.removedCount)",
                        "sets": "\(plan.touchedSets.joined(separator: ","))",
                        "took_us": "\((ContinuousClock.now - started).microseconds)",
                    ])
                if let t = resyncStarted {
                    // From the overrun to the kernel's acknowledgement: drain, dump, rebuild, diff, commit.
                    logger.notice(
                        "resync committed",
                        metadata: [
                            "total_ms": "\(Self.ms(ContinuousClock.now - t))", "added": "\(plan.addedCount)",
                            "removed": "\(plan.removedCount)",
                        ])
                    resyncStarted = nil
                }
                markConverged(total)
            } catch {
                failures += 1
                count { $0.transactionsFailed += 1 }
                logger.error("commit failed, kernel state unchanged: \(error)", metadata: ["attempt": "\(failures)"])
                if let previous = revertTo {
                    logger.error("reload rejected by the kernel; keeping the previous config")
                    state.replaceConfig(previous)
                    shared.withLock {
                        $0.generation -= 1
                        $0.counters.reloadsOK -= 1
                        $0.counters.reloadsFailed += 1
                    }
                    revertTo = nil
                }
            }
        }
    }

    static func ms(_ d: Duration) -> String {
        let us = d.microseconds
        return "\(us / 1000).\(String(repeating: "0", count: 3 - String(us % 1000).count))\(us % 1000)"
    }

    private func markConverged(_ transactions: Int) {
        let first = shared.withLock { s -> Bool in
            defer { s.converged = true }
            return !s.converged
        }
        if first {
            logger.notice("converged", metadata: ["transactions": "\(transactions)"])
        }
        onConverged(transactions)
    }

    /// Reads our table back; retries with back-off until it works or the daemon stops. False: stopping.
    private func readBack(into state: inout ReconcileState) -> Bool {
        var attempt = 0
        while true {
            do {
                state.setApplied(try backend.readBack(table: state.config.table))
                return true
            } catch {
                attempt += 1
                logger.error("cannot read table inet \(state.config.table) back: \(error)", metadata: ["attempt": "\(attempt)"])
                let delay = min(retry.initial * (1 << min(attempt - 1, 20)), retry.maximum)
                if !bus.pause(delay) { return false }
            }
        }
    }

    /// Applies a new config if it is valid and different. Returns the previous config if it was replaced.
    private func reload(_ state: inout ReconcileState) -> Config? {
        let new: Config
        do {
            new = try loadConfig(configPath)
        } catch {
            count { $0.reloadsFailed += 1 }
            logger.error("reload failed, keeping the running config:\n\(error.description)")
            return nil
        }
        let generation = shared.withLock { s -> Int in
            s.counters.reloadsOK += 1
            if new != state.config { s.generation += 1 }
            return s.generation
        }
        guard new != state.config else {
            logger.info("reload: config unchanged", metadata: ["generation": "\(generation)"])
            return nil
        }
        let previous = state.config
        state.replaceConfig(new)
        logger.notice("reload: new config", metadata: ["generation": "\(generation)", "zones": "\(new.zones.count)"])
        return previous
    }
}

extension Duration {
    var microseconds: Int64 {
        let (s, a) = components
        return s * 1_000_000 + a / 1_000_000_000_000
    }
}
