internal import CRNMShims
internal import Glibc
package import Logging
package import RNMCore
import Synchronization

/// Why the control socket could not be set up; the daemon does not start.
package struct ControlSetupError: Error, CustomStringConvertible {
    package var description: String
}

/// Limits of the control server. Defaults are what rnmd runs with; tests shrink the deadlines.
package struct ControlLimits: Sendable {
    package var maxConnections = 128
    /// A connection must send a complete request within this long of connecting or of its last answer.
    package var readDeadline: Duration = .seconds(10)
    /// Pending output must drain within this long, or the connection is closed.
    package var writeDeadline: Duration = .seconds(5)

    package init() {}
}

/// The control socket: a poll() loop on its own thread (`rnm-control`).
///
/// Requests that need the daemon's state go to the reconciler over the bus and come back through `inbox`;
/// `ping` and `events` are answered here. One request at a time per connection keeps answers in order.
/// Every read and write has a deadline, connections are capped (the longest-idle one makes room for a new
/// one), and a client that never reads can only fill its own bounded queue.
package final class ControlServer: @unchecked Sendable {
    // @unchecked Sendable: `conns`, `listener` and the other vars are touched only by the control thread
    // (after `open()`, which runs before it starts); other threads only use `inbox` (a Mutex), `wakeFD`
    // (write(2) is thread-safe) and `stopping` (an Atomic).
    private let config: ControlConfig
    private let bus: EventBus<DaemonEvent>
    private let hub: EventHub
    private let logger: Logger
    private let limits: ControlLimits
    private let version: String
    private let monotonic: @Sendable () -> UInt64
    private let wall: @Sendable () -> UInt64
    private let started: UInt64

    private var listener: Int32 = -1
    private var socketInode: (UInt64, UInt64) = (0, 0)
    private let wakeFD: Int32
    private let stopping = Atomic<Bool>(false)
    private let inbox = Mutex<[(conn: Int, text: String)]>([])
    private var conns: [Int: Connection] = [:]
    private var nextID = 1
    private var groupID: UInt32? = nil
    /// Signalled when the loop has closed everything and removed the socket.
    package let finished = Completion()

    private final class Connection {
        let id: Int
        let fd: Int32
        let uid: UInt32
        let mayRead: Bool
        var input: [UInt8] = []
        var output: [UInt8] = []
        var outputOffset = 0
        var waiting = false
        var subscriber: Int? = nil
        var closeWhenFlushed = false
        /// The client shut down its sending side: answer what it sent, then close.
        var readClosed = false
        var readDeadline: UInt64
        var writeSince: UInt64? = nil
        var lastActive: UInt64

        init(id: Int, fd: Int32, uid: UInt32, mayRead: Bool, now: UInt64, readDeadline: UInt64) {
            self.id = id
            self.fd = fd
            self.uid = uid
            self.mayRead = mayRead
            lastActive = now
            self.readDeadline = readDeadline
        }

        var hasOutput: Bool { outputOffset < output.count }
    }

    package init(
        config: ControlConfig, bus: EventBus<DaemonEvent>, hub: EventHub, logger: Logger, limits: ControlLimits = ControlLimits(),
        version: String, clocks: Clocks
    ) throws {
        self.config = config
        self.bus = bus
        self.hub = hub
        self.logger = logger
        self.limits = limits
        self.version = version
        monotonic = clocks.monotonic
        wall = clocks.wall
        started = clocks.monotonic()
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
        guard fd >= 0 else { throw ControlSetupError(description: "eventfd: \(String(cString: strerror(errno)))") }
        wakeFD = fd
    }

    deinit { close(wakeFD) }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    // MARK: - Setup

    /// Creates the socket (and its directory), refusing a live daemon's socket, symlinks and non-sockets,
    /// replacing a stale socket. Must run before any other thread exists (it sets the umask for bind).
    package func open() throws(ControlSetupError) {
        let path = config.socket
        func fail(_ m: String) -> ControlSetupError { ControlSetupError(description: "control socket \(path): \(m)") }
        if let gid = Self.resolveGroup(config.group) {
            groupID = gid
        } else {
            logger.notice("control group \(config.group) does not exist; only root can use the control socket")
        }
        // The directory: created 0750 (group: the control group) if missing; never a symlink.
        let dir = String(path[..<path.lastIndex(of: "/")!])
        if !dir.isEmpty {
            var st = stat()
            if lstat(dir, &st) != 0 {
                guard errno == ENOENT else { throw fail("cannot inspect \(dir): \(String(cString: strerror(errno)))") }
                try Self.makeDirectories(dir, mode: 0o750, group: groupID).get()
            } else if st.st_mode & S_IFMT == S_IFLNK {
                throw fail("\(dir) is a symlink; refusing to follow it")
            } else if st.st_mode & S_IFMT != S_IFDIR {
                throw fail("\(dir) is not a directory")
            }
        }
        // The path itself: nothing, or a socket nobody answers on (stale, replaced).
        var st = stat()
        if lstat(path, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFLNK: throw fail("is a symlink; refusing to follow it (remove it if it is not needed)")
            case S_IFSOCK:
                if Self.answers(path) { throw fail("another rnmd is already running (the socket accepts connections)") }
                guard unlink(path) == 0 else { throw fail("cannot remove the stale socket: \(String(cString: strerror(errno)))") }
                logger.notice("replaced a stale control socket", metadata: ["socket": "\(path)"])
            default:
                throw fail("exists and is not a socket")
            }
        } else if errno != ENOENT {
            throw fail("cannot inspect: \(String(cString: strerror(errno)))")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw fail("socket: \(String(cString: strerror(errno)))") }
        // Mode 0660 from the start (umask around bind), then owner root and the control group.
        guard RNM_bind_unix(fd, path, 0o660) == 0 else {
            let e = errno
            close(fd)
            throw fail("bind: \(String(cString: strerror(e)))")
        }
        if lchown(path, 0, groupID ?? 0) != 0 {
            logger.warning("cannot set the control socket's group: \(String(cString: strerror(errno)))")
        }
        guard listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw fail("listen: \(String(cString: strerror(e)))")
        }
        var mine = stat()
        _ = lstat(path, &mine)
        socketInode = (UInt64(mine.st_dev), UInt64(mine.st_ino))
        listener = fd
    }

    static func resolveGroup(_ group: String) -> UInt32? {
        if let n = UInt32(group) { return n }
        var gid: UInt32 = 0
        return RNM_group_id(group, &gid) == 0 ? gid : nil
    }

    /// mkdir -p; the last component gets `mode` and `group`, missing parents 0755.
    static func makeDirectories(_ dir: String, mode: mode_t, group: UInt32?) -> Result<Void, ControlSetupError> {
        var path = ""
        let parts = dir.split(separator: "/")
        for (i, part) in parts.enumerated() {
            path += "/" + part
            let last = i == parts.count - 1
            if mkdir(path, last ? mode : 0o755) != 0 && errno != EEXIST {
                return .failure(ControlSetupError(description: "cannot create \(path): \(String(cString: strerror(errno)))"))
            }
            if last {
                _ = chmod(path, mode)  // mkdir applies the umask
                if let group { _ = chown(path, 0, group) }
            }
        }
        return .success(())
    }

    /// Whether something accepts connections on a socket path (a live daemon).
    static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.prefix(107).enumerated() { raw[i] = b }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return r == 0
    }

    // MARK: - Lifecycle

    package func start() {
        hub.setWake { [self] in wake() }
        Threads.detach(name: "rnm-control") { [self] in run() }
    }

    /// Stops the loop; the thread closes every connection and removes the socket.
    package func stop() {
        stopping.store(true, ordering: .releasing)
        wake()
    }

    private func run() {
        while !stopping.load(ordering: .acquiring) {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            let order = conns.keys.sorted()
            for id in order {
                let c = conns[id]!
                var ev: Int16 = c.readClosed ? 0 : Int16(POLLIN)
                if c.hasOutput { ev |= Int16(POLLOUT) }
                fds.append(pollfd(fd: c.fd, events: ev, revents: 0))
            }
            let r = poll(&fds, nfds_t(fds.count), pollTimeout())
            if r < 0 && errno != EINTR { break }
            let now = monotonic()
            if fds[1].revents != 0 {
                var v: UInt64 = 0
                _ = read(wakeFD, &v, 8)
                drainInbox()
                feedSubscribers()
            }
            for (k, id) in order.enumerated() {
                guard let c = conns[id] else { continue }
                let re = fds[k + 2].revents
                if re & Int16(POLLOUT) != 0 { flush(c, now: now) }
                if re & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 { readFrom(c, now: now) }
            }
            if fds[0].revents & Int16(POLLIN) != 0 { acceptAll(now: now) }
            enforceDeadlines(now: monotonic())
            feedSubscribers()
        }
        for c in Array(conns.values) { drop(c) }
        if listener >= 0 { close(listener) }
        // Remove the socket only if it is still ours (not replaced by another instance meanwhile).
        var st = stat()
        if lstat(config.socket, &st) == 0, (UInt64(st.st_dev), UInt64(st.st_ino)) == socketInode { unlink(config.socket) }
        finished.signal()
    }

    private func pollTimeout() -> Int32 {
        let now = monotonic()
        var next: UInt64? = nil
        for c in conns.values {
            if c.subscriber == nil, !c.waiting { next = min(next ?? .max, c.readDeadline) }
            if let w = c.writeSince { next = min(next ?? .max, w + Self.ns(limits.writeDeadline)) }
        }
        guard let next else { return -1 }
        return next <= now ? 0 : Int32(min((next - now) / 1_000_000 + 1, 60_000))
    }

    static func ns(_ d: Duration) -> UInt64 { UInt64(d.microseconds) * 1000 }

    // MARK: - Connections

    private func acceptAll(now: UInt64) {
        while true {
            let fd = RNM_accept_nonblocking(listener)
            if fd < 0 { return }
            var pid: UInt32 = 0
            var uid: UInt32 = .max
            var gid: UInt32 = .max
            _ = RNM_peer_cred(fd, &pid, &uid, &gid)
            var groups = [UInt32](repeating: 0, count: 256)
            let n = RNM_peer_groups(fd, &groups, 256)
            let member = groupID.map { g in gid == g || (n > 0 && groups[0..<Int(n)].contains(g)) } ?? false
            if conns.count >= limits.maxConnections, !evictIdle() {
                _ = "\(ControlProtocol.failure(id: .null, ControlError("busy", "too many connections")))\n".withCString { write(fd, $0, strlen($0)) }
                close(fd)
                continue
            }
            let c = Connection(
                id: nextID, fd: fd, uid: uid, mayRead: uid == 0 || member, now: now,
                readDeadline: now + Self.ns(limits.readDeadline))
            nextID += 1
            conns[c.id] = c
        }
    }

    /// Closes the longest-idle connection that is neither waiting for an answer nor subscribed.
    private func evictIdle() -> Bool {
        guard let victim = conns.values.filter({ !$0.waiting && $0.subscriber == nil }).min(by: { $0.lastActive < $1.lastActive }) else {
            return false
        }
        drop(victim)
        return true
    }

    private func drop(_ c: Connection) {
        if let s = c.subscriber { hub.unsubscribe(s) }
        close(c.fd)
        conns[c.id] = nil
    }

    private func readFrom(_ c: Connection, now: UInt64) {
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                // A subscriber's input is ignored; anyone else is held to the line limit.
                if c.subscriber == nil && !c.closeWhenFlushed {
                    c.input.append(contentsOf: buf[0..<n])
                    c.lastActive = now
                }
                if c.input.count > ControlProtocol.maxLineBytes + 1 && !c.input.contains(0x0A) { break }
                continue
            }
            if n == 0 {
                c.readClosed = true
                break
            }
            if errno == EAGAIN { break }
            if errno != EINTR {
                drop(c)
                return
            }
        }
        processInput(c, now: now)
        finishIfDone(c, now: now)
    }

    /// A half-closed client is done once nothing is pending for it; a subscriber is done when it hangs up.
    private func finishIfDone(_ c: Connection, now: UInt64) {
        guard c.readClosed, conns[c.id] != nil else { return }
        if c.subscriber != nil {
            drop(c)
        } else if !c.waiting {
            c.input = []
            c.closeWhenFlushed = true
            flush(c, now: now)
        }
    }

    private func processInput(_ c: Connection, now: UInt64) {
        while !c.waiting, c.subscriber == nil, !c.closeWhenFlushed, conns[c.id] != nil {
            guard let nl = c.input.firstIndex(of: 0x0A) else {
                if c.input.count > ControlProtocol.maxLineBytes {
                    hub.countRequest(verb: "-", result: "too_long")
                    send(c, ControlProtocol.failure(id: .null, ControlError(
                        "too_long", "a request line is at most \(ControlProtocol.maxLineBytes) bytes")))
                    c.input = []
                    c.closeWhenFlushed = true
                    flush(c, now: now)
                }
                return
            }
            let line = Array(c.input[..<nl])
            c.input.removeSubrange(...nl)
            if line.count > ControlProtocol.maxLineBytes {
                send(c, ControlProtocol.failure(id: .null, ControlError("too_long", "a request line is at most \(ControlProtocol.maxLineBytes) bytes")))
                c.closeWhenFlushed = true
                flush(c, now: now)
                return
            }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            handle(line, on: c, now: now)
        }
    }

    private func handle(_ line: [UInt8], on c: Connection, now: UInt64) {
        let request: ControlRequest
        switch ControlProtocol.parse(line) {
        case .failure(let f):
            hub.countRequest(verb: "-", result: f.error.code)
            send(c, f.plain ? "error: \(f.error.message)" : ControlProtocol.failure(id: f.id, f.error))
            c.readDeadline = now + Self.ns(limits.readDeadline)
            return
        case .success(let r):
            request = r
        }
        let cmd = request.command
        guard cmd.isMutating ? c.uid == 0 : c.mayRead else {
            hub.countRequest(verb: cmd.verb, result: "permission_denied")
            hub.countRejected()
            let who = cmd.isMutating ? "root" : "root or members of group \(config.group)"
            let e = ControlError("permission_denied", "\(cmd.verb) is for \(who)")
            send(c, request.plain ? "error: \(e.message)" : ControlProtocol.failure(id: request.id, e))
            c.readDeadline = now + Self.ns(limits.readDeadline)
            return
        }
        switch cmd {
        case .ping:
            hub.countRequest(verb: "ping", result: "ok")
            let up = (monotonic() - started) / 1_000_000
            if request.plain {
                send(c, "pong (up \(Durations.format(ms: up)))")
            } else {
                send(c, ControlProtocol.success(id: request.id, .object([
                    ("pong", .bool(true)), ("uptime_ms", .number(Double(up))), ("version", .string(version)),
                ])))
            }
            c.readDeadline = now + Self.ns(limits.readDeadline)
        case .events:
            hub.countRequest(verb: "events", result: "ok")
            c.subscriber = hub.subscribe()
            send(c, ControlProtocol.success(id: request.id, .object([("subscribed", .bool(true))])))
        default:
            c.waiting = true
            let id = c.id
            let rid = request.id
            let plain = request.plain
            let verb = cmd.verb
            let hub = hub
            let sent = bus.send(.control(cmd, reply: { [self] result in
                switch result {
                case .success(let json):
                    hub.countRequest(verb: verb, result: "ok")
                    deliver(id, plain ? Self.plainText(cmd, json) : ControlProtocol.success(id: rid, json))
                case .failure(let e):
                    hub.countRequest(verb: verb, result: e.code)
                    deliver(id, plain ? "error: \(e.message)" : ControlProtocol.failure(id: rid, e))
                }
            }), weight: 0)
            if !sent {
                c.waiting = false
                send(c, ControlProtocol.failure(id: rid, ControlError("shutting_down", "rnmd is stopping")))
            }
        }
    }

    static func plainText(_ cmd: ControlCommand, _ json: JSON) -> String {
        switch cmd {
        case .status: return ControlText.status(json)
        case .reload: return "reloaded: generation \(json["generation"]?.int ?? 0)" + (json["changed"]?.bool == false ? " (unchanged)" : "")
        default: return json.text
        }
    }

    /// From any thread: an answer for a connection.
    private func deliver(_ conn: Int, _ text: String) {
        inbox.withLock { $0.append((conn, text)) }
        wake()
    }

    private func drainInbox() {
        let items = inbox.withLock { q -> [(conn: Int, text: String)] in
            defer { q.removeAll() }
            return q
        }
        let now = monotonic()
        for (id, text) in items {
            guard let c = conns[id] else { continue }  // gone meanwhile
            c.waiting = false
            send(c, text)
            c.readDeadline = now + Self.ns(limits.readDeadline)
            processInput(c, now: now)
            finishIfDone(c, now: now)
        }
    }

    private func feedSubscribers() {
        let stamp = WallTime.rfc3339(epochNanos: wall())
        for c in conns.values {
            guard let s = c.subscriber, c.output.count - c.outputOffset < 64 * 1024 else { continue }
            let lines = hub.take(s, max: 256, now: stamp)
            for l in lines { send(c, l, flushNow: false) }
            if !lines.isEmpty { flush(c, now: monotonic()) }
        }
    }

    private func send(_ c: Connection, _ text: String, flushNow: Bool = true) {
        if c.outputOffset > 0 && c.outputOffset == c.output.count {
            c.output.removeAll(keepingCapacity: true)
            c.outputOffset = 0
        }
        c.output.append(contentsOf: text.utf8)
        c.output.append(0x0A)
        if flushNow { flush(c, now: monotonic()) }
    }

    private func flush(_ c: Connection, now: UInt64) {
        while c.hasOutput {
            let n = c.output.withUnsafeBytes {
                Glibc.send(c.fd, $0.baseAddress! + c.outputOffset, $0.count - c.outputOffset, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if n > 0 {
                c.outputOffset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno != EAGAIN {
                drop(c)
                return
            }
            break
        }
        if c.hasOutput {
            if c.writeSince == nil { c.writeSince = now }
        } else {
            c.writeSince = nil
            c.output.removeAll(keepingCapacity: c.output.count < 1 << 20)
            c.outputOffset = 0
            if c.closeWhenFlushed { drop(c) }
        }
    }

    private func enforceDeadlines(now: UInt64) {
        for c in Array(conns.values) {
            if let w = c.writeSince, now >= w + Self.ns(limits.writeDeadline) {
                if c.subscriber != nil {
                    // A slow subscriber keeps its connection; its queue in the hub drops its oldest events.
                    c.writeSince = now
                    continue
                }
                drop(c)
                continue
            }
            if c.subscriber == nil, !c.waiting, !c.hasOutput, now >= c.readDeadline { drop(c) }
        }
    }
}
