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
    /// A control-socket request that needs the state; `reply` is called exactly once, from the reconciler.
    case control(ControlCommand, reply: @Sendable (Result<JSON, ControlError>) -> Void)
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
    package var manualAdded = 0
    package var manualRemoved = 0
    package var manualExpired = 0

    package init() {}

    package var list: [(String, Int)] {
        [("netlink_events", netEvents), ("netlink_overruns", overruns), ("resyncs", resyncs),
         ("transactions_ok", transactionsOK), ("transactions_failed", transactionsFailed),
         ("reloads_ok", reloadsOK), ("reloads_failed", reloadsFailed), ("manual_added", manualAdded),
         ("manual_removed", manualRemoved), ("manual_expired", manualExpired)]
    }
}

/// Back-off for failed commits: 100 ms doubling to 30 s.
package struct RetryPolicy: Sendable {
    package var initial: Duration
    package var maximum: Duration

    package init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = maximum
    }

    func delay(after failures: Int) -> Duration { min(initial * (1 << min(max(failures - 1, 0), 20)), maximum) }
}

/// Where time comes from: monotonic for deadlines (the kernel's timeouts run on CLOCK_MONOTONIC), wall
/// clock for what people read. Both in nanoseconds.
package struct Clocks: Sendable {
    package var monotonic: @Sendable () -> UInt64
    package var wall: @Sendable () -> UInt64

    package init(monotonic: @escaping @Sendable () -> UInt64, wall: @escaping @Sendable () -> UInt64) {
        self.monotonic = monotonic
        self.wall = wall
    }
}

/// Keeps manual entries across restarts (a file in the state directory; memory in tests).
package protocol ManualEntryStore: Sendable {
    func load() throws -> [UInt8]?
    func save(_ bytes: [UInt8]) throws
}

package struct ReconcilerError: Error, CustomStringConvertible {
    package var description: String
}

/// The daemon's state as operators see it.
package enum DaemonState: String, Sendable {
    case starting, ready, reloading, degraded
}

