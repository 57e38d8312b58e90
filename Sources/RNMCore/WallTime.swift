/// Wall-clock time as the daemon reports it: nanoseconds since the Unix epoch, printed as RFC 3339 UTC.
public enum WallTime {
    /// `2026-11-25T23:59:59.123Z`.
    public static func rfc3339(epochNanos: UInt64) -> String {
        let ms = epochNanos / 1_000_000
        let secs = Int64(ms / 1000)
        var days = secs / 86400
        var rem = secs % 86400
        if rem < 0 {
            rem += 86400
            days -= 1
        }
        // Civil date from days since 1970-01-01 (proleptic Gregorian).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        var y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        if m <= 2 { y += 1 }
        func pad(_ v: Int64, _ w: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m))-\(pad(d))T\(pad(rem / 3600)):\(pad(rem % 3600 / 60)):\(pad(rem % 60)).\(pad(Int64(ms % 1000), 3))Z"
    }
}

/// The on-disk form of manual entries: JSON with wall-clock expiry times, so that a restart (monotonic time
/// starts over) keeps each entry's remaining lifetime, and expired ones are not restored.
public enum ManualStore {
    public static let version = 1

    /// `{"version":1,"entries":[{"set":"…","element":"…","expires":"<epoch seconds>"},…]}` (no `expires`:
    /// permanent), sorted for stable files.
    public static func encode(_ manual: [String: [IPPrefix: Deadline]], monoNow: UInt64, wallNow: UInt64) -> String {
        var entries: [JSON] = []
        for (set, items) in manual.sorted(by: { $0.key < $1.key }) {
            for (p, d) in items.sorted(by: { SetElement(range: $0.key) < SetElement(range: $1.key) }) {
                var pairs: [(String, JSON)] = [("set", .string(set)), ("element", .string(p.compactDescription))]
                if d != .never {
                    guard d > monoNow else { continue }  // already expired
                    let wall = wallNow + (d - monoNow)
                    pairs.append(("expires_ms", .number(Double(wall / 1_000_000))))
                }
                entries.append(.object(pairs))
            }
        }
        return JSON.object([("version", .int(version)), ("entries", .array(entries))]).text + "\n"
    }

    public struct DecodeResult: Equatable, Sendable {
        public var entries: [String: [IPPrefix: Deadline]] = [:]
        /// Entries that had expired while the daemon was not running.
        public var expired = 0
    }

    public static func decode(_ bytes: [UInt8], monoNow: UInt64, wallNow: UInt64) throws(ControlError) -> DecodeResult {
        let value: JSON
        do { value = try JSON.parse(bytes, maxDepth: 4) } catch { throw ControlError("corrupt_state", error.description) }
        guard value["version"]?.int == version, let list = value["entries"]?.array else {
            throw ControlError("corrupt_state", "expected {\"version\":\(version),\"entries\":[…]}")
        }
        var out = DecodeResult()
        for item in list {
            guard let set = item["set"]?.string, Names.setNameProblem(set) == nil,
                let text = item["element"]?.string, let p = IPPrefix(text)
            else { throw ControlError("corrupt_state", "bad entry \(item.text.prefix(120))") }
            var deadline = Deadline.never
            if let e = item["expires_ms"] {
                guard let ms = e.number, ms >= 0 else { throw ControlError("corrupt_state", "bad expires_ms in \(item.text.prefix(120))") }
                let wall = UInt64(ms) * 1_000_000
                if wall <= wallNow {
                    out.expired += 1
                    continue
                }
                deadline = monoNow + (wall - wallNow)
            }
            out.entries[set, default: [:]][p] = deadline
        }
        return out
    }
}
