internal import CRNMShims
internal import Glibc
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
    /// Someone else changed our table (or nftables notifications were lost).
    case tableChanged(TableChange)
    /// A plugin queued calls (the reconciler drains every plugin's queue).
    case plugins
    /// A plugin lifecycle job (start, stop, reconfigure) finished.
    case pluginJob(PluginHost.JobResult)
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
    /// Whole-table loads (each is also a transaction).
    package var tableLoads = 0
    /// Changes by others to our table, by kind (`table`, `chain`, `rule`, `set`, `element`, …).
    package var drift: [String: Int] = [:]
    package var repairs = 0
    package var audits = 0
    package var notificationsLost = 0
    /// Plugin calls applied, and elements withdrawn from plugins that stopped.
    package var pluginCalls = 0
    package var pluginWithdrawn = 0
    /// Address, link, route and sysctl changes rnm applied.
    package var networkChanges = 0

    package init() {}

    package var list: [(String, Int)] {
        [("netlink_events", netEvents), ("netlink_overruns", overruns), ("resyncs", resyncs),
         ("transactions_ok", transactionsOK), ("transactions_failed", transactionsFailed),
         ("table_loads", tableLoads), ("reloads_ok", reloadsOK), ("reloads_failed", reloadsFailed),
         ("manual_added", manualAdded), ("manual_removed", manualRemoved), ("manual_expired", manualExpired),
         ("drift_repairs", repairs), ("audits", audits), ("nft_notifications_lost", notificationsLost),
         ("plugin_calls", pluginCalls), ("plugin_withdrawn", pluginWithdrawn), ("network_changes", networkChanges)]
            + drift.sorted { $0.key < $1.key }.map { ("drift_\($0.key)", $0.value) }
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
    private let onTable: @Sendable (String) -> Void
    private let pluginWatchdog: Duration
    /// Where static addresses, link settings, routes and sysctls are applied (nil: not managed, in tests).
    private let network: (any NetworkBackend)?
    /// The service manager (READY, RELOADING, STATUS, WATCHDOG), if rnmd runs under one.
    private let notifier: SystemdNotifier?
    /// Test hooks (`debug stall`) are honoured.
    private let testHooks: Bool
    /// The reconciler thread's kernel id: every transaction it commits is ours (see `isOwn`).
    private let threadID = Atomic<Int32>(0)

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
        onConverged: @escaping @Sendable (Int) -> Void = { _ in },
        onTable: @escaping @Sendable (String) -> Void = { _ in },
        pluginWatchdog: Duration = .seconds(5),
        network: (any NetworkBackend)? = nil,
        notifier: SystemdNotifier? = nil,
        testHooks: Bool = false
    ) {
        initialConfig = config
        self.network = network
        self.notifier = notifier
        self.testHooks = testHooks
        self.pluginWatchdog = pluginWatchdog
        self.onTable = onTable
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
        threadID.store(RNM_gettid(), ordering: .releasing)
        let bus = bus
        let plugins = PluginHost(
            logger: logger, clocks: clocks, watchdog: pluginWatchdog, wake: { bus.send(.plugins, weight: 0) },
            report: { bus.send(.pluginJob($0), weight: 0) })
        var loop = Loop(owner: self, state: ReconcileState(config: initialConfig), plugins: plugins)
        defer { plugins.shutdown() }
        try loop.run()
    }

    /// Whether a transaction committed by task `pid` (a thread id, from nftables' generation notice) is ours.
    package func isOwn(_ pid: UInt32) -> Bool { Int32(bitPattern: pid) == threadID.load(ordering: .acquiring) }

    fileprivate func count(_ body: (inout Counters) -> Void) { shared.withLock { body(&$0.counters) } }
    fileprivate func setState(_ s: DaemonState) { shared.withLock { $0.state = s } }

    /// The loop's mutable state, owned by the reconciler thread alone.
    private struct Loop {
        let owner: Reconciler
        var state: ReconcileState
        let plugins: PluginHost
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
        /// What we last loaded as a whole table, and how the kernel lists it right after (the reference
        /// the audit compares against). nil until the first load.
        var loaded: Loaded? = nil
        /// The next commit must load the whole table (start, structural reload, structural drift).
        var needLoad = true
        /// Read the managed elements back before the next plan (element drift).
        var needReadBack = false
        var needAudit = false
        var auditAt: UInt64? = nil
        /// When the drift being repaired was detected.
        var repairStarted: ContinuousClock.Instant? = nil
        var lastLoadReason = "start"
        /// Something that can change the network plan happened (net events, reload): plan and apply again.
        var netDirty = true
        /// Read the sysctls back at the next plan (start, resync, reload, audit, retry timer): nothing announces
        /// their change, and reading them on every address event would put file I/O on the hot path.
        var sysctlCheck = true
        /// The kernel's routes (rnm's) were dumped; routes are planned only after.
        var routesKnown = false
        /// Sysctls written, so they are written once (again when their interface re-appears).
        var sysctlsDone: [String: String] = [:]
        /// Changes the kernel refused, by subject, until they succeed (retried after every relevant event).
        var netFailures: [String: String] = [:]
        /// Configured addresses and routes seen in place: their later disappearance is drift.
        var netApplied: Set<String> = []
        /// When refused network changes are tried again even without an event (a foreign route in the way
        /// may go without a notification rnm sees): 1 s doubling to 30 s while they keep failing.
        var netRetryAt: UInt64? = nil
        var netRetryDelay: UInt64 = 1_000_000_000
        /// The next WATCHDOG=1 ping is due (monotonic ns): sent from this loop, so a stuck loop stops them.
        var watchdogAt: UInt64? = nil
        /// READY=1 was sent (after the first convergence).
        var readySent = false
        /// The first commit waits for plugins to settle (see `PluginHost.settled`).
        var holdForPlugins = false
        let startedAt = ContinuousClock.now

        struct Loaded {
            var table: String
            var structure: String
            var reference: String?
        }

        init(owner: Reconciler, state: ReconcileState, plugins: PluginHost) {
            self.owner = owner
            self.state = state
            self.plugins = plugins
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
            scheduleAudit()
            syncPlugins()
            let granted = Set(state.config.plugins.filter(\.enabled).flatMap(\.sets))
            holdForPlugins = granted.contains { state.applied?.elements[$0]?.isEmpty == false }
            while true {
                let n = now()
                if let interval = owner.notifier?.watchdogInterval {
                    if n >= watchdogAt ?? 0 {
                        owner.notifier?.send("WATCHDOG=1")
                        watchdogAt = n &+ interval
                    }
                }
                let next = [retryAt, auditAt, netRetryAt, watchdogAt].compactMap { $0 }.min()
                var timeout: Duration? = next.map { t in t > n ? .nanoseconds(Int64(t - n)) : .zero }
                if let w = plugins.watchdogTimeout() { timeout = min(timeout ?? w, w) }
                if holdForPlugins { timeout = min(timeout ?? .milliseconds(50), .milliseconds(50)) }
                guard let batch = owner.bus.next(timeout: timeout) else { return }
                for event in batch { try handle(event) }
                apply(plugins.checkWatchdogs())
                saveManualIfNeeded()
                // Until the first dump arrived we know nothing about addresses: committing now would empty sets.
                guard haveSnapshot else { continue }
                // Nor, right after start, about what plugins contribute: if the table already holds elements in
                // sets granted to plugins (rnmd restarted), hold the first commit until the plugins had their
                // chance to re-contribute (at most 1 s), so they do not leave the kernel for a moment.
                if holdForPlugins {
                    if !plugins.settled(), ContinuousClock.now - startedAt < .seconds(1) { continue }
                    holdForPlugins = false
                }
                if let t = retryAt {
                    guard now() >= t else { continue }  // still backing off; events are folded in meanwhile
                    retryAt = nil
                    if !needLoad { guard readBack() else { return } }
                }
                if let t = auditAt, now() >= t { needAudit = true }
                if needAudit { audit() }
                if needReadBack {
                    needReadBack = false
                    guard readBack() else { return }
                }
                if let t = netRetryAt, now() >= t {
                    netRetryAt = nil
                    netDirty = true
                    sysctlCheck = true
                }
                if netDirty { applyNetwork() }
                commitIfNeeded()
            }
        }

        mutating func handle(_ event: DaemonEvent) throws {
            switch event {
            case .net(let events):
                owner.count { $0.netEvents += events.count }
                for e in events {
                    switch e {
                    case .routes: routesKnown = true
                    case .linkChanged(let l) where state.observed.links[l.index] == nil:
                        // A new link (or a re-created one): its sysctls are written again.
                        sysctlsDone = sysctlsDone.filter { !$0.key.contains("/\(l.name)/") }
                    default: break
                    }
                    state.apply(e)
                    publishNet(e)
                }
                netDirty = true
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
                netDirty = true
                sysctlCheck = true
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
            case .tableChanged(let change):
                drifted(change)
            case .plugins:
                drainPlugins()
            case .pluginJob(let result):
                apply(plugins.handle(result))
            }
        }

        // MARK: Network (addresses, links, routes, sysctls)

        /// Plans the network changes the config asks for and applies them, one acknowledged request each. What
        /// the kernel refuses is remembered and retried after the next relevant event (a link or address
        /// appearing, say); what someone else removed is put back and counted as drift.
        mutating func applyNetwork() {
            netDirty = false
            guard let net = owner.network else { return }
            let config = state.config
            // What is in place now: its disappearance later is drift.
            for iface in config.interfaces {
                guard let link = state.observed.link(named: iface.name) else { continue }
                for p in iface.addresses where state.observed.addresses[AddressKey(ifindex: link.index, address: p.address, prefixLength: p.length)] != nil {
                    netApplied.insert("address \(p) on \(iface.name)")
                }
            }
            for key in state.observed.routes.keys { netApplied.insert("route \(key)") }
            // Sysctls as they are now (someone may have turned forwarding off): what differs is written again.
            if sysctlCheck {
                sysctlCheck = false
                for key in NetworkPlan.desiredSysctls(config, state.observed).keys { sysctlsDone[key] = net.readSysctl(key) }
            }
            let ops = NetworkPlan.compute(config: config, observed: state.observed, routesKnown: routesKnown, sysctlsDone: sysctlsDone)
            for op in ops {
                let subject = op.subject
                do throws(NetworkError) {
                    switch op {
                    case .addAddress(let p, let index, let name):
                        if netApplied.contains(subject) {
                            owner.count { $0.drift["address", default: 0] += 1 }
                            logger.warning("address \(p) on \(name) was removed by someone else; restoring it")
                        }
                        try net.addAddress(p, ifindex: index)
                        state.apply(.addressChanged(Address(
                            key: AddressKey(ifindex: index, address: p.address, prefixLength: p.length), protocolID: NetworkMark.protocolID)))
                    case .deleteAddress(let p, let index, _, _):
                        try net.deleteAddress(p, ifindex: index)
                        state.apply(.addressRemoved(AddressKey(ifindex: index, address: p.address, prefixLength: p.length)))
                        netApplied.remove(subject)
                    case .setLink(let index, _, let up, let mtu):
                        try net.setLink(ifindex: index, up: up, mtu: mtu)
                        if var link = state.observed.links[index] {
                            if let up { link.isUp = up }
                            if let mtu { link.mtu = mtu }
                            state.apply(.linkChanged(link))
                        }
                    case .addRoute(let r):
                        if netApplied.contains(subject) {
                            owner.count { $0.drift["route", default: 0] += 1 }
                            logger.warning("route \(r.key) was removed by someone else; restoring it")
                        }
                        try net.addRoute(r)
                        state.apply(.routeChanged(r))
                    case .replaceRoute(let r):
                        try net.replaceRoute(r)
                        state.apply(.routeChanged(r))
                    case .deleteRoute(let r):
                        try net.deleteRoute(r)
                        state.apply(.routeRemoved(r.key))
                        netApplied.remove(subject)
                    case .sysctl(let k, let v):
                        try net.setSysctl(k, v)
                        sysctlsDone[k] = v
                    }
                    owner.count { $0.networkChanges += 1 }
                    if netFailures.removeValue(forKey: subject) != nil {
                        logger.notice("network: \(op) (after an earlier failure)")
                    } else {
                        logger.info("network: \(op)")
                    }
                    publish([("event", .string("network")), ("op", .string(op.description)), ("ok", .bool(true))])
                } catch {
                    var why = error.message
                    if error.code == NetworkError.EEXIST, case .addRoute = op {
                        why = "a route with that destination, table and metric exists and is not rnm's; left alone"
                    } else if error.code == NetworkError.ENETUNREACH {
                        why += " (retried when links or addresses change)"
                    }
                    if netFailures[subject] != why {
                        logger.warning("network: cannot \(op): \(why)")
                        publish([("event", .string("network")), ("op", .string(op.description)), ("ok", .bool(false)), ("error", .string(why))])
                    }
                    netFailures[subject] = why
                }
            }
            if netFailures.isEmpty {
                netRetryAt = nil
                netRetryDelay = 1_000_000_000
            } else if netRetryAt == nil {
                netRetryAt = now() &+ netRetryDelay
                netRetryDelay = min(netRetryDelay * 2, 30_000_000_000)
            }
        }

        /// One line for the service manager's STATUS=.
        func statusLine() -> String {
            let elements = state.setSpecs.keys.reduce(0) { $0 + state.desiredCount(of: $1) }
            let running = plugins.records.filter { $0.state == .running }.count
            let total = plugins.records.count
            return "table inet \(state.config.table): \(state.config.zones.count) zones, \(elements) elements"
                + (total > 0 ? "; plugins \(running)/\(total) running" : "")
                + (netFailures.isEmpty ? "" : "; \(netFailures.count) network changes pending")
                + (lastError.map { _ in failures > 0 ? "; commits failing" : "" } ?? "")
        }

        /// The network part of `status`: configured addresses, link settings and routes with their state.
        func networkView() -> JSON {
            let config = state.config
            var addresses: [JSON] = []
            for iface in config.interfaces {
                let link = state.observed.link(named: iface.name)
                for p in iface.addresses {
                    let subject = "address \(p) on \(iface.name)"
                    let present = link.map { state.observed.addresses[AddressKey(ifindex: $0.index, address: p.address, prefixLength: p.length)] != nil } ?? false
                    let st = present ? "present" : link == nil ? "waiting for the interface" : netFailures[subject].map { "failed: \($0)" } ?? "missing"
                    addresses.append(.object([("interface", .string(iface.name)), ("address", .string("\(p)")), ("state", .string(st))]))
                }
            }
            let (routes, waiting) = NetworkPlan.desiredRoutes(config, state.observed)
            var routeList: [JSON] = []
            for r in routes {
                let subject = "route \(r.key)"
                let have = state.observed.routes[r.key]
                let st = have != nil && have?.gateway == r.gateway ? "present" : netFailures[subject].map { "failed: \($0)" } ?? (routesKnown ? "missing" : "unknown")
                routeList.append(.object([
                    ("to", .string(r.key.destination.length == 0 ? "default" : r.key.destination.compactDescription)),
                    ("via", r.gateway.map { .string("\($0)") } ?? .null), ("table", .int(Int(r.key.table))),
                    ("metric", .int(Int(r.key.metric))), ("state", .string(st)),
                ]))
            }
            for (rc, why) in waiting {
                routeList.append(.object([
                    ("to", .string(rc.to.length == 0 ? "default" : rc.to.compactDescription)), ("via", rc.via.map { .string("\($0)") } ?? .null),
                    ("table", .int(Int(rc.table))), ("metric", .int(Int(rc.metric ?? 0))), ("state", .string("waiting: \(why)")),
                ]))
            }
            return .object([
                ("managed", .bool(owner.network != nil)), ("forwarding", .bool(config.forwarding)),
                ("addresses", .array(addresses)), ("routes", .array(routeList)),
                ("failures", .object(netFailures.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            ])
        }

        // MARK: Plugins

        /// Brings plugins in line with the config (jobs start on the plugins' threads; nothing here waits).
        mutating func syncPlugins(retry: Bool = true) {
            apply(plugins.sync(state.config, retry: retry))
        }

        /// What the plugin host asks of the contributions.
        mutating func apply(_ effects: [PluginHost.Effect]) {
            for effect in effects {
                switch effect {
                case .withdraw(let name):
                    let n = state.withdrawPlugin(name) + state.withdrawPlugin(ReconcileState.retiredName(name))
                    owner.count { $0.pluginWithdrawn += n }
                    if n > 0 { logger.info("plugin \(name): withdrew its \(n) elements") }
                case .retire(let name):
                    state.retirePlugin(name)
                case .dropRetired(let name):
                    let n = state.withdrawPlugin(ReconcileState.retiredName(name))
                    owner.count { $0.pluginWithdrawn += n }
                case .drain:
                    drainPlugins()
                }
            }
        }

        mutating func drainPlugins() {
            let t = now()
            for (name, calls) in plugins.drain() {
                for call in calls {
                    switch call {
                    case .apply(let set, let changes): state.applyPlugin(name, set: set, changes, now: t)
                    case .replace(let set, let entries, let timeout): state.replacePlugin(name, set: set, entries, timeoutMs: timeout, now: t)
                    }
                }
                owner.count { $0.pluginCalls += calls.count }
            }
        }

        // MARK: Drift

        /// Someone else's transaction touched our table: count, log, stream, and schedule the repair.
        mutating func drifted(_ change: TableChange) {
            if change.lost {
                owner.count { $0.notificationsLost += 1 }
                logger.info("nftables notifications were lost; auditing table inet \(state.config.table)")
                needAudit = true
                return
            }
            let elementsOnly = change.isElementsOnly(managed: state.setSpecs.keys)
            let kind = Self.primaryKind(change.kinds.keys)
            record(kind: kind, detail: change.summary, origin: change.origin, pid: change.pid, process: change.process)
            guard state.config.driftRepair else { return }
            if elementsOnly { needReadBack = true } else { needLoad = true; lastLoadReason = "drift" }
        }

        /// The most structural kind among those seen: what a repair has to restore.
        static func primaryKind(_ kinds: some Collection<String>) -> String {
            for k in ["table", "chain", "set", "rule", "flowtable", "object", "element"] where kinds.contains(k) { return k }
            return kinds.first ?? "other"
        }

        mutating func record(kind: String, detail: String, origin: String, pid: UInt32? = nil, process: String? = nil) {
            owner.count { $0.drift[kind, default: 0] += 1 }
            let repair = state.config.driftRepair
            if repair && repairStarted == nil { repairStarted = ContinuousClock.now }
            logger.warning(
                "table inet \(state.config.table) changed \(origin): \(detail); \(repair ? "repairing" : "reporting only (drift: report)")",
                metadata: ["kind": "\(kind)"])
            var pairs: [(String, JSON)] = [
                ("event", .string("drift")), ("kind", .string(kind)), ("detail", .string(detail)),
                ("action", .string(repair ? "repair" : "report")),
            ]
            if let pid { pairs.append(("pid", .int(Int(pid)))) }
            if let process { pairs.append(("process", .string(process))) }
            publish(pairs)
        }

        func scheduleAuditTime() -> UInt64? {
            let ms = state.config.auditIntervalMs
            return ms == 0 ? nil : now() &+ ms * 1_000_000
        }

        mutating func scheduleAudit() { auditAt = scheduleAuditTime() }

        /// The backstop: reads our table back (managed elements and the structure listing) and compares it
        /// with what we committed. Drift found here is repaired like drift reported by notifications.
        mutating func audit() {
            needAudit = false
            scheduleAudit()
            netDirty = true  // sysctls (and anything whose change sends no notification) are checked too
            sysctlCheck = true
            guard let loaded, !needLoad else { return }  // a load is due anyway
            owner.count { $0.audits += 1 }
            let table = state.config.table
            let back: TableState?
            let listing: String?
            do {
                back = try owner.backend.readBack(table: table, sets: Set(state.setSpecs.keys))
                listing = try owner.backend.listStructure(table: table)
            } catch {
                logger.error("audit: cannot read table inet \(table) back: \(error)")
                return
            }
            _ = state.expire(now: now())
            var kind: String? = nil
            var detail = ""
            if back == nil || listing == nil {
                kind = "table"
                detail = "the table is gone"
            } else if let reference = loaded.reference, listing != reference {
                kind = "structure"
                let d = TableDiff.compute(table: table, desiredStructure: reference, liveStructure: listing,
                                          desired: TableState(name: table), live: nil)
                detail = "\(d.structure.count) line(s) of chains, rules or sets differ"
            } else if let back, let applied = state.applied, !back.matches(applied) {
                kind = "element"
                detail = "managed set elements differ"
            }
            guard let kind else {
                logger.debug("audit: table inet \(table) is as committed")
                return
            }
            record(kind: kind, detail: detail, origin: "(found by the audit)")
            guard state.config.driftRepair else { return }
            if kind == "element" {
                state.setApplied(back)
            } else {
                needLoad = true
                lastLoadReason = "drift"
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
            case .routeChanged(let r):
                publish([("event", .string("route")), ("op", .string("update")), ("route", .string(r.key.description)),
                         ("via", r.gateway.map { .string("\($0)") } ?? .null)])
            case .routeRemoved(let k):
                publish([("event", .string("route")), ("op", .string("delete")), ("route", .string(k.description))])
            case .snapshot, .routes:
                break
            }
        }

        /// Plans at `now` (after dropping what expired) and commits; on failure schedules a retry. Element
        /// changes go out as one element transaction; anything that changes the table's shape (the table or a
        /// managed set missing or different) loads the whole table instead.
        mutating func commitIfNeeded() {
            let t = now()
            let expired = state.expire(now: t)
            if !expired.isEmpty {
                owner.count { $0.manualExpired += expired.count }
                manualDirty = true
                saveManualIfNeeded()
            }
            if needLoad {
                _ = loadTable()
                return
            }
            let plan = state.plan(now: t)
            if plan.createTable || plan.deleteTable != nil || !plan.createSets.isEmpty || !plan.deleteSets.isEmpty {
                if loaded != nil {
                    owner.count { $0.drift["set", default: 0] += 1 }
                    logger.warning("table inet \(state.config.table) lost managed sets or the table itself; reloading it")
                }
                needLoad = true
                if loaded != nil { lastLoadReason = "drift" }
                _ = loadTable()
                return
            }
            if plan.isEmpty {
                failures = 0
                revertTo = nil
                if let r = resyncStarted {
                    logger.notice("resync done, nothing to change", metadata: ["total_ms": "\(Reconciler.ms(ContinuousClock.now - r))"])
                    resyncStarted = nil
                }
                repaired()
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
                repaired()
                markConverged(total)
            } catch {
                failed(error, sets: plan.touchedSets)
            }
        }

        /// A drift repair (if one was pending) is complete: the kernel acknowledged it at `at`.
        mutating func repaired(at: ContinuousClock.Instant = .now) {
            guard let r = repairStarted else { return }
            repairStarted = nil
            owner.count { $0.repairs += 1 }
            let ms = Reconciler.ms(at - r)
            logger.notice("table inet \(state.config.table) repaired", metadata: ["took_ms": "\(ms)"])
            publish([("event", .string("repaired")), ("ms", .string(ms))])
        }

        /// Renders the whole table from config and the desired elements and loads it as one transaction
        /// (replacing what is there). Returns the error if the kernel refused it (then nothing changed).
        @discardableResult
        mutating func loadTable() -> (any Error)? {
            let t = now()
            let previous = loaded?.table
            let rendered = TableRenderer.render(
                config: state.config, desired: state.desired, now: t,
                replacing: previous != state.config.table ? previous : nil, source: owner.configPath)
            let started = ContinuousClock.now
            do {
                try owner.backend.load(rendered, dryRun: false)
            } catch {
                failed(error, sets: rendered.managed.sets.keys.sorted())
                return error
            }
            let acknowledged = ContinuousClock.now
            state.loadedWholeTable(rendered.managed)
            needLoad = false
            let loadedIn = acknowledged - started
            var reference: String? = nil
            let listStarted = ContinuousClock.now
            do {
                reference = try owner.backend.listStructure(table: rendered.table)
            } catch {
                logger.warning("cannot list table inet \(rendered.table) after loading it (the audit will compare elements only): \(error)")
            }
            loaded = Loaded(table: rendered.table, structure: rendered.structure, reference: reference)
            if previous != rendered.table { owner.onTable(rendered.table) }
            failures = 0
            revertTo = nil
            lastCommitWall = wall()
            for set in rendered.managed.sets.keys {
                setCommits[set, default: .init()].lastCommitWall = lastCommitWall
                setCommits[set, default: .init()].transactions += 1
            }
            let total = owner.shared.withLock { s -> Int in
                s.counters.transactionsOK += 1
                s.counters.tableLoads += 1
                return s.counters.transactionsOK
            }
            let elements = rendered.managed.elementCount
            logger.info(
                "table inet \(rendered.table) loaded",
                metadata: [
                    "reason": "\(lastLoadReason)", "templates": "\(state.config.rules.count)",
                    "sets": "\(rendered.managed.sets.count)", "elements": "\(elements)",
                    "bytes": "\(rendered.text.utf8.count)", "took_ms": "\(Reconciler.ms(loadedIn))",
                    "listed_ms": "\(Reconciler.ms(ContinuousClock.now - listStarted))",
                ])
            publish([("event", .string("load")), ("reason", .string(lastLoadReason)), ("elements", .int(elements)),
                     ("ms", .string(Reconciler.ms(loadedIn)))])
            // libnftables' parse of a large table leaves megabytes of freed heap behind; give it back.
            if rendered.text.utf8.count > 256 * 1024 { RNM_malloc_trim() }
            repaired(at: acknowledged)
            markConverged(total)
            return nil
        }

        /// A transaction failed (the kernel kept its previous state): record, back off, and if it was a
        /// reload's first commit, go back to the previous config.
        mutating func failed(_ error: any Error, sets: [String]) {
            failures += 1
            owner.count { $0.transactionsFailed += 1 }
            lastError = "\(error)"
            lastErrorWall = wall()
            for set in sets {
                setCommits[set, default: .init()].lastError = lastError
                setCommits[set, default: .init()].lastErrorWall = lastErrorWall
            }
            owner.setState(.degraded)
            logger.error("transaction failed, kernel state unchanged: \(error)", metadata: ["attempt": "\(failures)"])
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

        mutating func markConverged(_ transactions: Int) {
            let first = owner.shared.withLock { s -> Bool in
                defer {
                    s.converged = true
                    s.state = .ready
                }
                return !s.converged
            }
            if first {
                logger.notice("converged", metadata: ["transactions": "\(transactions)"])
                // Start-up (dumps, the first load) leaves freed buffers in malloc's arenas: give them back once.
                RNM_malloc_trim()
            }
            if !readySent {
                readySent = true
                owner.notifier?.send("READY=1\n" + SystemdNotifier.status(statusLine()))
            }
            owner.onConverged(transactions)
        }

        /// Reads our table back; retries with back-off until it works or the daemon stops. False: stopping.
        mutating func readBack() -> Bool {
            var attempt = 0
            while true {
                do {
                    state.setApplied(try owner.backend.readBack(table: state.config.table, sets: Set(state.setSpecs.keys)))
                    return true
                } catch {
                    attempt += 1
                    logger.error("cannot read table inet \(state.config.table) back: \(error)", metadata: ["attempt": "\(attempt)"])
                    if !owner.bus.pause(owner.retry.delay(after: attempt)) { return false }
                }
            }
        }

        /// Applies a new config if it is valid and different: parse, validate, render, dry run, then swap.
        /// A change of structure (templates, defines, zones, set shapes) loads the whole table at once; an
        /// element-only change goes out as an element transaction. Any failure keeps the running config and
        /// the kernel table as they were. Returns the new generation or the error.
        mutating func reload() -> Result<JSON, ControlError> {
            owner.notifier?.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicUsec())")
            defer { if readySent { owner.notifier?.send("READY=1\n" + SystemdNotifier.status(statusLine())) } }
            owner.setState(.reloading)
            defer { if owner.daemonState == .reloading { owner.setState(failures > 0 ? .degraded : .ready) } }
            func reject(_ message: String) -> Result<JSON, ControlError> {
                owner.count { $0.reloadsFailed += 1 }
                logger.error("reload failed, keeping the running config:\n\(message)")
                publish([("event", .string("reload")), ("ok", .bool(false)), ("error", .string(message))])
                return .failure(ControlError("reload_failed", message))
            }
            let new: Config
            do {
                new = try owner.loadConfig(owner.configPath)
            } catch {
                return reject(error.description)
            }
            guard new != state.config else {
                let generation = owner.shared.withLock { s -> Int in
                    s.counters.reloadsOK += 1
                    return s.generation
                }
                logger.info("reload: config unchanged", metadata: ["generation": "\(generation)"])
                syncPlugins()  // retries refused and failed plugins (a fixed file, say)
                netDirty = true  // and puts back network settings others changed without a notification
                sysctlCheck = true
                publish([("event", .string("reload")), ("ok", .bool(true)), ("generation", .int(generation)), ("changed", .bool(false))])
                return .success(.object([("generation", .int(generation)), ("changed", .bool(false))]))
            }
            var next = state
            let dropped = next.replaceConfig(new, now: now())
            let previousTable = loaded?.table ?? state.config.table
            let rendered = TableRenderer.render(
                config: new, desired: next.desired, now: now(),
                replacing: previousTable != new.table ? previousTable : nil, source: owner.configPath)
            let structural = needLoad || rendered.structure != loaded?.structure || rendered.table != loaded?.table
            var dryRunMs = "-"
            if structural {
                let started = ContinuousClock.now
                do {
                    try owner.backend.load(rendered, dryRun: true)
                } catch {
                    return reject("nft refused the new table (nothing was changed):\n\(error)")
                }
                dryRunMs = Reconciler.ms(ContinuousClock.now - started)
            }
            let old = state.config
            // Contributions the new config no longer allows (plugin removed, disabled, or a grant gone).
            for name in state.plugins.keys.sorted() {
                let n = state.pluginEntryCount(name) - next.pluginEntryCount(name)
                guard n > 0 else { continue }
                owner.count { $0.pluginWithdrawn += n }
                logger.info("plugin \(name): withdrew \(n) elements (no longer granted or enabled)")
            }
            state = next
            if structural {
                needLoad = true
                lastLoadReason = "reload"
                // Loaded now, so the caller learns whether the kernel took it.
                if haveSnapshot, retryAt == nil, let error = loadTable() {
                    state.replaceConfig(old, now: now())
                    needLoad = loaded == nil
                    failures = 0
                    retryAt = nil
                    owner.setState(.ready)
                    return reject("the kernel refused the new table (nothing was changed): \(error)")
                }
            } else {
                revertTo = old
            }
            let generation = owner.shared.withLock { s -> Int in
                s.counters.reloadsOK += 1
                s.generation += 1
                return s.generation
            }
            if new.control != old.control {
                logger.warning("reload: control socket settings changed; they take effect when rnmd restarts")
            }
            if new.stateDir != old.stateDir {
                logger.warning("reload: state_dir changed; it takes effect when rnmd restarts")
            }
            if new.auditIntervalMs != old.auditIntervalMs { scheduleAudit() }
            for (set, p) in dropped {
                logger.warning("reload: manual entry \(p.compactDescription) dropped: set \(set) is no longer declared or cannot hold it")
            }
            if !dropped.isEmpty { manualDirty = true }
            syncPlugins()
            netDirty = true
            sysctlCheck = true
            netFailures = [:]
            logger.notice("reload: new config", metadata: [
                "generation": "\(generation)", "zones": "\(new.zones.count)", "table_load": "\(structural)",
                "dry_run_ms": "\(dryRunMs)",
            ])
            publish([("event", .string("reload")), ("ok", .bool(true)), ("generation", .int(generation)), ("changed", .bool(true))])
            return .success(.object([("generation", .int(generation)), ("changed", .bool(true)), ("plugins", plugins.summary)]))
        }

        /// The config file on disk against the live kernel table: what a reload would change.
        mutating func plan() -> Result<JSON, ControlError> {
            let new: Config
            do {
                new = try owner.loadConfig(owner.configPath)
            } catch {
                return .failure(ControlError("invalid_config", error.description))
            }
            let t = now()
            var next = state
            if new != state.config { next.replaceConfig(new, now: t) }
            _ = next.expire(now: t)
            let desired = next.desired
            let previousTable = loaded?.table ?? state.config.table
            let deletes = previousTable != new.table ? previousTable : nil
            var shape = desired
            for k in shape.elements.keys { shape.elements[k] = [:] }
            let rendered = TableRenderer.render(config: new, desired: shape, now: t, replacing: deletes)
            let desiredStructure: String
            do {
                if let loaded, let reference = loaded.reference, loaded.structure == rendered.structure, loaded.table == new.table {
                    desiredStructure = reference
                } else {
                    desiredStructure = try owner.backend.canonicalStructure(rendered)
                }
            } catch {
                return .failure(ControlError("plan_failed", "cannot work out the new table's structure: \(error)"))
            }
            let live: TableState?
            let liveStructure: String?
            do {
                live = try owner.backend.readBack(table: new.table, sets: Set(desired.sets.keys))
                liveStructure = try owner.backend.listStructure(table: new.table)
            } catch {
                return .failure(ControlError("plan_failed", "cannot read table inet \(new.table): \(error)"))
            }
            let diff = TableDiff.compute(
                table: new.table, deletesTable: deletes, desiredStructure: desiredStructure, liveStructure: liveStructure,
                desired: desired, live: live)
            var json = diff.json
            // The network side: what applying this config would change in addresses, links, routes, sysctls.
            var current: [String: String] = [:]
            if let net = owner.network {
                for key in NetworkPlan.desiredSysctls(new, state.observed).keys { current[key] = net.readSysctl(key) }
            }
            let netOps = owner.network == nil ? [] : NetworkPlan.compute(
                config: new, observed: state.observed, routesKnown: routesKnown, sysctlsDone: current)
            if case .object(var pairs) = json {
                if !netOps.isEmpty, let i = pairs.firstIndex(where: { $0.0 == "in_sync" }) { pairs[i].1 = .bool(false) }
                pairs.append(("network", .array(netOps.map { .string($0.description) })))
                pairs.append(("config_changed", .bool(new != state.config)))
                pairs.append(("text", .string(diff.text + netOps.map { "network: \($0)\n" }.joined())))
                json = .object(pairs)
            }
            return .success(json)
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
                return .success(plugins.list { state.pluginCount($0, set: $1) })
            case .plan:
                return plan()
            case .debugStall(let ms):
                guard owner.testHooks else { return .failure(ControlError("unknown_command", "unknown command \"debug stall\"")) }
                logger.warning("test hook: the reconciler stalls for \(ms) ms")
                let until = ContinuousClock.now + .milliseconds(Int64(ms))
                while ContinuousClock.now < until {
                    var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
                    _ = nanosleep(&ts, nil)
                }
                return .success(.object([("stalled_ms", .int(Int(ms)))]))
            case .ping, .events:
                return .failure(ControlError("internal", "\(command.verb) is answered by the control server"))
            }
        }

        func info() -> ControlViews.DaemonInfo {
            let (counters, generation, daemonState) = owner.shared.withLock { ($0.counters, $0.generation, $0.state) }
            var info = ControlViews.DaemonInfo(
                version: owner.version, state: daemonState.rawValue, uptimeMs: (now() - owner.started) / 1_000_000,
                configPath: owner.configPath, generation: generation, lastCommitWall: lastCommitWall,
                lastError: lastError, lastErrorWall: lastErrorWall,
                counters: counters.list + (owner.hub?.counters ?? []), setCommits: setCommits, plugins: plugins.summary)
            info.network = networkView()
            return info
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
            metric("table_loads_total", "counter", "Whole-table loads (start, structural reloads, repairs).", [("", c["table_loads"] ?? 0)])
            let drift = owner.counters.drift
            metric("drift_total", "counter", "Changes to our table by others, by kind.",
                   ["table", "chain", "rule", "set", "element", "structure"].map { ("{kind=\"\($0)\"}", drift[$0] ?? 0) }
                    + drift.filter { !["table", "chain", "rule", "set", "element", "structure"].contains($0.key) }.sorted { $0.key < $1.key }
                        .map { ("{kind=\"\($0.key)\"}", $0.value) })
            metric("drift_repairs_total", "counter", "Drift repairs completed.", [("", c["drift_repairs"] ?? 0)])
            metric("audits_total", "counter", "Periodic or triggered read-backs of our table.", [("", c["audits"] ?? 0)])
            metric("nft_notifications_lost_total", "counter", "nftables notification overruns (ENOBUFS).",
                   [("", c["nft_notifications_lost"] ?? 0)])
            metric("set_elements", "gauge", "Elements in each managed set (as committed to the kernel).",
                   state.setSpecs.keys.sorted().map { ("{set=\"\($0)\"}", state.desiredCount(of: $0)) })
            let records = plugins.records
            if !records.isEmpty {
                // Plugin and set names are validated ([a-z0-9_-]): safe as label values.
                metric("plugin_up", "gauge", "1 for each configured plugin, its state as a label.",
                       records.map { ("{plugin=\"\($0.name)\",state=\"\($0.state.rawValue)\"}", 1) })
                metric("plugin_health", "gauge", "Reported health of running plugins: 0 ok, 1 degraded, 2 failed.",
                       records.filter { $0.state == .running }.map { ("{plugin=\"\($0.name)\"}", Int($0.health)) })
                metric("plugin_calls_total", "counter", "Plugin set calls by result (accepted, busy, or why refused).",
                       records.flatMap { r in
                           [("{plugin=\"\(r.name)\",result=\"accepted\"}", r.stats.accepted),
                            ("{plugin=\"\(r.name)\",result=\"busy\"}", r.stats.busy)]
                               + PluginRejection.allCases.map { ("{plugin=\"\(r.name)\",result=\"\($0.rawValue)\"}", r.stats.rejected[$0] ?? 0) }
                       })
                metric("plugin_elements", "gauge", "Entries each plugin contributes to each granted set.",
                       records.flatMap { r in r.sets.map { ("{plugin=\"\(r.name)\",set=\"\($0)\"}", state.pluginCount(r.name, set: $0)) } })
            }
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
