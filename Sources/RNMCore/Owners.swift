/// Who wants an element in a set. A set's content is the union over owners; withdrawing one owner never
/// removes what another still contributes.
public enum Owner: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Addresses on the zone's interfaces (netlink).
    case zone(String)
    /// The config file: interface names, declared `elements:`.
    case config
    /// `rnmctl set add`.
    case manual
    /// A plugin, by name.
    case plugin(String)

    public var description: String {
        switch self {
        case .zone(let z): "zone:\(z)"
        case .config: "config"
        case .manual: "manual"
        case .plugin(let p): "plugin:\(p)"
        }
    }

    public static func < (lhs: Owner, rhs: Owner) -> Bool { lhs.description < rhs.description }
}

/// The contributions to one element of one set, kept small: most elements have exactly one owner.
struct Contributors: Equatable, Sendable {
    /// Observed addresses that map to this element (the zone owner).
    var addresses: Int32 = 0
    var config = false
    /// Deadline of the manual entry, if any.
    var manual: Deadline? = nil
    /// Plugin name → deadline of its contribution (empty for most elements: costs one pointer).
    var plugins: [String: Deadline] = [:]

    var isEmpty: Bool { addresses == 0 && !config && manual == nil && plugins.isEmpty }

    /// The kernel element's deadline: never if any owner is permanent, else the latest (`never` is the
    /// largest deadline).
    var deadline: Deadline {
        if addresses > 0 || config { return .never }
        var d = manual ?? 0
        for p in plugins.values where p > d { d = p }
        return d
    }

    func owners(zone: String?) -> [Owner] {
        var out: [Owner] = []
        if addresses > 0, let zone { out.append(.zone(zone)) }
        if config { out.append(.config) }
        if manual != nil { out.append(.manual) }
        for p in plugins.keys.sorted() { out.append(.plugin(p)) }
        return out
    }
}

/// Interval arithmetic for interval sets: contributions are ranges that may overlap and carry different
/// deadlines; the kernel needs disjoint ranges, each with one timeout.
enum Segments {
    /// Disjoint, sorted ranges covering the union of `ranges`, each with the latest deadline of the ranges
    /// covering it; neighbours with the same deadline are merged.
    static func compute(_ ranges: [(SetElement, Deadline)]) -> [SetElement: Deadline] {
        guard let first = ranges.first else { return [:] }
        let v4: Bool
        switch first.0 {
        case .ipv4Range, .ipv4, .ipv4End: v4 = true
        default: v4 = false
        }
        // Work on 128-bit values for both families: (high, low) of IPv6, or (0, v4).
        var points: [(pos: IPv6Address, start: Bool, deadline: Deadline)] = []
        points.reserveCapacity(ranges.count * 2)
        for (e, d) in ranges {
            guard let (lo, hi) = bounds(e) else { continue }
            points.append((lo, true, d))
            if let next = successor(hi, v4: v4) { points.append((next, false, d)) }  // else: runs to the top
        }
        points.sort { $0.pos < $1.pos }
        var active: [Deadline: Int] = [:]
        var out: [(lo: IPv6Address, hi: IPv6Address, d: Deadline)] = []
        var i = 0
        var openStart: IPv6Address? = nil
        var openDeadline: Deadline = 0
        func current() -> Deadline? { active.keys.max() }
        while i < points.count {
            let pos = points[i].pos
            let before = current()
            while i < points.count, points[i].pos == pos {
                let p = points[i]
                if p.start {
                    active[p.deadline, default: 0] += 1
                } else if let n = active[p.deadline] {
                    active[p.deadline] = n > 1 ? n - 1 : nil
                }
                i += 1
            }
            let after = current()
            if before != after {
                if let s = openStart, let pred = predecessor(pos) {
                    out.append((s, pred, openDeadline))
                }
                openStart = after == nil ? nil : pos
                openDeadline = after ?? 0
            }
        }
        if let s = openStart {
            out.append((s, top(v4: v4), openDeadline))
        }
        // Merge touching neighbours with the same deadline.
        var merged: [(lo: IPv6Address, hi: IPv6Address, d: Deadline)] = []
        for seg in out {
            if let last = merged.last, last.d == seg.d, successor(last.hi, v4: v4) == seg.lo {
                merged[merged.count - 1].hi = seg.hi
            } else {
                merged.append(seg)
            }
        }
        var result: [SetElement: Deadline] = [:]
        for m in merged {
            if v4 {
                result[.ipv4Range(IPv4Address(UInt32(m.lo.low)), IPv4Address(UInt32(m.hi.low)))] = m.d
            } else {
                result[.ipv6Range(m.lo, m.hi)] = m.d
            }
        }
        return result
    }

    static func bounds(_ e: SetElement) -> (IPv6Address, IPv6Address)? {
        switch e {
        case .ipv4(let a): return (IPv6Address(high: 0, low: UInt64(a.value)), IPv6Address(high: 0, low: UInt64(a.value)))
        case .ipv4Range(let lo, let hi):
            return (IPv6Address(high: 0, low: UInt64(lo.value)), IPv6Address(high: 0, low: UInt64(hi.value)))
        case .ipv6(let a): return (a, a)
        case .ipv6Range(let lo, let hi): return (lo, hi)
        default: return nil
        }
    }

    static func top(v4: Bool) -> IPv6Address {
        v4 ? IPv6Address(high: 0, low: UInt64(UInt32.max)) : IPv6Address(high: .max, low: .max)
    }

    static func successor(_ a: IPv6Address, v4: Bool) -> IPv6Address? {
        if v4 { return a.low >= UInt64(UInt32.max) ? nil : IPv6Address(high: 0, low: a.low + 1) }
        return a.successor
    }

    static func predecessor(_ a: IPv6Address) -> IPv6Address? { a.predecessor }
}
