internal import Glibc
import RNMDocker

/// Why talking to Docker stopped.
enum IOError: Error, CustomStringConvertible {
    /// The plugin is stopping.
    case stopped
    case failed(String)

    var description: String {
        switch self {
        case .stopped: "stopping"
        case .failed(let why): why
        }
    }

    static func errno(_ what: String) -> IOError { .failed("\(what): \(String(cString: strerror(Glibc.errno)))") }
}

/// One stream connection to a Unix socket. Every wait also watches `stop` (an eventfd), so a stop request
/// interrupts any read at once.
final class Connection {
    let fd: Int32
    private let stop: Int32

    init(path: String, stop: Int32) throws(IOError) {
        self.stop = stop
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .errno("socket") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw .failed("\(path): socket path too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = IOError.errno("connect \(path)")
            close(fd)
            throw e
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws(IOError) {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw .errno("send")
            }
            off += n
        }
    }

    /// The next bytes, nil at end of stream. Waits at most `timeoutMs` (-1: no limit).
    func receive(timeoutMs: Int32) throws(IOError) -> [UInt8]? {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        while true {
            let rc = poll(&fds, 2, timeoutMs)
            if rc < 0 {
                if Glibc.errno == EINTR { continue }
                throw .errno("poll")
            }
            if rc == 0 { throw .failed("no answer within \(timeoutMs) ms") }
            if fds[1].revents != 0 { throw .stopped }
            break
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw .errno("recv")
            }
            if n == 0 { return nil }
            return Array(buffer[..<n])
        }
    }

    /// Waits `ms` or until `stop` is signalled (then throws `.stopped`).
    static func sleep(ms: Int32, stop: Int32) throws(IOError) {
        var fds = [pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        let rc = poll(&fds, 1, ms)
        if rc > 0 { throw .stopped }
    }
}

/// HTTP/1.1 GETs over the Docker socket: one connection per request (`Connection: close`), the event stream
/// on a connection of its own.
struct DockerClient {
    let socket: String
    let stop: Int32

    static func request(_ path: String) -> String {
        "GET \(path) HTTP/1.1\r\nHost: docker\r\nUser-Agent: rnm-docker\r\nConnection: close\r\n\r\n"
    }

    /// A whole response: status and body.
    func get(_ path: String, timeoutMs: Int32 = 10_000) throws(IOError) -> (status: Int, body: [UInt8]) {
        let c = try Connection(path: socket, stop: stop)
        try c.send(Self.request(path))
        var reader = HTTPResponseReader()
        var status = 0
        var body: [UInt8] = []
        while true {
            let events: [HTTPResponseReader.Event]
            do {
                if let bytes = try c.receive(timeoutMs: timeoutMs) {
                    events = try reader.feed(bytes)
                } else {
                    events = try reader.finish()
                }
            } catch let e as HTTPResponseReader.Failure {
                throw .failed("GET \(path): \(e)")
            } catch let e as IOError {
                throw e
            } catch {
                throw .failed("GET \(path): \(error)")
            }
            for e in events {
                switch e {
                case .head(let h): status = h.status
                case .body(let b): body += b
                case .end: return (status, body)
                }
            }
        }
    }

    /// Streams `path` (chunked, one JSON object per line) and hands each line over until the stream ends
    /// (an error) or the plugin stops.
    func stream(_ path: String, onLine: ([UInt8]) throws(IOError) -> Void) throws(IOError) {
        let c = try Connection(path: socket, stop: stop)
        try c.send(Self.request(path))
        var reader = HTTPResponseReader()
        var lines = LineSplitter()
        while true {
            do {
                guard let bytes = try c.receive(timeoutMs: -1) else {
                    _ = try reader.finish()
                    throw IOError.failed("the event stream ended")
                }
                for e in try reader.feed(bytes) {
                    switch e {
                    case .head(let h):
                        guard h.status == 200 else { throw IOError.failed("GET /events: HTTP \(h.status)") }
                    case .body(let b):
                        for line in try lines.feed(b) { try onLine(line) }
                    case .end:
                        throw IOError.failed("the event stream ended")
                    }
                }
            } catch let e as IOError {
                throw e
            } catch {
                throw .failed("event stream: \(error)")
            }
        }
    }
}
