internal import CRNMVersion
internal import Glibc
public import Logging
package import RNMCore
package import RNMFirewall
import RNMNetlink
import RNMYAML
import Synchronization

/// What `rnmd` was asked to do.
public struct DaemonOptions: Equatable, Sendable {
    public var configPath: String
    public var logLevel: Logger.Level
    /// Netlink receive buffer (SO_RCVBUFFORCE).
    public var netlinkBuffer: Int
    /// nftables notification receive buffer (SO_RCVBUFFORCE).
    public var nftBuffer: Int

    public init(configPath: String, logLevel: Logger.Level = .info, netlinkBuffer: Int = 4 << 20, nftBuffer: Int = 8 << 20) {
        self.configPath = configPath
        self.logLevel = logLevel
        self.netlinkBuffer = netlinkBuffer
        self.nftBuffer = nftBuffer
    }
}

/// Wiring: config, netlink thread, bus, reconciler, signals. The executable only parses arguments.
public enum Daemon {
    public static var version: String { String(cString: rnm_version()) }

    /// `rnmd --check`: validates the config and its templates. As root, the kernel also checks the rendered
    /// table (libnftables dry run: the transaction is aborted, nothing changes). Prints a summary (stdout) or
    /// every problem (stderr). Returns the exit code: 0 valid, 1 invalid.
    public static func check(configPath: String) -> Int32 {
        let config: Config
        do {
            config = try ConfigLoader.load(path: configPath)
        } catch {
            for issue in error.issues { writeStderr("\(issue)\n") }
            return 1
        }
        let desired = Desired.compute(config: config, observed: ObservedState())
        let rendered = TableRenderer.render(config: config, desired: desired, now: 0, source: configPath)
        var dryRun = "skipped (needs root)"
        if geteuid() == 0 {
            do {
                try NftScript.load(rendered, dryRun: true)
                dryRun = "the kernel accepts the table"
            } catch {
                writeStderr("\(configPath): the rendered table is refused by nft:\n\(error)\n")
                return 1
            }
        }
        print("\(configPath): OK")
        print("table inet \(config.table): \(config.zones.count) zone(s), \(config.interfaces.count) interface(s), "
            + "\(config.rules.count) rule template(s)")
        for name in desired.sets.keys.sorted() {
            let spec = desired.sets[name]!
            print("  set \(name) (\(spec.type))")
        }
        for t in config.rules { print("  rules \(t.path)") }
        for p in config.plugins {
            let sets = p.sets.isEmpty ? "no sets" : "sets \(p.sets.joined(separator: ", "))"
            print("  plugin \(p.name) (\(p.enabled ? sets : "disabled")): \(p.path)")
            // The file checks only: loading would run the plugin's code.
            if p.enabled, case .failure(let e) = PluginHost.checkFile(p.path) {
                writeStderr("warning: plugin \(p.name) would be refused: \(e.message)\n")
            }
        }
        print("nft dry run: \(dryRun)")
        return 0
    }

    /// `rnmd --render`: the exact text rnmd would load now, with the managed sets holding what the live
    /// addresses and the saved manual entries put in them. Reads only. Returns the exit code.
    public static func render(configPath: String) -> Int32 {
        let config: Config
        do {
            config = try ConfigLoader.load(path: configPath)
        } catch {
            for issue in error.issues { writeStderr("\(issue)\n") }
            return 1
        }
        var state = ReconcileState(config: config)
        let now = Clocks.system.monotonic()
        do {
            let snap = try RouteMonitor().snapshot()
            state.apply(.snapshot(links: snap.links, addresses: snap.addresses))
        } catch {
            writeStderr("rnmd: cannot read addresses (rendering without them): \(error)\n")
        }
        do {
            if let bytes = try FileStore(directory: config.stateDir).load() {
                let decoded = try ManualStore.decode(bytes, monoNow: now, wallNow: Clocks.system.wall())
                for (set, entries) in decoded.entries {
                    for (p, d) in entries {
                        let remaining: UInt64? = d == .never ? nil : max((d &- now) / 1_000_000, 1)
                        try? state.addManual(set: set, [p], timeoutMs: remaining, now: now)
                    }
                }
            }
        } catch {
            writeStderr("rnmd: cannot read manual entries (rendering without them): \(error)\n")
        }
        let rendered = TableRenderer.render(config: config, desired: state.desired, now: now, source: configPath)
        writeAll(1, rendered.text)
        return 0
    }