/// The one owner of the state. Folds events into `ReconcileState`, plans, and commits each plan as one
/// transaction, acknowledged before the next. Coalesces by taking everything queued at once. Answers control
/// requests from the same loop, so every answer reflects one consistent state.
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
    private let clocks: Clocks
    private let store: (any ManualEntryStore)?
    private let hub: EventHub?
    private let version: String
    private let started: UInt64

    private let shared = Mutex(Shared())

    private struct Shared {
        var counters = Counters()
        var converged = false
        var generation = 1
        var state = DaemonState.starting
    }

    /// - Parameters:
    ///   - onConverged: called after each commit that left the kernel equal to the desired state, with the
    ///     number of transactions so far (the daemon logs "converged" the first time; tests wait on it).
    package init(
        config: Config, configPath: String, bus: EventBus<DaemonEvent>, backend: any FirewallBackend,
        logger: Logger, retry: RetryPolicy = RetryPolicy(), clocks: Clocks, store: (any ManualEntryStore)? = nil,
        hub: EventHub? = nil, version: String = "dev",
        loadConfig: @escaping @Sendable (String) throws(ConfigError) -> Config,
        onConverged: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        initialConfig = config
        self.configPath = configPath
        self.bus = bus
        self.backend = backend
        self.logger = logger
        self.retry = retry
        self.clocks = clocks
        self.store = store
        self.hub = hub
        self.version = version
        self.loadConfig = loadConfig
        self.onConverged = onConverged
        started = clocks.monotonic()
    }

    package var counters: Counters { shared.withLock { $0.counters } }
    package var configGeneration: Int { shared.withLock { $0.generation } }
    package var daemonState: DaemonState { shared.withLock { $0.state } }

    /// Runs until the bus is closed. Throws only if the monitor reported that it cannot run.
    package func run() throws {
        var loop = Loop(owner: self, state: ReconcileState(config: initialConfig))
        try loop.run()
    }

    fileprivate func count(_ body: (inout Counters) -> Void) { shared.withLock { body(&$0.counters) } }
    fileprivate func setState(_ s: DaemonState) { shared.withLock { $0.state = s } }

    /// The loop's mutable state, owned by the reconciler thread alone.
    private struct Loop {
        let owner: Reconciler
        var state: ReconcileState
        var haveSnapshot = false
        var failures = 0
        var retryAt: UInt64? = nil
        var revertTo: Config? = nil
        var resyncStarted: ContinuousClock.Instant? = nil
        var lastCommitWall: UInt64? = nil
        var lastError: String? = nil
        var lastErrorWall: UInt64? = nil
        var manualDirty = false
        var setCommits: [String: ControlViews.SetCommitInfo] = [:]

        init(owner: Reconciler, state: ReconcileState) {
            self.owner = owner
            self.state = state
        }

        var logger: Logger { owner.logger }
        func now() -> UInt64 { owner.clocks.monotonic() }
        func wall() -> UInt64 { owner.clocks.wall() }
        func publish(_ pairs: [(String, JSON)]) {
            guard let hub = owner.hub, hub.hasSubscribers else { return }
            hub.publish(JSON.object([("time", .string(WallTime.rfc3339(epochNanos: wall())))] + pairs))
        }

        mutating func run() throws {
            restoreManual()
            guard readBack() else { return }
            while true {
                let timeout: Duration? = retryAt.map { t in
                    let n = now()
                    return t > n ? .nanoseconds(Int64(t - n)) : .zero
                }
                guard let batch = owner.bus.next(timeout: timeout) else { return }
                for event in batch { try handle(event) }
                saveManualIfNeeded()
                // Until the first dump arrived we know nothing about addresses: committing now would empty sets.
                guard haveSnapshot else { continue }
                if let t = retryAt {
                    guard now() >= t else { continue }  // still backing off; events are folded in meanwhile
                    retryAt = nil
                    guard readBack() else { return }
                }
                commitIfNeeded()
            }
        }

        mutating func handle(_ event: DaemonEvent) throws {
            switch event {
            case .net(let events):
                owner.count { $0.netEvents += events.count }
                for e in events {
                    state.apply(e)
                    publishNet(e)
                }
            case .snapshot(let links, let addresses, let overrun, let since):
                if overrun {
                    owner.count {
                        $0.overruns += 1
                        $0.resyncs += 1
                    }
                    resyncStarted = since
                    logger.warning(
                        "netlink overrun: the kernel dropped notifications; resynchronising from a full dump",
                        metadata: [
                            "links": "\(links.count)", "addresses": "\(addresses.count)",
                            "dump_ms": "\(Reconciler.ms(ContinuousClock.now - since))",
                        ])
                    publish([("event", .string("resync")), ("links", .int(links.count)), ("addresses", .int(addresses.count))])
                }
                state.apply(.snapshot(links: links, addresses: addresses))
                if !haveSnapshot {
                    for iface in state.absentInterfaces {
                        logger.notice("interface \(iface.name) (zone \(iface.zone)) is not present; waiting for it")
                    }
                }
                haveSnapshot = true
            case .reload:
                _ = reload()
            case .control(let command, let reply):
                reply(control(command))
            case .monitorFailed(let why):
                logger.critical("netlink monitor failed: \(why)")
                throw ReconcilerError(description: "netlink monitor failed: \(why)")
            }
        }

        func publishNet(_ e: NetEvent) {
            guard let hub = owner.hub, hub.hasSubscribers else { return }
            switch e {
            case .addressChanged(let a):
                let link = state.observed.links[a.key.ifindex]
                var pairs: [(String, JSON)] = [
                    ("event", .string("address")), ("op", .string("update")), ("ifindex", .int(Int(a.key.ifindex))),
                    ("ifname", link.map { .string($0.name) } ?? .null), ("address", .string("\(a.key.address)/\(a.key.prefixLength)")),
                    ("flags", .array(a.flagNames.map { .string($0) })),
                ]
                if let name = link?.name, let z = state.config.zoneByInterface[name] { pairs.append(("zone", .string(z))) }
                publish(pairs)
            case .addressRemoved(let k):
                let link = state.observed.links[k.ifindex]
                var pairs: [(String, JSON)] = [
                    ("event", .string("address")), ("op", .string("delete")), ("ifindex", .int(Int(k.ifindex))),
                    ("ifname", link.map { .string($0.name) } ?? .null), ("address", .string("\(k.address)/\(k.prefixLength)")),
                ]
                if let name = link?.name, let z = state.config.zoneByInterface[name] { pairs.append(("zone", .string(z))) }
                publish(pairs)
            case .linkChanged(let l):
                publish([("event", .string("link")), ("op", .string("update")), ("ifindex", .int(Int(l.index))),
                         ("ifname", .string(l.name)), ("oper_state", .string(l.operState.description))])
            case .linkRemoved(let i):
                publish([("event", .string("link")), ("op", .string("delete")), ("ifindex", .int(Int(i)))])
            case .snapshot:
                break
            }
        }

        /// Plans at `now` (after dropping what expired) and commits; on failure schedules a retry.
        mutating func commitIfNeeded() {
            let t = now()
            let expired = state.expire(now: t)
            if !expired.isEmpty {
                owner.count { $0.manualExpired += expired.count }
                manualDirty = true
                saveManualIfNeeded()
            }
            let plan = state.plan(now: t)
            if plan.isEmpty {
                failures = 0
                revertTo = nil
                if let r = resyncStarted {
                    logger.notice("resync done, nothing to change", metadata: ["total_ms": "\(Reconciler.ms(ContinuousClock.now - r))"])
                    resyncStarted = nil
                }
                markConverged(0)
                return
            }
            let started = ContinuousClock.now
            do {
                try owner.backend.commit(plan)
                state.committed(plan)
                failures = 0
                revertTo = nil
                lastCommitWall = wall()
                for set in plan.touchedSets {
                    setCommits[set, default: .init()].lastCommitWall = lastCommitWall
                    setCommits[set, default: .init()].transactions += 1
                }
                let total = owner.shared.withLock { s -> Int in
                    s.counters.transactionsOK += 1
                    return s.counters.transactionsOK
                }
                let took = (ContinuousClock.now - started).microseconds
                logger.debug(
                    "committed",
                    metadata: [
                        "added": "\(plan.addedCount)", "removed": "\(plan.removedCount)",
                        "sets": "\(plan.touchedSets.joined(separator: ","))", "took_us": "\(took)",
                    ])
                publish([("event", .string("commit")), ("added", .int(plan.addedCount)), ("removed", .int(plan.removedCount)),
                         ("sets", .array(plan.touchedSets.map { .string($0) })), ("us", .int(Int(took)))])
                if let r = resyncStarted {
                    // From the overrun to the kernel's acknowledgement: drain, dump, rebuild, diff, commit.
                    logger.notice(
                        "resync committed",
                        metadata: [
                            "total_ms": "\(Reconciler.ms(ContinuousClock.now - r))", "added": "\(plan.addedCount)",
                            "removed": "\(plan.removedCount)",
                        ])
                    resyncStarted = nil
                }
                markConverged(total)
            } catch {
                failures += 1
                owner.count { $0.transactionsFailed += 1 }
                lastError = "\(error)"
                lastErrorWall = wall()
                for set in plan.touchedSets {
                    setCommits[set, default: .init()].lastError = lastError
                    setCommits[set, default: .init()].lastErrorWall = lastErrorWall
                }
                owner.setState(.degraded)
                logger.error("commit failed, kernel state unchanged: \(error)", metadata: ["attempt": "\(failures)"])
                publish([("event", .string("commit_failed")), ("error", .string("\(error)")), ("attempt", .int(failures))])
                if let previous = revertTo {
                    logger.error("reload rejected by the kernel; keeping the previous config")
                    state.replaceConfig(previous, now: now())
                    owner.shared.withLock {
                        $0.generation -= 1
                        $0.counters.reloadsOK -= 1
                        $0.counters.reloadsFailed += 1
                    }
                    publish([("event", .string("reload")), ("ok", .bool(false)), ("error", .string("rejected by the kernel: \(error)"))])
                    revertTo = nil
                }
                retryAt = now() + UInt64(owner.retry.delay(after: failures).microseconds * 1000)
            }
        }

        func markConverged(_ transactions: Int) {
            let first = owner.shared.withLock { s -> Bool in
                defer {
                    s.converged = true
                    s.state = .ready
                }
                return !s.converged
            }
            if first {
                logger.notice("converged", metadata: ["transactions": "\(transactions)"])
            }
            owner.onConverged(transactions)
        }

        /// Reads our table back; retries with back-off until it works or the daemon stops. False: stopping.
        mutating func readBack() -> Bool {
            var attempt = 0
            while true {
                do {
                    state.setApplied(try owner.backend.readBack(table: state.config.table))
                    return true
                } catch {
                    attempt += 1
                    logger.error("cannot read table inet \(state.config.table) back: \(error)", metadata: ["attempt": "\(attempt)"])
                    if !owner.bus.pause(owner.retry.delay(after: attempt)) { return false }
                }
            }
        }

        /// Applies a new config if it is valid and different. Returns the new generation or the error.
        mutating func reload() -> Result<JSON, ControlError> {
            owner.setState(.reloading)
            defer { if owner.daemonState == .reloading { owner.setState(failures > 0 ? .degraded : .ready) } }
            let new: Config
            do {
                new = try owner.loadConfig(owner.configPath)
            } catch {
                owner.count { $0.reloadsFailed += 1 }
                logger.error("reload failed, keeping the running config:\n\(error.description)")
                publish([("event", .string("reload")), ("ok", .bool(false)), ("error", .string(error.description))])
                return .failure(ControlError("reload_failed", error.description))
            }
            let changed = new != state.config
            let generation = owner.shared.withLock { s -> Int in
                s.counters.reloadsOK += 1
                if changed { s.generation += 1 }
                return s.generation
            }
            let result = JSON.object([("generation", .int(generation)), ("changed", .bool(changed))])
            guard changed else {
                logger.info("reload: config unchanged", metadata: ["generation": "\(generation)"])
                publish([("event", .string("reload")), ("ok", .bool(true)), ("generation", .int(generation)), ("changed", .bool(false))])
                return .success(result)
            }
            if new.control != state.config.control {
                logger.warning("reload: control socket settings changed; they take effect when rnmd restarts")
            }
            if new.stateDir != state.config.stateDir {
                logger.warning("reload: state_dir changed; it takes effect when rnmd restarts")
            }
            revertTo = state.config
            let dropped = state.replaceConfig(new, now: now())
            for (set, p) in dropped {
                logger.warning("reload: manual entry \(p.compactDescription) dropped: set \(set) is no longer declared or cannot hold it")
            }
            if !dropped.isEmpty { manualDirty = true }
            logger.notice("reload: new config", metadata: ["generation": "\(generation)", "zones": "\(new.zones.count)"])
            publish([("event", .string("reload")), ("ok", .bool(true)), ("generation", .int(generation)), ("changed", .bool(true))])
            return .success(result)
        }

        mutating func control(_ command: ControlCommand) -> Result<JSON, ControlError> {
            let t = now()
            let expired = state.expire(now: t)
            if !expired.isEmpty {
                owner.count { $0.manualExpired += expired.count }
                manualDirty = true
            }
            switch command {
            case .status:
                return .success(ControlViews.status(state, info()))
            case .sets:
                return .success(ControlViews.sets(state, commits: setCommits))
            case .setShow(let name):
                guard let r = ControlViews.setShow(state, name, now: t) else {
                    return .failure(ControlError("unknown_set", "no managed set named \(YAMLNode.quoted(name))"))
                }
                return .success(r)
            case .setAdd(let name, let elements, let timeout):
                var next = state
                let added: [IPPrefix]
                do {
                    added = try next.addManual(set: name, elements, timeoutMs: timeout, now: t)
                } catch {
                    return .failure(ControlError(error.code, error.description))
                }
                // On disk before the answer: an acknowledged entry survives a crash right after it.
                if let e = persist(next) { return .failure(e) }
                state = next
                owner.count { $0.manualAdded += added.count }
                let list = JSON.array(added.map { .string($0.compactDescription) })
                let suffix = timeout.map { " timeout \(Durations.format(ms: $0))" } ?? ""
                logger.info("manual add to \(name): \(added.map(\.compactDescription).joined(separator: " "))\(suffix)")
                publish([("event", .string("manual")), ("op", .string("add")), ("set", .string(name)), ("elements", list)])
                return .success(.object([("set", .string(name)), ("added", list)]))
            case .setDel(let name, let elements):
                var next = state
                let removed: [IPPrefix]
                do {
                    removed = try next.deleteManual(set: name, elements, now: t)
                } catch {
                    return .failure(ControlError(error.code, error.description))
                }
                if let e = persist(next) { return .failure(e) }
                state = next
                owner.count { $0.manualRemoved += removed.count }
                let list = JSON.array(removed.map { .string($0.compactDescription) })
                logger.info("manual delete from \(name): \(removed.map(\.compactDescription).joined(separator: " "))")
                publish([("event", .string("manual")), ("op", .string("delete")), ("set", .string(name)), ("elements", list)])
                return .success(.object([("set", .string(name)), ("removed", list)]))
            case .reload:
                return reload()
            case .metrics:
                return .success(.object([("text", .string(metricsText()))]))
            case .plugins:
                return .success(.array([]))
            case .ping, .events:
                return .failure(ControlError("internal", "\(command.verb) is answered by the control server"))
            }
        }

        func info() -> ControlViews.DaemonInfo {
            let (counters, generation, daemonState) = owner.shared.withLock { ($0.counters, $0.generation, $0.state) }
            return ControlViews.DaemonInfo(
                version: owner.version, state: daemonState.rawValue, uptimeMs: (now() - owner.started) / 1_000_000,
                configPath: owner.configPath, generation: generation, lastCommitWall: lastCommitWall,
                lastError: lastError, lastErrorWall: lastErrorWall,
                counters: counters.list + (owner.hub?.counters ?? []), setCommits: setCommits)
        }

        /// Prometheus text exposition.
        func metricsText() -> String {
            let i = info()
            var out = ""
            func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Int)]) {
                out += "# HELP rnm_\(name) \(help)\n# TYPE rnm_\(name) \(type)\n"
                for (labels, v) in samples { out += "rnm_\(name)\(labels) \(v)\n" }
            }
            let c = Dictionary(i.counters, uniquingKeysWith: { a, _ in a })
            metric("up", "gauge", "1 while rnmd runs; state as a label.", [("{state=\"\(i.state)\"}", 1)])
            metric("config_generation", "gauge", "Config generation (1 at start, +1 per changed reload).", [("", i.generation)])
            metric("netlink_events_total", "counter", "Link and address notifications processed.", [("", c["netlink_events"] ?? 0)])
            metric("netlink_overruns_total", "counter", "Netlink receive overruns (ENOBUFS).", [("", c["netlink_overruns"] ?? 0)])
            metric("resyncs_total", "counter", "Full resynchronisations.", [("{reason=\"overrun\"}", c["resyncs"] ?? 0)])
            metric("transactions_total", "counter", "nftables transactions.",
                   [("{result=\"ok\"}", c["transactions_ok"] ?? 0), ("{result=\"failed\"}", c["transactions_failed"] ?? 0)])
            metric("reloads_total", "counter", "Config reloads.",
                   [("{result=\"ok\"}", c["reloads_ok"] ?? 0), ("{result=\"failed\"}", c["reloads_failed"] ?? 0)])
            metric("manual_entries_total", "counter", "Manual set entries by operation.",
                   [("{op=\"add\"}", c["manual_added"] ?? 0), ("{op=\"delete\"}", c["manual_removed"] ?? 0),
                    ("{op=\"expired\"}", c["manual_expired"] ?? 0)])
            metric("set_elements", "gauge", "Elements in each managed set (as committed to the kernel).",
                   state.setSpecs.keys.sorted().map { ("{set=\"\($0)\"}", state.desiredCount(of: $0)) })
            if let hub = owner.hub {
                metric("control_requests_total", "counter", "Control requests by verb and result.",
                       hub.requestCounts.map { ("{verb=\"\($0.verb)\",result=\"\($0.result)\"}", $0.count) })
                metric("control_rejected_total", "counter", "Control requests refused for lack of permission.",
                       [("", hub.rejected)])
                metric("events_dropped_total", "counter", "Events dropped because a subscriber read too slowly.",
                       [("", hub.dropped)])
            }
            return out
        }

        // MARK: Manual entries on disk

        mutating func restoreManual() {
            guard let store = owner.store else { return }
            do {
                guard let bytes = try store.load() else { return }
                let decoded = try ManualStore.decode(bytes, monoNow: now(), wallNow: wall())
                var restored = 0
                for (set, entries) in decoded.entries {
                    for (p, d) in entries {
                        let n = now()
                        let remaining: UInt64? = d == .never ? nil : (d > n ? max((d - n) / 1_000_000, 1) : 1)
                        do {
                            try state.addManual(set: set, [p], timeoutMs: remaining, now: now())
                            restored += 1
                        } catch {
                            logger.warning("not restoring manual entry \(p.compactDescription) of set \(set): \(error)")
                        }
                    }
                }
                logger.notice("manual entries restored", metadata: ["restored": "\(restored)", "expired": "\(decoded.expired)"])
                if decoded.expired > 0 { manualDirty = true }
            } catch {
                logger.error("cannot restore manual entries, starting without them: \(error)")
            }
        }

        /// Writes the manual entries of `candidate`; nil on success, else the error to answer with (and the
        /// candidate is not adopted: nothing changes).
        mutating func persist(_ candidate: ReconcileState) -> ControlError? {
            guard let store = owner.store else { return nil }
            let text = ManualStore.encode(candidate.manual, monoNow: now(), wallNow: wall())
            do {
                try store.save(Array(text.utf8))
                manualDirty = false
                return nil
            } catch {
                logger.error("cannot save manual entries: \(error)")
                return ControlError("persist_failed", "the entry was not applied: cannot save the state file: \(error)")
            }
        }

        mutating func saveManualIfNeeded() {
            guard manualDirty, let store = owner.store else { return }
            manualDirty = false
            let text = ManualStore.encode(state.manual, monoNow: now(), wallNow: wall())
            do {
                try store.save(Array(text.utf8))
            } catch {
                logger.error("cannot save manual entries: \(error)")
                manualDirty = true
            }
        }
    }

    static func ms(_ d: Duration) -> String {
        let us = d.microseconds
        return "\(us / 1000).\(String(repeating: "0", count: 3 - String(us % 1000).count))\(us % 1000)"
    }
}

extension Duration {
    var microseconds: Int64 {
        let (s, a) = components
        return s * 1_000_000 + a / 1_000_000_000_000
    }
}
