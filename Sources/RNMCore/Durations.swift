/// Durations as written in config and commands: `90s`, `30m`, `1h30m`, `2d`, `1w`, or plain seconds.
public enum Durations {
    /// Milliseconds, or nil with the reason.
    public static func parse(_ text: String) -> Result<UInt64, DurationError> {
        let s = Array(text.utf8)
        guard !s.isEmpty else { return .failure(DurationError(text: text, reason: "empty")) }
        if s.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard s.count <= 9, let v = UInt64(text) else { return .failure(DurationError(text: text, reason: "too large")) }
            return check(v * 1000, text)
        }
        var total: UInt64 = 0
        var i = 0
        var lastUnit = -1
        while i < s.count {
            var n: UInt64 = 0
            var digits = 0
            while i < s.count, s[i] >= 0x30, s[i] <= 0x39 {
                n = n * 10 + UInt64(s[i] - 0x30)
                digits += 1
                i += 1
                if digits > 9 { return .failure(DurationError(text: text, reason: "too large")) }
            }
            guard digits > 0 else { return .failure(DurationError(text: text, reason: "expected a number")) }
            var unit = ""
            while i < s.count, s[i] >= 0x61, s[i] <= 0x7A {
                unit.unicodeScalars.append(Unicode.Scalar(s[i]))
                i += 1
            }
            let table: [(String, UInt64)] = [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
            guard let rank = table.firstIndex(where: { $0.0 == unit }) else {
                return .failure(DurationError(text: text, reason: unit.isEmpty ? "missing a unit (s, m, h, d, w)" : "unknown unit \"\(unit)\""))
            }
            guard rank > lastUnit else {
                return .failure(DurationError(text: text, reason: "units must go from large to small, each once"))
            }
            lastUnit = rank
            total += n * table[rank].1
        }
        return check(total, text)
    }

    private static func check(_ ms: UInt64, _ text: String) -> Result<UInt64, DurationError> {
        if ms == 0 { return .failure(DurationError(text: text, reason: "must be more than zero")) }
        if ms > 365 * 86_400_000 { return .failure(DurationError(text: text, reason: "at most 365 days")) }
        return .success(ms)
    }

    /// `1h2m3s`-style text for display (drops zero parts; sub-second values as ms).
    public static func format(ms: UInt64) -> String {
        if ms < 1000 { return "\(ms)ms" }
        var s = ms / 1000
        var out = ""
        for (unit, size) in [("d", UInt64(86400)), ("h", 3600), ("m", 60)] where s >= size {
            out += "\(s / size)\(unit)"
            s %= size
        }
        if s > 0 || out.isEmpty { out += "\(s)s" }
        return out
    }
}

public struct DurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public var reason: String
    public var description: String { "invalid duration \(YAMLNode.quoted(text)): \(reason) (e.g. 90s, 30m, 1h30m, 2d)" }
}