    /// Runs in the foreground until SIGTERM/SIGINT. Returns the exit code.
    ///
    /// Threads: this one waits for signals (sigwaitinfo), `rnm-netlink` reads rtnetlink, `rnmd-reconcile`
    /// owns the state and commits. No Dispatch and no Swift concurrency: libdispatch's worker pool keeps a
    /// 1 Hz monitor timer once used, and an idle rnmd is meant to have no wakeups at all.
    public static func run(_ options: DaemonOptions) -> Int32 {
        // The signals we act on are blocked in every thread (threads inherit the mask, so this comes before
        // any is created) and taken synchronously below. SIGUSR2 is internal: "the reconciler stopped".
        var handled = sigset_t()
        sigemptyset(&handled)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGUSR2] { sigaddset(&handled, sig) }
        pthread_sigmask(SIG_BLOCK, &handled, nil)
        signal(SIGPIPE, SIG_IGN)

        let level = options.logLevel
        LoggingSystem.bootstrap { StderrLogHandler(label: $0, level: level) }
        let logger = Logger(label: "rnmd")

        let config: Config
        do {
            config = try ConfigLoader.load(path: options.configPath)
        } catch {
            logger.critical("invalid config, not starting:\n\(error.description)")
            return 1
        }
        let backend: NftablesBackend
        let monitor: RouteMonitor
        let watcher: NftablesWatcher
        let network: NetlinkConfigurator
        do {
            backend = try NftablesBackend()
            monitor = try RouteMonitor(receiveBufferSize: options.netlinkBuffer)
            watcher = try NftablesWatcher(table: config.table, receiveBuffer: options.nftBuffer)
            network = try NetlinkConfigurator()
        } catch {
            logger.critical("cannot open netlink sockets: \(error)")
            return 1
        }
        logger.notice(
            "rnmd \(version) starting",
            metadata: [
                "config": "\(options.configPath)", "table": "inet \(config.table)",
                "zones": "\(config.zones.joined(separator: ","))", "interfaces": "\(config.interfaces.count)",
            ])

        let mainThread = pthread_self()
        // The service manager, if any ($NOTIFY_SOCKET): READY once converged, RELOADING/READY around reloads,
        // STOPPING, and WATCHDOG pings from the reconciler's loop.
        let notifier = SystemdNotifier()
        let testHooks = getenv("RNMD_TEST_HOOKS").map { String(cString: $0) == "1" } ?? false
        if testHooks { logger.warning("test hooks are enabled (RNMD_TEST_HOOKS=1)") }
        let runtime: DaemonRuntime
        do {
            runtime = try DaemonRuntime(
                config: config, configPath: options.configPath, monitor: monitor, backend: backend, watcher: watcher,
                logger: logger, clocks: .system, store: FileStore(directory: config.stateDir), control: config.control,
                version: version, loadConfig: { path throws(ConfigError) in try ConfigLoader.load(path: path) },
                onFinish: { _ = pthread_kill(mainThread, SIGUSR2) }, network: network, notifier: notifier,
                testHooks: testHooks)
        } catch {
            logger.critical("not starting: \(error)")
            return 1
        }
        runtime.start()

        waiting: while true {
            var info = siginfo_t()
            let sig = sigwaitinfo(&handled, &info)
            switch sig {
            case SIGHUP:
                // Told at once, so the service manager waits for the READY=1 that ends the reload.
                notifier.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicUsec())")
                runtime.reload()
            case SIGTERM, SIGINT:
                notifier.send("STOPPING=1")
                logger.info("stopping on \(sig == SIGTERM ? "SIGTERM" : "SIGINT")")
                runtime.shutdown()
                break waiting
            case SIGUSR2:
                if runtime.isFinished { break waiting }
            default:
                continue  // EINTR
            }
        }
        guard let result = runtime.wait(timeout: .seconds(2)) else {
            logger.error("the reconciler did not stop within 2 s; exiting anyway (the table stays as last committed)")
            return 1
        }
        logger.notice(
            "stopped; table inet \(config.table) left as last committed",
            metadata: ["transactions": "\(result.counters.transactionsOK)", "overruns": "\(result.counters.overruns)"])
        return result.code
    }
}

