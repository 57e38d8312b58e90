internal import Glibc
package import Logging
package import RNMCore
internal import RNMPluginABI
import RNMPluginKit
import Synchronization

/// Loads plugins, drives their lifecycle and keeps the record `plugins list` shows. Owned by the reconciler
/// thread: every method is called from it, and none of them waits for a plugin. Lifecycle calls run as jobs
/// on one thread per instance (the plugin's "host thread"); their results come back as bus events
/// (`DaemonEvent.pluginJob`), and a call that overruns the watchdog leaves the instance abandoned ("hung")
/// while the daemon goes on. Plugins are never unloaded (RTLD_NODELETE, no dlclose): a new build needs a
/// restart.
///
/// Level-triggered: each slot holds what the config wants (`want`) and what its instance runs (`have`);
/// `step` starts the next job toward `want` whenever the slot is idle.
package final class PluginHost {
    /// The toolchain this rnmd was built with, as Swift plugins state theirs in build_info.
    package static let swiftBuild: String? = PluginKit.swiftToolchain

    package static let abiHost = PluginABI.Host(
        major: UInt32(RNM_ABI_MAJOR), minor: UInt32(RNM_ABI_MINOR),
        minimumDescriptorSize: UInt32(MemoryLayout<rnm_plugin_descriptor>.size), swiftBuild: swiftBuild)

    package enum State: String, Sendable {
        case starting, running, reconfiguring, stopping, disabled, refused, failed, hung

        var busy: Bool { self == .starting || self == .reconfiguring || self == .stopping }
    }

    /// What the reconciler does to the contributions after a host step, in order.
    package enum Effect: Equatable, Sendable {
        /// Withdraw everything the plugin contributes (and what its previous instance still held).
        case withdraw(String)
        /// The instance is restarting: keep its contributions as the previous instance's until the new one
        /// runs (so a restart that re-contributes the same elements changes nothing in the kernel).
        case retire(String)
        /// The new instance runs (or never will): the previous instance's contributions go.
        case dropRetired(String)
        /// Take what running instances queued.
        case drain
    }

    /// A finished lifecycle job, as the plugin's host thread reports it.
    package struct JobResult: Sendable {
        let name: String
        let seq: Int
        let outcome: Outcome
    }

    enum Outcome: Sendable {
        case started(Unsafe<(UnsafePointer<rnm_plugin_descriptor>, OpaquePointer)>, Info)
        case refused(String)
        /// `created`: create() succeeded (start() failed).
        case failed(String, created: Bool)
        case stopped
        case reconfigured(rnm_status, String)
    }

    struct Info: Sendable {
        var name: String
        var version: String?
        var buildInfo: String?
        var abi: String
    }

    /// One `plugins:` entry and what became of it.
    final class Slot {
        let name: String
        /// What the config asks for; nil: removed from the config.
        var want: PluginConfig?
        var wantGrants: [String: PluginGrant] = [:]
        /// What the current (or last) instance was started with.
        var have: PluginConfig?
        var haveGrants: [String: PluginGrant] = [:]
        var state: State = .disabled
        var sinceWall: UInt64
        var starts = 0
        var loadError: String? = nil
        var retry = false
        var seq = 0
        var descriptor: Unsafe<UnsafePointer<rnm_plugin_descriptor>>? = nil
        var instance: Unsafe<OpaquePointer>? = nil
        var info: Info? = nil
        var context: PluginContext? = nil
        var thread: LifecycleThread? = nil
        /// The config a running reconfigure job hands over.
        var reconfiguring: PluginConfig? = nil
        /// When the current instance started running.
        var runningSince: ContinuousClock.Instant? = nil

        init(name: String, wall: UInt64) {
            self.name = name
            sinceWall = wall
        }

        /// For display: what the config asks for, else what ran.
        var shown: PluginConfig? { want ?? have }
    }

    private var slots: [String: Slot] = [:]
    private var order: [String] = []
    private let logger: Logger
    private let clocks: Clocks
    private let wake: @Sendable () -> Void
    private let report: @Sendable (JobResult) -> Void
    private let watchdog: Duration
    private let queueCapacity: Int

    /// - Parameters:
    ///   - wake: a plugin queued calls (send `.plugins`).
    ///   - report: a lifecycle job finished (send `.pluginJob`). Called on the plugin's host thread.
    package init(
        logger: Logger, clocks: Clocks, watchdog: Duration = .seconds(5), queueCapacity: Int = 65_536,
        wake: @escaping @Sendable () -> Void, report: @escaping @Sendable (JobResult) -> Void
    ) {
        self.logger = logger
        self.clocks = clocks
        self.wake = wake
        self.report = report
        self.watchdog = watchdog
        self.queueCapacity = queueCapacity
    }

    package var isEmpty: Bool { slots.isEmpty }

    // MARK: Driving

    /// The config changed (or was re-read): every slot gets its new `want`; with `retry`, refused and failed
    /// plugins are tried again.
    package func sync(_ config: Config, retry: Bool = true) -> [Effect] {
        let wanted = Dictionary(config.plugins.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for entry in config.plugins where slots[entry.name] == nil {
            slots[entry.name] = Slot(name: entry.name, wall: clocks.wall())
        }
        for (name, slot) in slots {
            slot.want = wanted[name]
            slot.wantGrants = Dictionary(
                (slot.want?.sets ?? []).compactMap { s in config.declaredSet(named: s).map { (s, PluginGrant($0)) } },
                uniquingKeysWith: { a, _ in a })
            if retry { slot.retry = true }
        }
        order = config.plugins.map(\.name) + order.filter { wanted[$0] == nil && slots[$0] != nil }
        var effects: [Effect] = []
        for name in order {
            guard let slot = slots[name] else { continue }
            // Going away while a job runs: its calls end now and what it contributed goes with this reload;
            // the stop follows when the job is done.
            if slot.state.busy, slot.want?.enabled != true, slot.context?.isShutDown == false {
                slot.context?.shutdown()
                effects.append(.withdraw(name))
            }
            effects += step(slot)
        }
        return effects
    }

    /// Whether every plugin got the chance to contribute: none is starting, and each running one has made a
    /// call or has been running for `grace`. rnmd holds its first commit until then (bounded by the caller),
    /// so a restart of rnmd does not briefly drop what plugins contributed before it.
    package func settled(grace: Duration = .milliseconds(500)) -> Bool {
        let now = ContinuousClock.now
        for slot in slots.values {
            if slot.state == .starting { return false }
            guard slot.state == .running, let ctx = slot.context, let since = slot.runningSince else { continue }
            let s = ctx.snapshot
            if s.accepted + s.busy + s.rejected.values.reduce(0, +) == 0, now - since < grace { return false }
        }
        return true
    }

    /// A lifecycle job finished.
    package func handle(_ result: JobResult) -> [Effect] {
        guard let slot = slots[result.name], slot.seq == result.seq, slot.state.busy else { return [] }  // abandoned meanwhile
        let name = slot.name
        switch result.outcome {
        case .started(let pointers, let info):
            slot.starts += 1
            slot.descriptor = Unsafe(pointers.value.0)
            slot.instance = Unsafe(pointers.value.1)
            slot.info = info
            slot.loadError = nil
            slot.runningSince = .now
            set(slot, .running)
            if slot.context?.isShutDown == true {
                // Cut off while it started (its entry went away meanwhile): stop it; if the entry is back,
                // the next step starts a fresh instance.
                beginStop(slot)
                return [.withdraw(name)]
            }
            logger.notice(
                "plugin \(name): running",
                metadata: [
                    "plugin": "\(LogText.oneLine(info.name, max: 64))", "version": "\(LogText.oneLine(info.version ?? "-", max: 32))",
                    "abi": "\(info.abi)", "sets": "\((slot.have?.sets ?? []).joined(separator: ","))",
                    "path": "\(slot.have?.path ?? "")",
                ])
            return [.drain, .dropRetired(name)] + step(slot)
        case .refused(let message):
            slot.context?.shutdown()
            fail(slot, .refused, message)
            return [.withdraw(name)] + step(slot)
        case .failed(let message, let created):
            if created { slot.starts += 1 }
            slot.context?.shutdown()
            fail(slot, .failed, message)
            return [.withdraw(name)] + step(slot)
        case .stopped:
            slot.instance = nil
            set(slot, .disabled)
            return step(slot)
        case .reconfigured(let rc, let message):
            set(slot, .running)
            if slot.context?.isShutDown == true {  // cut off meanwhile, as above
                slot.reconfiguring = nil
                beginStop(slot)
                return [.withdraw(name)]
            }
            if rc == RNM_OK, let r = slot.reconfiguring {
                slot.have = r
                slot.reconfiguring = nil
                logger.notice("plugin \(name): reconfigured")
                return step(slot)
            }
            slot.reconfiguring = nil
            logger.warning("plugin \(name): reconfigure refused (\(rc)): \(LogText.oneLine(message, max: 512)); restarting it")
            beginStop(slot)
            return [.retire(name)]
        }
    }

    /// Time until the next watchdog deadline of a lifecycle call in progress, if any.
    package func watchdogTimeout() -> Duration? {
        let now = LifecycleThread.monotonicNanos()
        var next: UInt64? = nil
        for slot in slots.values where slot.state.busy {
            guard let started = slot.thread?.callStarted, started > 0 else { continue }
            let deadline = started &+ UInt64(watchdog.components.seconds) * 1_000_000_000
                &+ UInt64(watchdog.components.attoseconds / 1_000_000_000)
            next = min(next ?? deadline, deadline)
        }
        return next.map { $0 > now ? .nanoseconds(Int64($0 - now)) : .zero }
    }

    /// Abandons instances whose lifecycle call overran the watchdog.
    package func checkWatchdogs() -> [Effect] {
        let now = LifecycleThread.monotonicNanos()
        let limit = UInt64(watchdog.components.seconds) * 1_000_000_000 + UInt64(watchdog.components.attoseconds / 1_000_000_000)
        var effects: [Effect] = []
        for name in order {
            guard let slot = slots[name], slot.state.busy, let thread = slot.thread else { continue }
            let started = thread.callStarted
            // `started` may be later than `now` (a call began after `now` was read): not overdue.
            guard started > 0, now > started, now - started > limit else { continue }
            slot.context?.shutdown()
            slot.thread = nil  // left to the call it is stuck in
            slot.instance = nil
            slot.seq += 1
            fail(slot, .hung, "\(thread.currentCall) did not return within \(watchdog); abandoned (its elements are withdrawn; restart rnmd to load it again)")
            effects += [.withdraw(name), .dropRetired(name)]
        }
        return effects
    }

    /// What the running instances queued, per plugin.
    package func drain() -> [(plugin: String, calls: [PluginCall])] {
        var out: [(String, [PluginCall])] = []
        for name in order {
            guard let slot = slots[name], slot.state == .running || slot.state.busy, let ctx = slot.context else { continue }
            let calls = ctx.drain()
            if !calls.isEmpty { out.append((name, calls)) }
        }
        return out
    }

    /// The daemon is stopping: stop every running instance within `deadline` overall (stragglers are left
    /// as the process exits). Their elements stay in the kernel (fail-static).
    package func shutdown(deadline: Duration = .seconds(1)) {
        let end = ContinuousClock.now + deadline
        var pending: [(Slot, Completion)] = []
        for name in order {
            guard let slot = slots[name] else { continue }
            slot.context?.shutdown()
            guard slot.state == .running, let thread = slot.thread, let d = slot.descriptor, let inst = slot.instance else { continue }
            let done = Completion()
            thread.post {
                thread.calling("stop") { d.value.pointee.stop(inst.value) }
                thread.calling("destroy") { d.value.pointee.destroy(inst.value) }
                done.signal()
            }
            pending.append((slot, done))
        }
        for (slot, done) in pending {
            let left = end - ContinuousClock.now
            if done.wait(timeout: left > .zero ? left : .zero) {
                slot.thread?.finish()
            } else {
                logger.warning("plugin \(slot.name): did not stop within \(deadline) of shutdown; leaving it")
            }
        }
    }

    // MARK: Steps

    /// The next job toward what the config wants, if the slot is idle.
    private func step(_ slot: Slot) -> [Effect] {
        guard !slot.state.busy, slot.state != .hung else { return [] }
        let name = slot.name
        guard let want = slot.want else {
            if slot.state == .running {
                logger.notice("plugin \(name): removed from the config; stopping it")
                beginStop(slot)
                return [.withdraw(name)]
            }
            slot.thread?.finish()
            slots[name] = nil
            order.removeAll { $0 == name }
            return []
        }
        if !want.enabled {
            if slot.state == .running {
                logger.notice("plugin \(name): disabled; stopping it")
                beginStop(slot)
                return [.withdraw(name)]
            }
            slot.loadError = nil
            set(slot, .disabled)
            return []
        }
        if slot.state == .running {
            guard slot.have != want || slot.haveGrants != slot.wantGrants else { return [] }
            if let have = slot.have, have.path == want.path, have.sets == want.sets, slot.haveGrants == slot.wantGrants,
                slot.descriptor?.value.pointee.reconfigure != nil
            {
                beginReconfigure(slot, want)
                return []
            }
            logger.notice("plugin \(name): entry changed; restarting it")
            beginStop(slot)
            return [.retire(name)]
        }
        if slot.state == .refused || slot.state == .failed, slot.have == want, slot.haveGrants == slot.wantGrants, !slot.retry {
            return []
        }
        slot.retry = false
        beginStart(slot, want)
        return []
    }

    private func set(_ slot: Slot, _ state: State) {
        if slot.state != state { slot.sinceWall = clocks.wall() }
        slot.state = state
    }

    private func fail(_ slot: Slot, _ state: State, _ message: String) {
        slot.loadError = message
        slot.context?.recordError(message)
        set(slot, state)
        logger.error("plugin \(slot.name) \(state == .refused ? "refused" : state == .hung ? "hung" : "failed"): \(message)")
    }

    private func thread(_ slot: Slot) -> LifecycleThread {
        if let t = slot.thread { return t }
        let t = LifecycleThread(name: "rnmp-" + slot.name)
        slot.thread = t
        return t
    }

    /// Load (once per file), check, create and start, as one job on the plugin's thread.
    private func beginStart(_ slot: Slot, _ want: PluginConfig) {
        slot.have = want
        slot.haveGrants = slot.wantGrants
        slot.seq += 1
        set(slot, .starting)
        let ctx = PluginContext(name: slot.name, grants: slot.wantGrants, capacity: queueCapacity, logger: logger, clocks: clocks, wake: wake)
        slot.context = ctx
        // Retained for the life of the process: the plugin holds this pointer (see PluginContext).
        let host = Unsafe(OpaquePointer(Unmanaged.passRetained(ctx).toOpaque()))
        let (name, seq, configured, json, report) = (slot.name, slot.seq, want.path, want.configJSON, report)
        let thread = thread(slot)
        thread.post {
            report(JobResult(name: name, seq: seq, outcome: Self.load(configured, json, host, thread)))
        }
    }

    /// The start job. Runs on the plugin's thread; every plugin call is timed by the watchdog.
    private static func load(_ configured: String, _ json: String, _ host: Unsafe<OpaquePointer>, _ thread: LifecycleThread) -> Outcome {
        let path: String
        switch checkFile(configured) {
        case .failure(let e): return .refused(e.message)
        // The checked file itself, not the configured path (a symlink could be re-pointed in between).
        case .success(let resolved): path = resolved
        }
        // dlopen runs the plugin's constructors: under the watchdog too.
        let opened = thread.calling("loading \(path)") { open(path) }
        let descriptor: UnsafePointer<rnm_plugin_descriptor>
        switch opened {
        case .failure(let e): return .refused(e.message)
        case .success(let d): descriptor = d.value
        }
        let facts = facts(descriptor)
        if let problem = PluginABI.problem(facts, host: abiHost) { return .refused("\(path): \(problem)") }
        let d = descriptor.pointee
        let info = Info(name: d.name.map { String(cString: $0) } ?? "?", version: d.version.map { String(cString: $0) },
                        buildInfo: facts.buildInfo, abi: "\(facts.major).\(facts.minor)")
        var instance: OpaquePointer? = nil
        var err = [CChar](repeating: 0, count: 513)
        let rc = thread.calling("create") {
            json.withCString { j in
                err.withUnsafeMutableBufferPointer { e in d.create(PluginHostAPI.table, host.value, j, &instance, e.baseAddress, 512) }
            }
        }
        err[512] = 0
        let message = err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard rc == RNM_OK, let instance else {
            let why = message.isEmpty ? (rc == RNM_OK ? "returned no instance" : "no message") : LogText.oneLine(message, max: 512)
            return .failed("create failed (\(rc)): \(why)", created: false)
        }
        let started = thread.calling("start") { d.start(instance) }
        guard started == RNM_OK else {
            // A failed start made no promise to have stopped its threads: stop and destroy it properly.
            thread.calling("stop") { d.stop(instance) }
            thread.calling("destroy") { d.destroy(instance) }
            return .failed("start failed (\(started))", created: true)
        }
        return .started(Unsafe((descriptor, instance)), info)
    }

    /// stop() then destroy(), as one job. Host calls end at once (the context shuts down).
    private func beginStop(_ slot: Slot) {
        slot.context?.shutdown()
        slot.seq += 1
        set(slot, .stopping)
        guard let d = slot.descriptor, let inst = slot.instance else {
            let (name, seq, report) = (slot.name, slot.seq, report)
            report(JobResult(name: name, seq: seq, outcome: .stopped))
            return
        }
        let (name, seq, report) = (slot.name, slot.seq, report)
        let thread = thread(slot)
        thread.post {
            thread.calling("stop") { d.value.pointee.stop(inst.value) }
            thread.calling("destroy") { d.value.pointee.destroy(inst.value) }
            report(JobResult(name: name, seq: seq, outcome: .stopped))
        }
    }

    private func beginReconfigure(_ slot: Slot, _ want: PluginConfig) {
        guard let d = slot.descriptor, let inst = slot.instance else { return }
        slot.seq += 1
        slot.reconfiguring = want
        set(slot, .reconfiguring)
        let (name, seq, report, json) = (slot.name, slot.seq, report, want.configJSON)
        let thread = thread(slot)
        thread.post {
            var err = [CChar](repeating: 0, count: 513)
            let rc = thread.calling("reconfigure") {
                json.withCString { j in
                    err.withUnsafeMutableBufferPointer { e in d.value.pointee.reconfigure(inst.value, j, e.baseAddress, 512) }
                }
            }
            err[512] = 0
            let message = err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            report(JobResult(name: name, seq: seq, outcome: .reconfigured(rc, message)))
        }
    }

    // MARK: Loading

    struct LoadError: Error {
        var message: String
        init(_ m: String) { message = m }
    }

    /// The plugin file and every directory above it must be root's: the file and its directory not
    /// writable by group or others, the directories above that either not writable or sticky (as /tmp).
    static func checkFile(_ path: String) -> Result<String, LoadError> {
        guard let real = realpath(path, nil) else {
            return .failure(LoadError("\(path): \(String(cString: strerror(errno)))"))
        }
        let resolved = String(cString: real)
        free(real)
        var st = stat()
        guard stat(resolved, &st) == 0 else { return .failure(LoadError("\(resolved): \(String(cString: strerror(errno)))")) }
        guard st.st_mode & S_IFMT == S_IFREG else { return .failure(LoadError("\(resolved): not a regular file")) }
        func mode(_ m: mode_t) -> String {
            let s = String(m & 0o7777, radix: 8)
            return String(repeating: "0", count: max(0, 4 - s.count)) + s
        }
        guard st.st_uid == 0 else { return .failure(LoadError("\(resolved): owned by uid \(st.st_uid), not root")) }
        guard st.st_mode & 0o022 == 0 else {
            return .failure(LoadError("\(resolved): writable by group or others (mode \(mode(st.st_mode))); plugins run as root"))
        }
        var dir = resolved
        var first = true
        while let slash = dir.lastIndex(of: "/") {
            dir = slash == dir.startIndex ? "/" : String(dir[..<slash])
            guard stat(dir, &st) == 0 else { return .failure(LoadError("\(dir): \(String(cString: strerror(errno)))")) }
            guard st.st_uid == 0 else { return .failure(LoadError("\(dir): directory owned by uid \(st.st_uid), not root")) }
            if st.st_mode & 0o022 != 0 && (first || st.st_mode & S_ISVTX == 0) {
                return .failure(LoadError(
                    "\(dir): directory writable by group or others (mode \(mode(st.st_mode)))\(first ? "" : " and not sticky")"))
            }
            first = false
            if dir == "/" { break }
        }
        return .success(resolved)
    }

    /// dlopen + dlsym + the entry call. Runs on the instance's thread.
    static func open(_ path: String) -> Result<Unsafe<UnsafePointer<rnm_plugin_descriptor>>, LoadError> {
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            return .failure(LoadError("dlopen: \(dlerror().map { String(cString: $0) } ?? "unknown error")"))
        }
        guard let sym = dlsym(handle, RNM_PLUGIN_ENTRY_V1) else {
            return .failure(LoadError("\(path) does not export rnm_plugin_entry_v1 (not an rnm plugin, or built for another ABI major)"))
        }
        typealias Entry = @convention(c) (UInt32, UInt32) -> UnsafePointer<rnm_plugin_descriptor>?
        let entry = unsafeBitCast(sym, to: Entry.self)
        guard let d = entry(UInt32(RNM_ABI_MAJOR), UInt32(RNM_ABI_MINOR)) else {
            return .failure(LoadError("\(path): rnm_plugin_entry_v1 returned no descriptor for ABI \(RNM_ABI_MAJOR).\(RNM_ABI_MINOR)"))
        }
        return .success(Unsafe(d))
    }

    /// The descriptor's fields, reading nothing beyond its struct_size.
    static func facts(_ d: UnsafePointer<rnm_plugin_descriptor>) -> PluginABI.Descriptor {
        let raw = UnsafeRawPointer(d)
        let size = raw.loadUnaligned(as: UInt32.self)
        var f = PluginABI.Descriptor(
            structSize: size, magic: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
            major: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self),
            minor: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self), hasName: false, hooks: [:])
        guard size >= UInt32(MemoryLayout<rnm_plugin_descriptor>.size) else { return f }
        let v = d.pointee
        f.hasName = v.name != nil
        f.hooks = ["create": v.create != nil, "start": v.start != nil, "stop": v.stop != nil, "destroy": v.destroy != nil]
        f.buildInfo = v.build_info.map { String(cString: $0) }
        return f
    }

    // MARK: Views

    /// The `plugins list` record, in config order; `count(plugin, set)` is the plugin's contribution size.
    package func list(count: (String, String) -> Int) -> JSON {
        .array(order.compactMap { slots[$0] }.map { slot in
            let stats = slot.context?.snapshot ?? PluginStats()
            let running = slot.state == .running || slot.state == .reconfiguring
            let shown = slot.shown
            return .object([
                ("name", .string(slot.name)),
                ("plugin", slot.info.map { .string($0.name) } ?? .null),
                ("version", slot.info?.version.map { .string($0) } ?? .null),
                ("build_info", slot.info?.buildInfo.map { .string($0) } ?? .null),
                ("abi", slot.info.map { .string($0.abi) } ?? .null),
                ("path", .string(shown?.path ?? "")),
                ("enabled", .bool(slot.want?.enabled ?? false)),
                ("state", .string(slot.state.rawValue)),
                ("since", .string(WallTime.rfc3339(epochNanos: slot.sinceWall))),
                ("health", running ? .string(PluginContext.healthName(stats.health)) : .null),
                ("message", running ? (stats.healthMessage.map { .string($0) } ?? .null) : .null),
                ("sets", .array((shown?.sets ?? []).map { s in
                    .object([("name", .string(s)), ("elements", .int(count(slot.name, s)))])
                })),
                ("accepted", .int(stats.accepted)),
                ("rejected", .int(stats.rejected.values.reduce(0, +))),
                ("rejected_by", .object(PluginRejection.allCases.map { ($0.rawValue, .int(stats.rejected[$0] ?? 0)) })),
                ("busy", .int(stats.busy)),
                ("last_error", (slot.loadError ?? stats.lastError).map { .string($0) } ?? .null),
                ("starts", .int(slot.starts)),
            ])
        })
    }

    /// Per plugin: name, state, counters, granted sets (for metrics).
    package var records: [(name: String, state: State, health: Int32, stats: PluginStats, sets: [String])] {
        order.compactMap { slots[$0] }.map { slot in
            let stats = slot.context?.snapshot ?? PluginStats()
            return (slot.name, slot.state, stats.health, stats, slot.shown?.sets ?? [])
        }
    }

    /// name, state, health for `status`.
    package var summary: JSON {
        .array(order.compactMap { slots[$0] }.map { slot in
            .object([
                ("name", .string(slot.name)), ("state", .string(slot.state.rawValue)),
                ("health", slot.state == .running || slot.state == .reconfiguring ? .string(PluginContext.healthName(slot.context?.snapshot.health ?? 0)) : .null),
            ])
        })
    }
}

