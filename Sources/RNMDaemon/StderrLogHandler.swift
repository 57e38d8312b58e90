internal import Glibc
public import Logging
import Synchronization

/// swift-log handler that writes one line per message to stderr.
///
/// Not a TTY (systemd, a pipe): every line starts with an sd-daemon `<N>` priority prefix, which journald
/// turns into the entry's priority. A TTY: a UTC timestamp and the level name instead.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let prefixed: Bool

    private static let writeLock = Mutex(())

    public init(label: String, level: Logger.Level = .info, syslogPrefixes: Bool? = nil) {
        self.label = label
        logLevel = level
        prefixed = syslogPrefixes ?? (isatty(2) == 0)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// sd-daemon(3) priorities.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var text = event.message.description
        if !merged.isEmpty {
            text += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.render($0.value))" }.joined(separator: " ")
        }
        var out = ""
        // One prefix per line: journald splits on newlines.
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if prefixed {
                out += "<\(Self.priority(event.level))>\(line)\n"
            } else {
                out += "\(Self.timestamp()) \(event.level): \(line)\n"
            }
        }
        Self.writeLock.withLock { _ in writeAll(2, out) }
    }

    private static func render(_ v: Logger.Metadata.Value) -> String {
        let s = v.description
        if s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) {
            var q = "\""
            for c in s {
                switch c {
                case "\"": q += "\\\""
                case "\\": q += "\\\\"
                case "\n": q += "\\n"
                default: q.append(c)
                }
            }
            return q + "\""
        }
        return s
    }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = tm()
        var secs = ts.tv_sec
        gmtime_r(&secs, &t)
        func pad(_ v: Int32, _ w: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let ms = pad(Int32(ts.tv_nsec / 1_000_000), 3)
        return "\(t.tm_year + 1900)-\(pad(t.tm_mon + 1))-\(pad(t.tm_mday))T\(pad(t.tm_hour)):\(pad(t.tm_min)):\(pad(t.tm_sec)).\(ms)Z"
    }
}
