internal import Glibc
package import Logging
package import RNMCore
internal import RNMPluginABI
import Synchronization

/// Loads plugins, drives their lifecycle and keeps the record `plugins list` shows. Owned by the reconciler
/// thread: every method is called from it. Lifecycle calls run on one thread per instance (the plugin's
/// "host thread") under a watchdog; a call that overruns it leaves the instance abandoned ("hung"), never the
/// daemon blocked. Plugins are never unloaded (RTLD_NODELETE, no dlclose): a new build needs a restart.
package final class PluginHost {
    /// The toolchain this rnmd was built with, as Swift plugins state theirs in build_info (the same ladder
    /// as Plugins/example-swift; keep them in step). nil for a compiler it does not know: then no Swift
    /// plugin loads.
    package static let swiftBuild: String? = {
        #if compiler(>=6.3.3)
        return nil
        #elseif compiler(>=6.3.2)
        return "swift-6.3.2"
        #elseif compiler(>=6.3.1)
        return "swift-6.3.1"
        #elseif compiler(>=6.3)
        return "swift-6.3.0"
        #elseif compiler(>=6.2.4)
        return nil
        #elseif compiler(>=6.2.3)
        return "swift-6.2.3"
        #elseif compiler(>=6.2.2)
        return "swift-6.2.2"
        #elseif compiler(>=6.2.1)
        return "swift-6.2.1"
        #else
        return "swift-6.2.0"
        #endif
    }()

    package static let abiHost = PluginABI.Host(
        major: UInt32(RNM_ABI_MAJOR), minor: UInt32(RNM_ABI_MINOR),
        minimumDescriptorSize: UInt32(MemoryLayout<rnm_plugin_descriptor>.size), swiftBuild: swiftBuild)

    package enum State: String, Sendable {
        case running, disabled, refused, failed, hung
    }

    /// One `plugins:` entry and what became of it.
    final class Slot {
        var config: PluginConfig
        var grants: [String: PluginGrant]
        var state: State = .disabled
        var sinceWall: UInt64
        var starts = 0
        var loadError: String? = nil
        var descriptor: Unsafe<UnsafePointer<rnm_plugin_descriptor>>? = nil
        var info: (name: String, version: String?, buildInfo: String?, abi: String)? = nil
        var instance: Unsafe<OpaquePointer>? = nil
        var context: PluginContext? = nil
        var thread: LifecycleThread? = nil
        /// Still configured (false: removed from the config but kept for the record because it hung).
        var configured = true

        init(config: PluginConfig, grants: [String: PluginGrant], wall: UInt64) {
            self.config = config
            self.grants = grants
            sinceWall = wall
        }
    }

    private var slots: [String: Slot] = [:]
    private var order: [String] = []
    private let logger: Logger
    private let clocks: Clocks
    private let wake: @Sendable () -> Void
    private let watchdog: Duration
    private let queueCapacity: Int

    package init(logger: Logger, clocks: Clocks, watchdog: Duration = .seconds(5), queueCapacity: Int = 65_536,
                 wake: @escaping @Sendable () -> Void) {
        self.logger = logger
        self.clocks = clocks
        self.wake = wake
        self.watchdog = watchdog
        self.queueCapacity = queueCapacity
    }

    package var isEmpty: Bool { slots.isEmpty }

    // MARK: Sync with the config

    /// Brings the plugins in line with `config`: removed ones stop, changed ones are reconfigured or
    /// restarted, new and (with `retry`) refused or failed ones load; the others are untouched. Returns the
    /// plugins whose contributions must be withdrawn (their instance stopped, failed or hung).
    package func sync(_ config: Config, retry: Bool = true) -> [String] {
        var withdraw: [String] = []
        let wanted = Dictionary(config.plugins.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in order where wanted[name] == nil {
            guard let slot = slots[name], slot.configured else { continue }
            if slot.state == .running {
                logger.notice("plugin \(name): removed from the config; stopping it")
                if stop(slot) {
                    slot.thread?.finish()
                    slots[name] = nil
                } else {
                    slot.configured = false
                }
                withdraw.append(name)
            } else if slot.state == .hung {
                slot.configured = false
            } else {
                slot.thread?.finish()
                slots[name] = nil
            }
        }
        for entry in config.plugins {
            let grants = Dictionary(entry.sets.compactMap { s in config.declaredSet(named: s).map { (s, PluginGrant($0)) } },
                                    uniquingKeysWith: { a, _ in a })
            guard let slot = slots[entry.name] else {
                let slot = Slot(config: entry, grants: grants, wall: clocks.wall())
                slots[entry.name] = slot
                if entry.enabled { start(slot) } else { slot.state = .disabled }
                continue
            }
            slot.configured = true
            if slot.state == .hung {
                logger.warning("plugin \(entry.name): an earlier instance hung; restart rnmd to load it again")
                slot.config = entry
                continue
            }
            if slot.config == entry, slot.grants == grants {
                if retry, entry.enabled, slot.state == .refused || slot.state == .failed { start(slot) }
                continue
            }
            let onlyConfig = slot.config.path == entry.path && slot.config.sets == entry.sets
                && slot.config.enabled == entry.enabled && slot.grants == grants && entry.enabled
            if slot.state == .running, onlyConfig, reconfigure(slot, entry.configJSON) {
                slot.config = entry
                continue
            }
            if slot.state == .hung {  // reconfigure overran the watchdog: abandoned, like a hung stop
                withdraw.append(entry.name)
                slot.config = entry
                continue
            }
            if slot.state == .running {
                logger.notice("plugin \(entry.name): entry changed; restarting it")
                let stopped = stop(slot)
                withdraw.append(entry.name)
                if !stopped {
                    slot.config = entry
                    continue
                }
            }
            slot.config = entry
            slot.grants = grants
            if entry.enabled {
                start(slot)
            } else {
                slot.loadError = nil
                set(slot, .disabled)
                logger.notice("plugin \(entry.name): disabled")
            }
        }
        order = config.plugins.map(\.name) + order.filter { wanted[$0] == nil && slots[$0] != nil }
        return withdraw
    }

    /// What the running instances queued, per plugin.
    package func drain() -> [(plugin: String, calls: [PluginCall])] {
        var out: [(String, [PluginCall])] = []
        for name in order {
            guard let slot = slots[name], slot.state == .running, let ctx = slot.context else { continue }
            let calls = ctx.drain()
            if !calls.isEmpty { out.append((name, calls)) }
        }
        return out
    }

    /// The daemon is stopping: stop every instance within `deadline` overall (stragglers are left running
    /// as the process exits). Their elements stay in the kernel (fail-static).
    package func shutdown(deadline: Duration = .seconds(1)) {
        let running = order.compactMap { slots[$0] }.filter { $0.state == .running }
        guard !running.isEmpty else { return }
        let end = ContinuousClock.now + deadline
        var pending: [(Slot, Completion)] = []
        for slot in running {
            slot.context?.shutdown()
            guard let thread = slot.thread, let d = slot.descriptor, let inst = slot.instance else { continue }
            let done = Completion()
            thread.post {
                d.value.pointee.stop(inst.value)
                d.value.pointee.destroy(inst.value)
                done.signal()
            }
            pending.append((slot, done))
        }
        for (slot, done) in pending {
            let left = end - ContinuousClock.now
            if !done.wait(timeout: left > .zero ? left : .zero) {
                logger.warning("plugin \(slot.config.name): did not stop within \(deadline) of shutdown; leaving it")
            } else {
                slot.thread?.finish()
            }
        }
    }

    // MARK: Lifecycle

    private func set(_ slot: Slot, _ state: State) {
        if slot.state != state { slot.sinceWall = clocks.wall() }
        slot.state = state
    }

    private func refuse(_ slot: Slot, _ state: State, _ message: String) {
        slot.loadError = message
        slot.context?.recordError(message)
        set(slot, state)
        logger.error("plugin \(slot.config.name) \(state == .refused ? "refused" : state == .hung ? "hung" : "failed"): \(message)")
    }

    /// Loads (once per file), checks, creates and starts an instance.
    private func start(_ slot: Slot) {
        let name = slot.config.name
        let path: String
        switch Self.checkFile(slot.config.path) {
        case .failure(let e):
            refuse(slot, .refused, e.message)
            return
        case .success(let resolved):
            // The checked file itself, not the configured path (a symlink could be re-pointed in between).
            path = resolved
        }
        let thread = slot.thread ?? LifecycleThread(name: "rnmp-" + name)
        slot.thread = thread
        // dlopen runs the plugin's constructors: on its own thread, under the watchdog too.
        guard let loaded = thread.run(timeout: watchdog, { Self.open(path) }) else {
            slot.thread = nil
            refuse(slot, .hung, "loading \(path) did not return within \(watchdog); abandoned")
            return
        }
        let descriptor: UnsafePointer<rnm_plugin_descriptor>
        switch loaded {
        case .failure(let e):
            refuse(slot, .refused, e.message)
            return
        case .success(let d):
            descriptor = d.value
        }
        let facts = Self.facts(descriptor)
        if let problem = PluginABI.problem(facts, host: Self.abiHost) {
            refuse(slot, .refused, "\(path): \(problem)")
            return
        }
        let d = descriptor.pointee
        slot.descriptor = Unsafe(descriptor)
        slot.info = (d.name.map { String(cString: $0) } ?? name, d.version.map { String(cString: $0) },
                     facts.buildInfo, "\(facts.major).\(facts.minor)")

        let ctx = PluginContext(name: name, grants: slot.grants, capacity: queueCapacity, logger: logger, clocks: clocks, wake: wake)
        slot.context = ctx
        slot.starts += 1
        // Retained for the life of the process: the plugin holds this pointer (see PluginContext).
        let host = Unsafe(OpaquePointer(Unmanaged.passRetained(ctx).toOpaque()))
        let json = slot.config.configJSON
        let desc = Unsafe(descriptor)
        let created = thread.run(timeout: watchdog) { () -> Unsafe<(rnm_status, OpaquePointer?, String)> in
            var out: OpaquePointer? = nil
            var err = [CChar](repeating: 0, count: 513)
            let rc = json.withCString { j in
                err.withUnsafeMutableBufferPointer { e in
                    desc.value.pointee.create(PluginHostAPI.table, host.value, j, &out, e.baseAddress, 512)
                }
            }
            err[512] = 0
            return Unsafe((rc, out, err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }))
        }
        guard let created else {
            ctx.shutdown()
            slot.thread = nil
            refuse(slot, .hung, "create did not return within \(watchdog); abandoned")
            return
        }
        let (rc, instance, message) = created.value
        guard rc == RNM_OK, let instance else {
            ctx.shutdown()
            let why = message.isEmpty ? (rc == RNM_OK ? "returned no instance" : "no message") : LogText.oneLine(message, max: 512)
            refuse(slot, .failed, "create failed (\(rc)): \(why)")
            return
        }
        slot.instance = Unsafe(instance)
        let inst = Unsafe(instance)
        guard let started = thread.run(timeout: watchdog, { desc.value.pointee.start(inst.value) }) else {
            ctx.shutdown()
            slot.thread = nil
            refuse(slot, .hung, "start did not return within \(watchdog); abandoned")
            return
        }
        guard started == RNM_OK else {
            ctx.shutdown()
            // A failed start made no promise to have stopped its threads: stop and destroy it properly.
            if let hook = finishInstance(slot) {
                refuse(slot, .hung, "start failed (\(started)), then \(hook) did not return within \(watchdog); abandoned")
                return
            }
            refuse(slot, .failed, "start failed (\(started))")
            return
        }
        slot.loadError = nil
        set(slot, .running)
        logger.notice(
            "plugin \(name): running",
            metadata: [
                "plugin": "\(slot.info!.name)", "version": "\(slot.info!.version ?? "-")", "abi": "\(slot.info!.abi)",
                "sets": "\(slot.config.sets.joined(separator: ","))", "path": "\(path)",
            ])
    }

    /// Stops a running instance: host calls end, stop() and destroy() run under the watchdog. False if the
    /// instance hung (abandoned).
    private func stop(_ slot: Slot) -> Bool {
        slot.context?.shutdown()
        if let hook = finishInstance(slot) {
            refuse(slot, .hung, "\(hook) did not return within \(watchdog); abandoned (its elements are withdrawn)")
            return false
        }
        set(slot, .disabled)
        return true
    }

    /// stop() then destroy() on the instance's thread. nil, or the hook that overran the watchdog.
    private func finishInstance(_ slot: Slot) -> String? {
        guard let thread = slot.thread, let d = slot.descriptor, let inst = slot.instance else { return nil }
        slot.instance = nil
        guard thread.run(timeout: watchdog, { d.value.pointee.stop(inst.value) }) != nil else {
            slot.thread = nil
            return "stop"
        }
        guard thread.run(timeout: watchdog, { d.value.pointee.destroy(inst.value) }) != nil else {
            slot.thread = nil
            return "destroy"
        }
        return nil
    }

    /// Hands a running instance its new config. False if it has no reconfigure or refused the config (the
    /// caller restarts it).
    private func reconfigure(_ slot: Slot, _ json: String) -> Bool {
        guard let thread = slot.thread, let d = slot.descriptor, let inst = slot.instance,
            d.value.pointee.reconfigure != nil
        else { return false }
        let result = thread.run(timeout: watchdog) { () -> Unsafe<(rnm_status, String)> in
            var err = [CChar](repeating: 0, count: 513)
            let rc = json.withCString { j in
                err.withUnsafeMutableBufferPointer { e in d.value.pointee.reconfigure(inst.value, j, e.baseAddress, 512) }
            }
            err[512] = 0
            return Unsafe((rc, err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }))
        }
        guard let (rc, message) = result?.value else {
            slot.context?.shutdown()
            slot.thread = nil
            refuse(slot, .hung, "reconfigure did not return within \(watchdog); abandoned")
            return false
        }
        if rc != RNM_OK {
            logger.warning("plugin \(slot.config.name): reconfigure refused (\(rc)): \(LogText.oneLine(message, max: 512)); restarting it")
            return false
        }
        logger.notice("plugin \(slot.config.name): reconfigured")
        return true
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
            let running = slot.state == .running
            return .object([
                ("name", .string(slot.config.name)),
                ("plugin", slot.info.map { .string($0.name) } ?? .null),
                ("version", slot.info?.version.map { .string($0) } ?? .null),
                ("build_info", slot.info?.buildInfo.map { .string($0) } ?? .null),
                ("abi", slot.info.map { .string($0.abi) } ?? .null),
                ("path", .string(slot.config.path)),
                ("enabled", .bool(slot.config.enabled && slot.configured)),
                ("state", .string(slot.state.rawValue)),
                ("since", .string(WallTime.rfc3339(epochNanos: slot.sinceWall))),
                ("health", running ? .string(PluginContext.healthName(stats.health)) : .null),
                ("message", running ? (stats.healthMessage.map { .string($0) } ?? .null) : .null),
                ("sets", .array(slot.config.sets.map { s in
                    .object([("name", .string(s)), ("elements", .int(count(slot.config.name, s)))])
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
            return (slot.config.name, slot.state, stats.health, stats, slot.config.sets)
        }
    }

    /// name, state, health for `status`.
    package var summary: JSON {
        .array(order.compactMap { slots[$0] }.map { slot in
            .object([
                ("name", .string(slot.config.name)), ("state", .string(slot.state.rawValue)),
                ("health", slot.state == .running ? .string(PluginContext.healthName(slot.context?.snapshot.health ?? 0)) : .null),
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

/// The thread on which one plugin instance's lifecycle calls run, one at a time.
final class LifecycleThread: @unchecked Sendable {
    // @unchecked Sendable: `jobs` and `done` are guarded by `mutex`.
    private let mutex = Mutex<(jobs: [@Sendable () -> Void], done: Bool)>(([], false))
    private let ready = EventBus<Int>(capacity: 1 << 30)

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

    /// Runs `body` on the thread.
    func post(_ body: @escaping @Sendable () -> Void) {
        mutex.withLock { $0.jobs.append(body) }
        ready.send(0, weight: 0)
    }

    /// Runs `body` on the thread and waits up to `timeout` for its result; nil if it did not return in time
    /// (it may still return later; the result is dropped).
    func run<T: Sendable>(timeout: Duration, _ body: @escaping @Sendable () -> T) -> T? {
        let result = Mutex<T?>(nil)
        let done = Completion()
        post {
            let v = body()
            result.withLock { $0 = v }
            done.signal()
        }
        guard done.wait(timeout: timeout) else { return nil }
        return result.withLock { $0 }
    }

    /// Ends the thread after what is queued.
    func finish() {
        mutex.withLock { $0.done = true }
        ready.send(0, weight: 0)
    }
}
