internal import Glibc
package import Logging
package import RNMCore
internal import RNMPluginABI

/// What a plugin may touch in one granted set, checked on the plugin's own thread before anything is queued.
package struct PluginGrant: Equatable, Sendable {
    package var family: IPFamily
    package var interval: Bool
    package var timeout: Bool

    package init(_ set: DeclaredSet) {
        family = set.family
        interval = set.interval
        timeout = set.timeoutFlag
    }
}

/// One accepted host call, waiting for the reconciler.
package enum PluginCall: Sendable {
    case apply(set: String, [PluginChange])
    case replace(set: String, [IPPrefix], timeoutMs: UInt64)
}

/// Why a host call was refused: the counter it goes to and the code the plugin gets.
package enum PluginRejection: String, CaseIterable, Sendable {
    case invalid, notGranted = "not_granted", family, unsupported, tooBig = "too_big", shutdown

    var status: rnm_status {
        switch self {
        case .invalid: RNM_EINVAL
        case .notGranted: RNM_ENOENT
        case .family: RNM_EAFNOSUPPORT
        case .unsupported: RNM_ENOTSUP
        case .tooBig: RNM_E2BIG
        case .shutdown: RNM_ESHUTDOWN
        }
    }
}

/// Counters and health of one instance, as `plugins list` shows them.
package struct PluginStats: Sendable {
    package var accepted = 0
    package var busy = 0
    package var rejected: [PluginRejection: Int] = [:]
    package var lastError: String? = nil
    package var lastErrorWall: UInt64? = nil
    package var health: Int32 = RNM_HEALTH_OK
    package var healthMessage: String? = nil
    package var logsSuppressed = 0
}

