/// An IPv4 address, stored in host order (`0xC0A80101` is 192.168.1.1).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Network-order bytes, as the kernel carries them.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        var v: UInt32 = 0
        for b in bytes { v = v << 8 | UInt32(b) }
        value = v
    }

    /// Strict dotted quad: four decimal octets, no leading zeros (they are octal to some parsers).
    public init?(_ text: Substring) {
        var octets = 0
        var acc: UInt32 = 0
        var current: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for ch in text.utf8 {
            if ch == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                acc = acc << 8 | current
                octets += 1
                current = 0
                digits = 0
                leadingZero = false
            } else if ch >= UInt8(ascii: "0"), ch <= UInt8(ascii: "9") {
                if leadingZero { return nil }
                if digits == 0, ch == UInt8(ascii: "0") { leadingZero = true }
                current = current * 10 + UInt32(ch - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, current <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets == 3 else { return nil }
        value = acc << 8 | current
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    /// The four bytes in network order.
    public var bytes: [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    /// 169.254.0.0/16.
    public var isLinkLocal: Bool { value & 0xFFFF_0000 == 0xA9FE_0000 }
    /// 127.0.0.0/8.
    public var isLoopback: Bool { value >> 24 == 127 }

    public var description: String {
        "\(value >> 24).\((value >> 16) & 0xFF).\((value >> 8) & 0xFF).\(value & 0xFF)"
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }
}

/// An IPv6 address as two 64-bit halves in host order.
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Network-order bytes, as the kernel carries them.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var h: UInt64 = 0
        var l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        high = h
        low = l
    }

    /// RFC 4291 text: hex groups, one `::`, an optional trailing dotted quad. No zone index.
    public init?(_ text: Substring) {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8.count <= 45 else { return nil }
        var groups: [UInt16] = []
        var gapAt: Int? = nil
        var i = 0
        if utf8.starts(with: [UInt8(ascii: ":"), UInt8(ascii: ":")]) {
            gapAt = 0
            i = 2
        } else if utf8[0] == UInt8(ascii: ":") {
            return nil
        }
        while i < utf8.count {
            // Parse one group (or a trailing IPv4 dotted quad).
            var j = i
            var v: UInt32 = 0
            var n = 0
            while j < utf8.count, let d = Self.hexValue(utf8[j]) {
                v = v << 4 | UInt32(d)
                n += 1
                j += 1
                if n > 4 { return nil }
            }
            if j < utf8.count, utf8[j] == UInt8(ascii: ".") {
                // Embedded IPv4 in the last 32 bits.
                guard let v4 = IPv4Address(Substring(decoding: utf8[i...], as: UTF8.self)) else { return nil }
                groups.append(UInt16(v4.value >> 16))
                groups.append(UInt16(v4.value & 0xFFFF))
                i = utf8.count
                break
            }
            guard n > 0 else { return nil }
            groups.append(UInt16(v))
            if j == utf8.count {
                i = j
                break
            }
            guard utf8[j] == UInt8(ascii: ":") else { return nil }
            if j + 1 < utf8.count, utf8[j + 1] == UInt8(ascii: ":") {
                guard gapAt == nil else { return nil }
                gapAt = groups.count
                i = j + 2
            } else {
                i = j + 1
                guard i < utf8.count else { return nil }  // trailing single ':'
            }
        }
        if let gap = gapAt {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: [UInt16](repeating: 0, count: 8 - groups.count), at: gap)
        }
        guard groups.count == 8 else { return nil }
        var h: UInt64 = 0
        var l: UInt64 = 0
        for k in 0..<4 { h = h << 16 | UInt64(groups[k]) }
        for k in 4..<8 { l = l << 16 | UInt64(groups[k]) }
        high = h
        low = l
    }

    public init?(_ text: String) { self.init(Substring(text)) }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The sixteen bytes in network order.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for k in 0..<8 {
            out[k] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(k)))
            out[k + 8] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(k)))
        }
        return out
    }

    /// fe80::/10.
    public var isLinkLocal: Bool { high >> 54 == 0x3FA }
    /// ::1.
    public var isLoopback: Bool { high == 0 && low == 1 }

    private var groups: [UInt16] {
        (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64($0))) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64($0))) }
    }

    /// RFC 5952 canonical text: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::`.
    public var description: String {
        let g = groups
        var bestStart = -1
        var bestLen = 0
        var k = 0
        while k < 8 {
            if g[k] == 0 {
                var e = k
                while e < 8, g[e] == 0 { e += 1 }
                if e - k > bestLen {
                    bestStart = k
                    bestLen = e - k
                }
                k = e
            } else {
                k += 1
            }
        }
        if bestLen < 2 { bestStart = -1 }
        var out = ""
        var idx = 0
        while idx < 8 {
            if idx == bestStart {
                out += "::"
                idx += bestLen
                continue
            }
            if !out.isEmpty, !out.hasSuffix(":") { out += ":" }
            out += String(g[idx], radix: 16)
            idx += 1
        }
        return out
    }

    public static func < (lhs: IPv6Address, rhs: IPv6Address) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    public init?(_ text: some StringProtocol) {
        let s = Substring(text)
        if s.utf8.contains(UInt8(ascii: ":")) {
            guard let a = IPv6Address(s) else { return nil }
            self = .v6(a)
        } else {
            guard let a = IPv4Address(s) else { return nil }
            self = .v4(a)
        }
    }

    /// Kernel (network-order) bytes: 4 for IPv4, 16 for IPv6.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4: self = .v4(IPv4Address(bytes: bytes)!)
        case 16: self = .v6(IPv6Address(bytes: bytes)!)
        default: return nil
        }
    }

    public var family: IPFamily {
        switch self {
        case .v4: .v4
        case .v6: .v6
        }
    }

    public var isLinkLocal: Bool {
        switch self {
        case .v4(let a): a.isLinkLocal
        case .v6(let a): a.isLinkLocal
        }
    }

    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): a.bytes
        case .v6(let a): a.bytes
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)): a < b
        case (.v6(let a), .v6(let b)): a < b
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}

