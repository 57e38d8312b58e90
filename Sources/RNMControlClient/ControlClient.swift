internal import Glibc
public import RNMCore

/// A blocking client for rnmd's control socket, for rnmctl and the tests. Every step (connect, write, each
/// read) is bounded by one overall deadline.
public struct ControlClient: Sendable {
    public var socket: String
    public var timeout: Duration

    public init(socket: String, timeout: Duration) {
        self.socket = socket
        self.timeout = timeout
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// No daemon there, or no permission to reach it.
        case connect(String)
        case timedOut(String)
        /// The daemon closed the connection or sent something that is not a response.
        case protocolError(String)

        public var description: String {
            switch self {
            case .connect(let m), .timedOut(let m), .protocolError(let m): m
            }
        }
    }

    /// Sends `request` and returns the raw response line and its parsed form.
    public func request(_ request: ControlRequest) throws(Failure) -> (line: String, json: JSON) {
        let conn = try Connection(path: socket, deadline: deadline())
        defer { conn.close() }
        try conn.write(request.line + "\n")
        guard let line = try conn.readLine() else { throw .protocolError("rnmd closed the connection without answering") }
        return (line, try Self.parse(line))
    }

    /// Sends `request` and hands every line after the first (the acknowledgement) to `onLine` until the daemon
    /// closes the connection or `onLine` returns false. Only the acknowledgement is bound by the timeout.
    public func stream(_ request: ControlRequest, ack: (String, JSON) -> Void, onLine: (String) -> Bool) throws(Failure) {
        let conn = try Connection(path: socket, deadline: deadline())
        defer { conn.close() }
        try conn.write(request.line + "\n")
        guard let first = try conn.readLine() else { throw .protocolError("rnmd closed the connection without answering") }
        ack(first, try Self.parse(first))
        conn.deadline = .max
        while let line = try conn.readLine() {
            if !onLine(line) { return }
        }
    }

    func deadline() -> UInt64 {
        let (s, a) = timeout.components
        return Self.now() + UInt64(max(s, 0)) * 1_000_000_000 + UInt64(max(a, 0) / 1_000_000_000)
    }

    static func parse(_ line: String) throws(Failure) -> JSON {
        do { return try JSON.parse(line, maxDepth: 64) } catch {
            throw .protocolError("unreadable answer from rnmd: \(error)")
        }
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    final class Connection {
        let fd: Int32
        var deadline: UInt64
        var buffer: [UInt8] = []
        let path: String

        init(path: String, deadline: UInt64) throws(Failure) {
            self.path = path
            self.deadline = deadline
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw .connect("socket: \(String(cString: strerror(errno)))") }
            self.fd = fd
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            guard path.utf8.count < 108 else {
                Glibc.close(fd)
                throw .connect("socket path too long: \(path)")
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if r != 0 {
                if errno == EINPROGRESS || errno == EAGAIN {
                    try wait(for: Int16(POLLOUT), what: "connecting")
                    var err: Int32 = 0
                    var len = socklen_t(4)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    if err != 0 {
                        Glibc.close(fd)
                        throw .connect("cannot connect to \(path): \(String(cString: strerror(err)))")
                    }
                } else {
                    let e = errno
                    Glibc.close(fd)
                    let hint = e == ENOENT || e == ECONNREFUSED ? " (is rnmd running?)" : e == EACCES ? " (root or the control group only)" : ""
                    throw .connect("cannot connect to \(path): \(String(cString: strerror(e)))\(hint)")
                }
            }
        }

        func close() { Glibc.close(fd) }

        func wait(for events: Int16, what: String) throws(Failure) {
            while true {
                let now = ControlClient.now()
                guard now < deadline else { throw .timedOut("no answer from rnmd at \(path) while \(what) (timed out)") }
                let ms = deadline == .max ? -1 : Int32(min((deadline - now) / 1_000_000 + 1, 3_600_000))
                var p = pollfd(fd: fd, events: events, revents: 0)
                let r = poll(&p, 1, ms)
                if r > 0 { return }
                if r < 0 && errno != EINTR { throw .protocolError("poll: \(String(cString: strerror(errno)))") }
            }
        }

        func write(_ text: String) throws(Failure) {
            let bytes = Array(text.utf8)
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
                if n > 0 {
                    off += n
                } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    try wait(for: Int16(POLLOUT), what: "sending")
                } else {
                    throw .protocolError("sending to rnmd: \(String(cString: strerror(errno)))")
                }
            }
        }

        /// The next line without its newline; nil at end of stream.
        func readLine() throws(Failure) -> String? {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                if let nl = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[..<nl], as: UTF8.self)
                    buffer.removeSubrange(...nl)
                    return line
                }
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 {
                    buffer += chunk[0..<n]
                } else if n == 0 {
                    return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self)
                } else if errno == EAGAIN || errno == EINTR {
                    try wait(for: Int16(POLLIN), what: "waiting for the answer")
                } else {
                    throw .protocolError("reading from rnmd: \(String(cString: strerror(errno)))")
                }
            }
        }
    }
}
