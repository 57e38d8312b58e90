internal import CRNMVersion
internal import Glibc
public import Logging
package import RNMCore
import RNMFirewall
import RNMNetlink
import RNMYAML
import ServiceLifecycle
package import UnixSignals

/// What `rnmd` was asked to do.
public struct DaemonOptions: Equatable, Sendable {
    public var configPath: String
    public var logLevel: Logger.Level
    /// Netlink receive buffer (SO_RCVBUFFORCE).
    public var netlinkBuffer: Int

    public init(configPath: String, logLevel: Logger.Level = .info, netlinkBuffer: Int = 4 << 20) {
        self.configPath = configPath
        self.logLevel = logLevel
        self.netlinkBuffer = netlinkBuffer
    }
}

/// Wiring: config, netlink thread, bus, reconciler, signals. The executable only parses arguments.
public enum Daemon {
    public static var version: String { String(cString: rnm_version()) }

    /// `rnmd --check`: validates without touching the kernel. Prints a summary (stdout) or every problem
    /// (stderr). Returns the exit code: 0 valid, 1 invalid.
    public static func check(configPath: String) -> Int32 {
        do {
            let config = try ConfigLoader.load(path: configPath)
            let desired = Desired.compute(config: config, observed: ObservedState())
            print("\(configPath): OK")
            print("table inet \(config.table): \(config.zones.count) zone(s), \(config.interfaces.count) interface(s)")
            for name in desired.sets.keys.sorted() {
                let spec = desired.sets[name]!
                print("  set \(name) (\(spec.type))")
            }
            return 0
        } catch {
            for issue in error.issues { writeStderr("\(issue)\n") }
            return 1
        }
    }

    /// Runs in the foreground until SIGTERM/SIGINT. Returns the exit code.
    public static func run(_ options: DaemonOptions) async -> Int32 {
        // Until the signal services are up, a stray SIGHUP must not kill us; SIGPIPE never should.
        signal(SIGHUP, SIG_IGN)
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
        do {
            backend = try NftablesBackend()
            monitor = try RouteMonitor(receiveBufferSize: options.netlinkBuffer)
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

        let result = await serve(
            config: config, configPath: options.configPath, monitor: monitor, backend: backend, logger: logger,
            loadConfig: { path throws(ConfigError) in try ConfigLoader.load(path: path) },
            executor: ThreadExecutor(name: "rnmd-reconcile"))
        logger.notice(
            "stopped; table inet \(config.table) left as last committed",
            metadata: ["transactions": "\(result.counters.transactionsOK)", "overruns": "\(result.counters.overruns)"])
        return result.code
    }

    /// The daemon proper, on whatever monitor and backend it is given: monitor thread → bus → reconciler,
    /// plus SIGHUP reloads, until a shutdown signal (or cancellation). Returns the exit code and the counters.
    package static func serve(
        config: Config, configPath: String, monitor: any AddressMonitor, backend: any FirewallBackend,
        logger: Logger, loadConfig: @escaping @Sendable (String) throws(ConfigError) -> Config,
        executor: ThreadExecutor? = nil, shutdownSignals: [UnixSignal] = [.sigterm, .sigint],
        onConverged: @escaping @Sendable (Int) -> Void = { _ in }
    ) async -> (code: Int32, counters: Counters) {
        let bus = EventBus<DaemonEvent>()
        startMonitor(monitor, bus: bus)
        let reconciler = Reconciler(
            config: config, configPath: configPath, bus: bus, backend: backend, logger: logger,
            loadConfig: loadConfig, onConverged: onConverged, executor: executor)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [reconciler, ReloadOnSignal(bus: bus)],
                gracefulShutdownSignals: shutdownSignals,
                logger: logger))
        var code: Int32 = 0
        do {
            try await group.run()
        } catch is CancellationError {
        } catch {
            logger.critical("stopping on error: \(error)")
            code = 1
        }
        monitor.stop()
        bus.close()
        return (code, reconciler.counters)
    }

    /// The monitor on its own thread, feeding the bus (blocking when it is full).
    private static func startMonitor(_ monitor: any AddressMonitor, bus: EventBus<DaemonEvent>) {
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
    }
}

/// SIGHUP → reload.
struct ReloadOnSignal: Service {
    let bus: EventBus<DaemonEvent>

    func run() async {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            bus.send(.reload, weight: 0)
        }
    }
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
