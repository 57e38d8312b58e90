internal import Glibc
import RNMDocker
public import RNMPluginABI
import RNMPluginKit

/// The Docker plugin: keeps the plugin's contribution to its sets equal to the addresses of the running
/// containers its rules select. One thread: connect, list and inspect, replace the whole contribution, then
/// follow `/events` from the timestamp taken before the listing; on any failure reconnect with back-off.
final class DockerPlugin: @unchecked Sendable {
    // @unchecked Sendable: created and destroyed on the host's lifecycle thread; between start() and stop()
    // every var is touched by the worker thread only (stop() joins it before anything else reads them).
    let api: UnsafePointer<rnm_host_api>
    let host: OpaquePointer
    let config: DockerConfig
    /// The read end of a pipe every wait also polls; stop() writes to the other end.
    let stopFD: Int32
    private let stopWrite: Int32
    private var thread = pthread_t()
    private var started = false
    private var tracker: ContainerTracker
    /// Sets this instance contributed to (so a resync empties those no container selects any more).
    private var touched: Set<String> = []
    private var healthMessage = ""
    /// The current session reached the event stream.
    private var connected = false

    init(api: UnsafePointer<rnm_host_api>, host: OpaquePointer, config: DockerConfig) {
        self.api = api
        self.host = host
        self.config = config
        tracker = ContainerTracker(config: config)
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        stopFD = fds[0]
        stopWrite = fds[1]
    }

    deinit {
        close(stopFD)
        close(stopWrite)
    }

    // MARK: Host calls

    func log(_ level: Int32, _ message: String) { api.pointee.log(host, level, message) }

    func health(_ state: Int32, _ message: String) {
        guard message != healthMessage else { return }
        healthMessage = message
        api.pointee.set_health(host, state, message)
    }

    /// A host call, retried after wait_writable while the queue is full.
    func call(_ body: () -> rnm_status) throws(IOError) -> rnm_status {
        while true {
            let rc = body()
            if rc == RNM_EAGAIN {
                if api.pointee.wait_writable(host, 1000) == RNM_ESHUTDOWN { throw .stopped }
                continue
            }
            if rc == RNM_ESHUTDOWN { throw .stopped }
            return rc
        }
    }

    func parse(_ text: String) -> rnm_addr? {
        var a = rnm_addr()
        return api.pointee.addr_parse(text, &a) == RNM_OK ? a : nil
    }

    /// Adds and removes, one all-or-nothing call per set.
    func apply(added: [Membership], removed: [Membership]) throws(IOError) {
        var bySet: [String: [rnm_set_change]] = [:]
        for (m, op) in removed.map({ ($0, RNM_OP_REMOVE) }) + added.map({ ($0, RNM_OP_ADD) }) {
            guard let a = parse(m.address) else {
                log(RNM_LOG_WARNING, "Docker reported \(DockerConfig.quoted(m.address)), not an address; ignored")
                continue
            }
            var c = rnm_set_change()
            c.op = UInt32(op)
            c.addr = a
            bySet[m.set, default: []].append(c)
        }
        for (set, changes) in bySet.sorted(by: { $0.key < $1.key }) {
            let rc = try call { api.pointee.set_apply(host, set, changes, changes.count) }
            if rc == RNM_OK { touched.insert(set) }
        }
    }

    /// Makes the whole contribution equal to the tracker's (after a (re)connect).
    func replaceAll() throws(IOError) {
        for (set, addresses) in tracker.contribution(alsoSets: touched.union(config.fixedSets)).sorted(by: { $0.key < $1.key }) {
            let addrs = addresses.compactMap(parse)
            let rc = try call { api.pointee.set_replace(host, set, addrs, addrs.count, 0) }
            if rc == RNM_OK { touched.insert(set) }
        }
    }

    func noteRefused(_ values: [String], container: String) {
        for v in values {
            log(RNM_LOG_WARNING, "container \(container.prefix(12)): label value \(DockerConfig.quoted(v)) is not a set name; ignored")
        }
    }

    func reportWatching() {
        let refused = tracker.refusedCount
        health(RNM_HEALTH_OK, "watching \(tracker.containerCount) containers" + (refused > 0 ? "; \(refused) label values refused" : ""))
    }

    // MARK: The session

    static func isContainerID(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The container as Docker describes it now; nil if it no longer exists.
    func inspect(_ client: DockerClient, _ id: String) throws(IOError) -> Docker.Inspect? {
        let (status, body) = try client.get("/containers/\(id)/json")
        if status == 404 { return nil }
        guard status == 200 else { throw .failed("GET /containers/\(id.prefix(12))/json: HTTP \(status)") }
        do {
            return try Docker.decode(Docker.Inspect.self, body)
        } catch {
            throw .failed("inspect \(id.prefix(12)): malformed answer (\(error))")
        }
    }

    static func wallClock() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ns = String(ts.tv_nsec)
        return "\(ts.tv_sec).\(String(repeating: "0", count: 9 - ns.count))\(ns)"
    }

