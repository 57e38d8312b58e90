/// An incremental HTTP/1.1 response reader for the Docker Engine API on its Unix socket: the head, then the
/// body as it arrives — length-delimited, chunked (decoded incrementally, as `/events` streams it) or until
/// the connection closes. Every size is capped, so a hostile or broken peer costs bounded memory.
public struct HTTPResponseReader {
    public struct Limits: Sendable {
        public var header = 64 * 1024
        public var body = 64 * 1024 * 1024
        public var chunk = 16 * 1024 * 1024

        public init(header: Int = 64 * 1024, body: Int = 64 * 1024 * 1024, chunk: Int = 16 * 1024 * 1024) {
            self.header = header
            self.body = body
            self.chunk = chunk
        }
    }

    public struct Head: Equatable, Sendable {
        public var status: Int
        public var headers: [(String, String)]

        public static func == (a: Head, b: Head) -> Bool {
            a.status == b.status && a.headers.elementsEqual(b.headers) { $0 == $1 }
        }

        /// The first header of that name (case-insensitive).
        public func header(_ name: String) -> String? {
            let n = name.lowercased()
            return headers.first { $0.0.lowercased() == n }?.1
        }
    }

    public enum Event: Equatable, Sendable {
        case head(Head)
        case body([UInt8])
        case end
    }

    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    private enum State {
        case head
        case length(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case done
    }

    private var state = State.head
    private var buffer: [UInt8] = []
    private var bodySeen = 0
    private let limits: Limits

    public init(limits: Limits = Limits()) { self.limits = limits }

    public var isDone: Bool { if case .done = state { true } else { false } }

    /// Feeds bytes read from the socket; returns what they completed.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(Failure) -> [Event] {
        buffer.append(contentsOf: bytes)
        var out: [Event] = []
        while true {
            switch state {
            case .done:
                if !buffer.isEmpty { throw Failure("data after the end of the response") }
                return out
            case .head:
                guard let end = Self.find(buffer, [13, 10, 13, 10]) else {
                    if buffer.count > limits.header { throw Failure("response head larger than \(limits.header) bytes") }
                    return out
                }
                guard end <= limits.header else { throw Failure("response head larger than \(limits.header) bytes") }
                let head = try Self.parseHead(buffer[..<end])
                buffer.removeFirst(end + 4)
                out.append(.head(head))
                if head.status == 204 || head.status == 304 || (100..<200).contains(head.status) {
                    state = .done
                    out.append(.end)
                } else if head.header("transfer-encoding")?.lowercased().contains("chunked") == true {
                    state = .chunkSize
                } else if let l = head.header("content-length") {
                    guard let n = Int(l.trimmingSpaces), n >= 0 else { throw Failure("bad Content-Length \(l.debugDescription)") }
                    guard n <= limits.body else { throw Failure("body of \(n) bytes is larger than \(limits.body)") }
                    state = .length(remaining: n)
                    if n == 0 {
                        state = .done
                        out.append(.end)
                    }
                } else {
                    state = .untilClose
                }
            case .length(let remaining):
                guard !buffer.isEmpty else { return out }
                let n = min(remaining, buffer.count)
                out.append(.body(Array(buffer.prefix(n))))
                buffer.removeFirst(n)
                if n == remaining {
                    state = .done
                    out.append(.end)
                } else {
                    state = .length(remaining: remaining - n)
                }
            case .chunkSize:
                guard let end = Self.find(buffer, [13, 10]) else {
                    if buffer.count > 1024 { throw Failure("chunk size line longer than 1024 bytes") }
                    return out
                }
                // "1a2b;extension=x": the size is the hex digits before any extension.
                let line = buffer[..<end].prefix { $0 != UInt8(ascii: ";") }
                guard let size = Self.hex(line) else { throw Failure("bad chunk size line") }
                buffer.removeFirst(end + 2)
                if size == 0 {
                    state = .trailers
                } else {
                    guard size <= limits.chunk else { throw Failure("chunk of \(size) bytes is larger than \(limits.chunk)") }
                    try count(size)
                    state = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                guard !buffer.isEmpty else { return out }
                let n = min(remaining, buffer.count)
                out.append(.body(Array(buffer.prefix(n))))
                buffer.removeFirst(n)
                state = n == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - n)
            case .chunkDataEnd:
                guard buffer.count >= 2 else { return out }
                guard buffer[0] == 13, buffer[1] == 10 else { throw Failure("chunk not followed by CRLF") }
                buffer.removeFirst(2)
                state = .chunkSize
            case .trailers:
                guard let end = Self.find(buffer, [13, 10]) else {
                    if buffer.count > limits.header { throw Failure("trailers larger than \(limits.header) bytes") }
                    return out
                }
                buffer.removeFirst(end + 2)
                if end == 0 {
                    state = .done
                    out.append(.end)
                }
            case .untilClose:
                guard !buffer.isEmpty else { return out }
                try count(buffer.count)
                out.append(.body(buffer))
                buffer = []
            }
        }
    }

    /// The peer closed the connection: the end of an until-close body, else an error.
    public mutating func finish() throws(Failure) -> [Event] {
        switch state {
        case .done: return []
        case .untilClose:
            state = .done
            return [.end]
        case .head: throw Failure(buffer.isEmpty ? "connection closed before a response" : "connection closed in the response head")
        default: throw Failure("connection closed in the middle of the body")
        }
    }

    private mutating func count(_ n: Int) throws(Failure) {
        bodySeen += n
        // A stream (chunked, until close) is capped only per chunk: `/events` never ends by design.
        if case .untilClose = state, bodySeen > limits.body { throw Failure("body larger than \(limits.body) bytes") }
    }

    static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = 0
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == needle[0] {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    static func hex(_ digits: some Collection<UInt8>) -> Int? {
        var v = 0
        var n = 0
        for c in digits {
            let d: Int
            switch c {
            case 0x30...0x39: d = Int(c - 0x30)
            case 0x61...0x66: d = Int(c - 0x61 + 10)
            case 0x41...0x46: d = Int(c - 0x41 + 10)
            case 0x20, 0x09: continue
            default: return nil
            }
            n += 1
            guard n <= 15 else { return nil }
            v = v * 16 + d
        }
        return n == 0 ? nil : v
    }

    static func parseHead(_ bytes: ArraySlice<UInt8>) throws(Failure) -> Head {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Failure("response head is not UTF-8") }
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { throw Failure("empty response head") }
        let status = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]), (100...599).contains(code) else {
            throw Failure("bad status line")
        }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw Failure("bad header line") }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingSpaces))
        }
        return Head(status: code, headers: headers)
    }
}

/// Splits a byte stream into newline-terminated lines (the `/events` body: one JSON object per line),
/// refusing a line longer than `maxLine`.
public struct LineSplitter {
    private var pending: [UInt8] = []
    public let maxLine: Int

    public init(maxLine: Int = 1 << 20) { self.maxLine = maxLine }

    public mutating func feed(_ bytes: [UInt8]) throws(HTTPResponseReader.Failure) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 10 {
            var line = pending
            line.append(contentsOf: bytes[start..<i])
            pending = []
            start = i + 1
            if !line.isEmpty { out.append(line) }
        }
        pending.append(contentsOf: bytes[start...])
        if pending.count > maxLine { throw HTTPResponseReader.Failure("event line longer than \(maxLine) bytes") }
        return out
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