/// The host side of one plugin instance: what the plugin's `rnm_host *` points to. Host calls arrive on any
/// plugin thread; they are checked, copied and queued here, and the reconciler drains the queue. The queue
/// is bounded (`capacity` changes): a full queue answers RNM_EAGAIN and takes nothing, so a flood costs the
/// plugin retries, never the daemon memory.
///
/// The object is retained for the life of the process once handed to a plugin (see `PluginHost`): a plugin
/// that calls after stop() (against the contract) gets RNM_ESHUTDOWN, not a dangling pointer.
package final class PluginContext: @unchecked Sendable {
    // @unchecked Sendable: every stored var is read and written only with `mutex` held; the lets are
    // immutable values or Sendable.
    package let name: String
    package let capacity: Int
    private let logger: Logger
    private let clocks: Clocks
    private let wake: @Sendable () -> Void

    private var mutex = pthread_mutex_t()
    private var writable = pthread_cond_t()
    private var grants: [String: PluginGrant]
    private var queue: [PluginCall] = []
    private var queued = 0
    private var wakePending = false
    /// How many times the reconciler drained the queue (wait_writable waits for the next drain).
    private var drains = 0
    private var shutDown = false
    private var stats = PluginStats()
    // Log and rejection-report rate limit: a token bucket per instance (20 lines/s, bursts of 100).
    private var tokens = 100.0
    private var refilled: UInt64 = 0

    package init(
        name: String, grants: [String: PluginGrant], capacity: Int = 65_536, logger: Logger, clocks: Clocks,
        wake: @escaping @Sendable () -> Void
    ) {
        self.name = name
        self.grants = grants
        self.capacity = capacity
        self.logger = logger
        self.clocks = clocks
        self.wake = wake
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&writable, &attr)
        pthread_condattr_destroy(&attr)
        refilled = clocks.monotonic()
    }

    deinit {
        pthread_cond_destroy(&writable)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    // MARK: Plugin threads

    func grant(_ set: String) -> PluginGrant? { locked { grants[set] } }

    var grantedNames: [String] { locked { grants.keys.sorted() } }

    var isShutDown: Bool { locked { shutDown } }

    /// Queues a checked call of `weight` changes: RNM_OK, RNM_EAGAIN (queue full, nothing taken) or
    /// RNM_ESHUTDOWN. A call larger than the whole queue is taken when the queue is empty.
    func submit(_ call: PluginCall, weight: Int) -> rnm_status {
        var notify = false
        let status: rnm_status = locked {
            if shutDown {
                stats.rejected[.shutdown, default: 0] += 1
                return RNM_ESHUTDOWN
            }
            if queued > 0, queued + weight > capacity {
                stats.busy += 1
                return RNM_EAGAIN
            }
            queue.append(call)
            queued += weight
            stats.accepted += 1
            if !wakePending {
                wakePending = true
                notify = true
            }
            return RNM_OK
        }
        if notify { wake() }
        return status
    }

    /// Counts a refused call and reports it (rate-limited); returns the code for the plugin.
    func reject(_ why: PluginRejection, _ message: String) -> rnm_status {
        let report: Bool = locked {
            stats.rejected[why, default: 0] += 1
            // Calls racing a stop are expected: counted, not an error worth showing.
            if why == .shutdown { return false }
            stats.lastError = message
            stats.lastErrorWall = clocks.wall()
            return takeToken()
        }
        if report { logger.warning("plugin \(name): call refused (\(why.rawValue)): \(message)") }
        return why.status
    }

    /// Blocks until the reconciler has drained the queue (so any call fits again: a call larger than the
    /// queue is taken when it is empty), `timeoutMs` passes, or the instance shuts down. Returns at once if
    /// the queue is empty.
    func waitWritable(timeoutMs: UInt32) -> rnm_status {
        locked {
            let seen = drains
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            deadline.tv_sec += Int(timeoutMs / 1000)
            deadline.tv_nsec += Int(timeoutMs % 1000) * 1_000_000
            if deadline.tv_nsec >= 1_000_000_000 {
                deadline.tv_sec += 1
                deadline.tv_nsec -= 1_000_000_000
            }
            while !shutDown, queued > 0, drains == seen {
                if pthread_cond_timedwait(&writable, &mutex, &deadline) == ETIMEDOUT { break }
            }
            if shutDown { return RNM_ESHUTDOWN }
            return queued > 0 && drains == seen ? RNM_ETIMEDOUT : RNM_OK
        }
    }

    func setHealth(_ state: Int32, _ message: String?) {
        let changed: (old: Int32, report: Bool)? = locked {
            guard stats.health != state || stats.healthMessage != message else { return nil }
            let old = stats.health
            stats.health = state
            stats.healthMessage = message
            return (old, takeToken())
        }
        guard let changed, changed.report else { return }
        let text = "plugin \(name): health \(Self.healthName(state))" + (message.map { ": \(LogText.oneLine($0))" } ?? "")
        if state == RNM_HEALTH_OK {
            logger.info("\(text)")
        } else {
            logger.warning("\(text)", metadata: ["was": "\(Self.healthName(changed.old))"])
        }
    }

    func log(level: Int32, _ message: String) {
        let (ok, suppressed): (Bool, Int) = locked {
            if takeToken() {
                let n = stats.logsSuppressed
                stats.logsSuppressed = 0
                return (true, n)
            }
            stats.logsSuppressed += 1
            return (false, 0)
        }
        guard ok else { return }
        let lvl: Logger.Level =
            switch level {
            case ...2: .critical
            case 3: .error
            case 4: .warning
            case 5: .notice
            case 6: .info
            case 7...: .debug
            default: .info
            }
        if suppressed > 0 { logger.warning("plugin \(name): \(suppressed) log lines suppressed (more than 20 a second)") }
        logger.log(level: lvl, "plugin \(name): \(LogText.oneLine(message))")
    }

    /// With `mutex` held.
    private func takeToken() -> Bool {
        let now = clocks.monotonic()
        tokens = min(100, tokens + Double(now &- refilled) / 1e9 * 20)
        refilled = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    static func healthName(_ state: Int32) -> String {
        switch state {
        case RNM_HEALTH_OK: "ok"
        case RNM_HEALTH_DEGRADED: "degraded"
        default: "failed"
        }
    }

    // MARK: Host side

    /// Everything queued, oldest first; wakes writers waiting for room.
    package func drain() -> [PluginCall] {
        locked {
            wakePending = false
            guard !queue.isEmpty else { return [] }
            let out = queue
            queue = []
            queued = 0
            drains &+= 1
            pthread_cond_broadcast(&writable)
            return out
        }
    }

    /// From now on every host call answers RNM_ESHUTDOWN, waiters wake, and what is queued is dropped.
    package func shutdown() {
        locked {
            shutDown = true
            queue = []
            queued = 0
            pthread_cond_broadcast(&writable)
        }
    }

    package func updateGrants(_ g: [String: PluginGrant]) { locked { grants = g } }

    package var snapshot: PluginStats { locked { stats } }

    /// A lifecycle failure, recorded like a refused call's message.
    package func recordError(_ message: String) {
        locked {
            stats.lastError = message
            stats.lastErrorWall = clocks.wall()
        }
    }
}

/// Text from outside (plugin messages) on one log line: control characters escaped, length capped.
enum LogText {
    static func oneLine(_ s: String, max: Int = 1024) -> String { YAMLNode.escaped(s, limit: max) }
}