    func session() throws(IOError) {
        let client = DockerClient(socket: config.socket, stop: stopFD)
        // Events from this moment on are replayed by the stream below, so nothing between list and stream
        // is missed (a replayed event only re-inspects a container).
        let since = Self.wallClock()
        let (status, body) = try client.get("/containers/json")
        guard status == 200 else { throw .failed("GET /containers/json: HTTP \(status)") }
        let list: [Docker.Summary]
        do {
            list = try Docker.decode([Docker.Summary].self, body)
        } catch {
            throw .failed("list containers: malformed answer (\(error))")
        }
        var containers: [Docker.Inspect] = []
        for s in list where Self.isContainerID(s.id) {
            if let c = try inspect(client, s.id) { containers.append(c) }
        }
        let refused = tracker.reset(containers)
        if !refused.isEmpty { noteRefused(refused, container: "(listing)") }
        try replaceAll()
        reportWatching()
        connected = true
        log(RNM_LOG_INFO, "connected to \(config.socket): \(tracker.containerCount) running containers")
        try client.stream(Docker.eventsPath(since: since)) { line throws(IOError) in
            let event: Docker.Event
            do {
                event = try Docker.decode(Docker.Event.self, line)
            } catch {
                log(RNM_LOG_WARNING, "malformed event ignored (\(line.count) bytes)")
                return
            }
            guard let id = event.container, Self.isContainerID(id) else { return }
            let c: Docker.Inspect?
            switch event.effect {
            case .none: return
            case .gone: c = nil
            case .refresh: c = try inspect(client, id)
            case .network:
                guard tracker.isTracked(id) else { return }
                c = try inspect(client, id)
            }
            let change = tracker.update(id, c)
            noteRefused(change.refused, container: id)
            try apply(added: change.added, removed: change.removed)
            reportWatching()
        }
    }

    /// Sessions until stop(); after a failure waits 100 ms, doubling to 2 s, back to 100 ms once a session
    /// got as far as following events.
    func run() {
        var backoff: Int32 = 100
        while true {
            connected = false
            do {
                try session()
            } catch {
                guard case .failed(let why) = error else { return }
                if connected {
                    backoff = 100
                    log(RNM_LOG_WARNING, "lost \(config.socket): \(why); reconnecting")
                }
                health(RNM_HEALTH_DEGRADED, "cannot reach \(config.socket): \(why); retrying")
                do {
                    try Connection.sleep(ms: backoff, stop: stopFD)
                } catch {
                    return
                }
                backoff = min(backoff * 2, 2000)
            }
        }
    }

    // MARK: Lifecycle

    func start() -> rnm_status {
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let plugin = Unmanaged<DockerPlugin>.fromOpaque(arg!).takeRetainedValue()
            plugin.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<DockerPlugin>.fromOpaque(box).release()
            return -rc
        }
        started = true
        return RNM_OK
    }

    func stop() {
        guard started else { return }
        var one: UInt8 = 1
        _ = write(stopWrite, &one, 1)
        pthread_join(thread, nil)
        started = false
    }
}

// MARK: - The ABI

enum Entry {
    static func instance(_ p: OpaquePointer?) -> DockerPlugin { Unmanaged<DockerPlugin>.fromOpaque(UnsafeRawPointer(p!)).takeUnretainedValue() }

    // nonisolated(unsafe) is safe: written once here, before the host can see it, then only read.
    nonisolated(unsafe) static let descriptor: UnsafeMutablePointer<rnm_plugin_descriptor> = {
        let d = UnsafeMutablePointer<rnm_plugin_descriptor>.allocate(capacity: 1)
        d.initialize(to: rnm_plugin_descriptor(
            struct_size: UInt32(MemoryLayout<rnm_plugin_descriptor>.size), magic: RNM_PLUGIN_MAGIC,
            abi_major: UInt32(RNM_ABI_MAJOR), abi_minor: UInt32(RNM_ABI_MINOR),
            name: PluginKit.permanentCString("docker"), version: PluginKit.permanentCString("1.0.0"),
            build_info: PluginKit.permanentCString(PluginKit.swiftToolchain ?? "swift-unknown"),
            create: { api, host, json, out, err, len in
                guard let api, let host, let json, let out else { return RNM_EINVAL }
                let config: DockerConfig
                do {
                    config = try DockerConfig.parse(Array(String(cString: json).utf8))
                } catch {
                    PluginKit.writeError("\(error)", err, len)
                    return RNM_EINVAL
                }
                out.pointee = OpaquePointer(Unmanaged.passRetained(DockerPlugin(api: api, host: host, config: config)).toOpaque())
                return RNM_OK
            },
            start: { p in instance(p).start() },
            reconfigure: nil,  // a changed config restarts the instance; the restart keeps elements in place
            stop: { p in instance(p).stop() },
            destroy: { p in Unmanaged<DockerPlugin>.fromOpaque(UnsafeRawPointer(p!)).release() }
        ))
        return d
    }()
}

/// The plugin's only exported symbol (Plugins/docker/exports.map hides everything else).
@c @implementation
public func rnm_plugin_entry_v1(_ major: UInt32, _ minor: UInt32) -> UnsafePointer<rnm_plugin_descriptor>? {
    major == UInt32(RNM_ABI_MAJOR) ? UnsafePointer(Entry.descriptor) : nil
}