/// A C pointer (or a tuple holding some) carried to a plugin's host thread and back.
// @unchecked Sendable is safe: the pointees are plugin objects that the ABI lets the host use from its
// lifecycle thread; only one thread uses them at a time (the caller waits for the call to return).
struct Unsafe<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// The thread on which one plugin instance's lifecycle jobs run, one at a time. It publishes when the plugin
/// call in progress began, for the host's watchdog.
final class LifecycleThread: @unchecked Sendable {
    // @unchecked Sendable: `jobs`, `done` and `call` are guarded by their Mutexes, `started` is atomic.
    private let mutex = Mutex<(jobs: [@Sendable () -> Void], done: Bool)>(([], false))
    private let ready = EventBus<Int>(capacity: 1 << 30)
    private let started = Atomic<UInt64>(0)
    private let call = Mutex<String>("")

    init(name: String) {
        // The thread holds its own object: it lives as long as the thread (which may outlive the host's
        // interest in it, when a plugin hangs).
        Threads.detach(name: name, stackSize: 1 << 20) { [self] in
            while ready.next() != nil {
                let (jobs, done) = mutex.withLock { s in
                    let j = s.jobs
                    s.jobs = []
                    return (j, s.done)
                }
                for job in jobs { job() }
                if done { return }
            }
        }
    }

    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// When the plugin call in progress began (CLOCK_MONOTONIC ns); 0 when none is.
    var callStarted: UInt64 { started.load(ordering: .acquiring) }
    /// Which call that is.
    var currentCall: String { call.withLock { $0 } }

    /// Runs one plugin call, published for the watchdog. On this thread only.
    @discardableResult
    func calling<T>(_ what: String, _ body: () -> T) -> T {
        call.withLock { $0 = what }
        started.store(Self.monotonicNanos(), ordering: .releasing)
        defer { started.store(0, ordering: .releasing) }
        return body()
    }

    /// Runs `body` on the thread.
    func post(_ body: @escaping @Sendable () -> Void) {
        mutex.withLock { $0.jobs.append(body) }
        ready.send(0, weight: 0)
    }

    /// Ends the thread after what is queued.
    func finish() {
        mutex.withLock { $0.done = true }
        ready.send(0, weight: 0)
    }
}