/// The daemon proper on whatever monitor and backend it is given: the monitor's thread feeds the bus, the
/// reconciler's thread drains it, the control server's thread serves the socket. `Daemon.run` drives it from
/// signals; tests drive it directly.
package final class DaemonRuntime: Sendable {
    package let bus = EventBus<DaemonEvent>()
    package let hub = EventHub()
    private let monitor: any AddressMonitor
    private let watcher: NftablesWatcher?
    private let reconciler: Reconciler
    private let server: ControlServer?
    private let logger: Logger
    private let onFinish: @Sendable () -> Void
    private let result = Mutex<Int32?>(nil)
    private let finished = Completion()

    /// Sets up everything that can fail before any thread starts (the control socket in particular).
    package init(
        config: Config, configPath: String, monitor: any AddressMonitor, backend: any FirewallBackend,
        watcher: NftablesWatcher? = nil, logger: Logger, retry: RetryPolicy = RetryPolicy(), clocks: Clocks, store: (any ManualEntryStore)? = nil,
        control: ControlConfig? = nil, controlLimits: ControlLimits = ControlLimits(), version: String = "dev",
        loadConfig: @escaping @Sendable (String) throws(ConfigError) -> Config,
        onConverged: @escaping @Sendable (Int) -> Void = { _ in },
        onFinish: @escaping @Sendable () -> Void = {},
        network: (any NetworkBackend)? = nil,
        notifier: SystemdNotifier? = nil,
        testHooks: Bool = false
    ) throws {
        self.monitor = monitor
        self.watcher = watcher
        self.logger = logger
        self.onFinish = onFinish
        reconciler = Reconciler(
            config: config, configPath: configPath, bus: bus, backend: backend, logger: logger, retry: retry,
            clocks: clocks, store: store, hub: hub, version: version, loadConfig: loadConfig, onConverged: onConverged,
            onTable: { watcher?.setTable($0) }, network: network, notifier: notifier, testHooks: testHooks)
        if let control {
            let server = try ControlServer(
                config: control, bus: bus, hub: hub, logger: logger, limits: controlLimits, version: version, clocks: clocks)
            try server.open()
            self.server = server
        } else {
            server = nil
        }
    }

    /// Starts the monitor, reconciler and control threads.
    package func start() {
        let bus = bus
        let monitor = monitor
        Threads.detach(name: "rnm-netlink") {
            do {
                try monitor.run { output in
                    switch output {
                    case .events(let events):
                        bus.send(.net(events), weight: events.count)
                    case .snapshot(let links, let addresses, let overrun, let since):
                        bus.send(.snapshot(links: links, addresses: addresses, overrun: overrun, since: since), weight: 1)
                    }
                }
            } catch {
                bus.send(.monitorFailed("\(error)"), weight: 0)
            }
        }
        if let watcher {
            // Subscribed before the first load, so no foreign change after it goes unseen.
            let subscribed = Completion()
            let reconciler = reconciler
            let logger = logger
            Threads.detach(name: "rnmd-nftwatch") {
                do {
                    try watcher.run(isOwn: { reconciler.isOwn($0) }, ready: { subscribed.signal() }) { change in
                        bus.send(.tableChanged(change), weight: 1)
                    }
                } catch {
                    logger.error("cannot watch nftables notifications (drift is found by the audit only): \(error)")
                    subscribed.signal()
                }
            }
            _ = subscribed.wait(timeout: .seconds(2))
        }
        Threads.detach(name: "rnmd-reconcile", stackSize: 4 << 20) { [self] in
            var code: Int32 = 0
            do {
                try reconciler.run()
            } catch {
                logger.critical("stopping: \(error)")
                code = 1
            }
            monitor.stop()
            watcher?.stop()
            server?.stop()
            bus.close()
            result.withLock { $0 = code }
            finished.signal()
            onFinish()
        }
        server?.start()
    }

    /// Re-read the config (SIGHUP).
    package func reload() { bus.send(.reload, weight: 0) }

    /// Graceful stop: the reconciler finishes the commit in flight and returns; the table stays.
    package func shutdown() {
        bus.close()
        monitor.stop()
        watcher?.stop()
        server?.stop()
    }

    package var isFinished: Bool { result.withLock { $0 != nil } }
    package var counters: Counters { reconciler.counters }
    package var configGeneration: Int { reconciler.configGeneration }

    /// Waits for the reconciler to stop; nil if it did not within `timeout`.
    package func wait(timeout: Duration) -> (code: Int32, counters: Counters)? {
        guard finished.wait(timeout: timeout), let code = result.withLock({ $0 }) else { return nil }
        // The control thread removes the socket as it stops; let it finish (it never blocks for long).
        _ = server?.finished.wait(timeout: timeout)
        return (code, reconciler.counters)
    }
}

extension Clocks {
    /// CLOCK_MONOTONIC and CLOCK_REALTIME.
    package static let system = Clocks(
        monotonic: {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        },
        wall: {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        })
}

/// A one-shot event a thread can wait for with a timeout.
package final class Completion: Sendable {
    private let bus = EventBus<Bool>(capacity: 1)

    package init() {}

    package func signal() { bus.close() }

    /// True once `signal()` was called; false if `timeout` passed first.
    package func wait(timeout: Duration) -> Bool { !bus.pause(timeout) }
}

/// Writes to fd 2 directly (the C `stderr` global is not concurrency-safe to touch from Swift 6).
func writeStderr(_ text: String) { writeAll(2, text) }

/// Writes all of `text` to `fd`, retrying short writes and EINTR; gives up silently on other errors.
func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        off += n
    }
    bytes.removeAll()
}