/// Address family.
public enum IPFamily: String, Hashable, Sendable {
    case v4 = "ipv4"
    case v6 = "ipv6"

    public var maxPrefixLength: UInt8 { self == .v4 ? 32 : 128 }
}

/// An address with a prefix length, as written in config (`192.168.1.1/24`) and as the kernel reports it.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var length: UInt8

    public init(address: IPAddress, length: UInt8) {
        self.address = address
        self.length = length
    }

    /// `ADDR` (a host prefix) or `ADDR/LEN`.
    public init?(_ text: some StringProtocol) {
        let s = Substring(text)
        if let slash = s.firstIndex(of: "/") {
            guard let a = IPAddress(s[..<slash]) else { return nil }
            let lenText = s[s.index(after: slash)...]
            guard !lenText.isEmpty, lenText.count <= 3, lenText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let len = UInt8(lenText), len <= a.family.maxPrefixLength,
                !(lenText.count > 1 && lenText.first == "0")
            else { return nil }
            address = a
            length = len
        } else {
            guard let a = IPAddress(s) else { return nil }
            address = a
            length = a.family.maxPrefixLength
        }
    }

    public var description: String { "\(address)/\(length)" }

    /// The prefix with its host bits cleared (`10.1.2.3/8` → `10.0.0.0/8`); hosts stay as they are.
    public var network: IPPrefix {
        switch SetElement(range: self) {
        case .ipv4Range(let lo, _): IPPrefix(address: .v4(lo), length: length)
        case .ipv6Range(let lo, _): IPPrefix(address: .v6(lo), length: length)
        default: self
        }
    }

    /// `192.0.2.1` for a host, `10.0.0.0/8` otherwise.
    public var compactDescription: String {
        length == address.family.maxPrefixLength ? address.description : description
    }
}
