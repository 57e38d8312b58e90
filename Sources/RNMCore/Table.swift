/// The key type of a set.
public enum SetKeyType: Hashable, Sendable, CustomStringConvertible {
    case ipv4Addr
    case ipv6Addr
    case ifname
    /// Any other type found when reading our table back (only ever deleted or replaced).
    case other(typeID: UInt32, keyLength: UInt32)

    /// nft's datatype id (NFTA_SET_KEY_TYPE), so `nft list` shows the type.
    public var nftTypeID: UInt32 {
        switch self {
        case .ipv4Addr: 7
        case .ipv6Addr: 8
        case .ifname: 41
        case .other(let id, _): id
        }
    }

    /// Key length in bytes (NFTA_SET_KEY_LEN).
    public var keyLength: UInt32 {
        switch self {
        case .ipv4Addr: 4
        case .ipv6Addr: 16
        case .ifname: 16  // IFNAMSIZ
        case .other(_, let len): len
        }
    }

    public init(nftTypeID: UInt32, keyLength: UInt32) {
        switch (nftTypeID, keyLength) {
        case (7, 4): self = .ipv4Addr
        case (8, 16): self = .ipv6Addr
        case (41, 16): self = .ifname
        default: self = .other(typeID: nftTypeID, keyLength: keyLength)
        }
    }

    public init(_ family: IPFamily) { self = family == .v4 ? .ipv4Addr : .ipv6Addr }

    public var family: IPFamily? {
        switch self {
        case .ipv4Addr: .v4
        case .ipv6Addr: .v6
        default: nil
        }
    }

    /// The nft spelling: `ipv4_addr`, `ipv6_addr`, `ifname`.
    public var description: String {
        switch self {
        case .ipv4Addr: "ipv4_addr"
        case .ipv6Addr: "ipv6_addr"
        case .ifname: "ifname"
        case .other(let id, let len): "type#\(id)/\(len)"
        }
    }
}

/// NFT_SET_* flags.
public struct SetFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let constant = SetFlags(rawValue: 0x2)
    public static let interval = SetFlags(rawValue: 0x4)
    public static let timeout = SetFlags(rawValue: 0x10)

    /// nft's words, in nft's order.
    public var names: [String] {
        var out: [String] = []
        if contains(.constant) { out.append("constant") }
        if contains(.interval) { out.append("interval") }
        if contains(.timeout) { out.append("timeout") }
        return out
    }
}

/// The shape of a set: name, key type, flags and default timeout. Two specs that differ mean "delete and
/// re-create".
public struct SetSpec: Hashable, Sendable {
    public var name: String
    public var type: SetKeyType
    public var flags: SetFlags
    /// Default element timeout in milliseconds (NFTA_SET_TIMEOUT); needs the timeout flag.
    public var timeoutMs: UInt64?

    public init(name: String, type: SetKeyType, flags: SetFlags = [], timeoutMs: UInt64? = nil) {
        self.name = name
        self.type = type
        self.flags = flags
        self.timeoutMs = timeoutMs
    }

    public var isInterval: Bool { flags.contains(.interval) }
}

/// A typed set element. Names and addresses travel as values, never as rule text.
public enum SetElement: Hashable, Sendable, Comparable, CustomStringConvertible {
    case ipv4(IPv4Address)
    case ipv6(IPv6Address)
    case ifname(String)
    /// An inclusive range, in an interval set (a prefix is a range).
    case ipv4Range(IPv4Address, IPv4Address)
    case ipv6Range(IPv6Address, IPv6Address)
    /// An interval-end marker found in the kernel without its start (left behind by an expiry); only ever
    /// removed.
    case ipv4End(IPv4Address)
    case ipv6End(IPv6Address)

    public init(_ address: IPAddress) {
        switch address {
        case .v4(let a): self = .ipv4(a)
        case .v6(let a): self = .ipv6(a)
        }
    }

    /// The range a prefix covers (for interval sets).
    public init(range prefix: IPPrefix) {
        switch prefix.address {
        case .v4(let a):
            let hostBits = 32 - UInt32(prefix.length)
            let mask: UInt32 = hostBits == 32 ? 0 : ~UInt32(0) << hostBits
            self = .ipv4Range(IPv4Address(a.value & mask), IPv4Address(a.value | ~mask))
        case .v6(let a):
            let (lo, hi) = IPv6Address.bounds(a, prefixLength: prefix.length)
            self = .ipv6Range(lo, hi)
        }
    }

    public var keyType: SetKeyType {
        switch self {
        case .ipv4, .ipv4Range, .ipv4End: .ipv4Addr
        case .ipv6, .ipv6Range, .ipv6End: .ipv6Addr
        case .ifname: .ifname
        }
    }

    public var isRange: Bool {
        switch self {
        case .ipv4Range, .ipv6Range: true
        default: false
        }
    }

    /// The key as the kernel stores it: network-order address bytes, or the name NUL-padded to IFNAMSIZ.
    /// For a range, its start.
    public var keyBytes: [UInt8] {
        switch self {
        case .ipv4(let a), .ipv4Range(let a, _), .ipv4End(let a): return a.bytes
        case .ipv6(let a), .ipv6Range(let a, _), .ipv6End(let a): return a.bytes
        case .ifname(let n):
            var b = Array(n.utf8.prefix(15))
            b.append(contentsOf: [UInt8](repeating: 0, count: 16 - b.count))
            return b
        }
    }

    /// Decodes a kernel key for a set of type `type` (a plain element; ranges are assembled by the backend).
    public init?(keyBytes: some Collection<UInt8>, type: SetKeyType) {
        switch type {
        case .ipv4Addr:
            guard let a = IPv4Address(bytes: keyBytes) else { return nil }
            self = .ipv4(a)
        case .ipv6Addr:
            guard let a = IPv6Address(bytes: keyBytes) else { return nil }
            self = .ipv6(a)
        case .ifname:
            let name = keyBytes.prefix { $0 != 0 }
            self = .ifname(String(decoding: name, as: UTF8.self))
        case .other:
            return nil
        }
    }

    /// `192.0.2.1`, `10.0.0.0/8` for a range that is a prefix, `10.0.0.5-10.0.0.9` otherwise.
    public var description: String {
        switch self {
        case .ipv4(let a): return a.description
        case .ipv6(let a): return a.description
        case .ifname(let n): return n
        case .ipv4Range(let lo, let hi):
            if lo == hi { return lo.description }
            let span = hi.value &- lo.value &+ 1
            if span != 0, span & (span - 1) == 0, lo.value & (span - 1) == 0 {
                return "\(lo)/\(32 - span.trailingZeroBitCount)"
            }
            if span == 0 && lo.value == 0 { return "0.0.0.0/0" }
            return "\(lo)-\(hi)"
        case .ipv6Range(let lo, let hi):
            if lo == hi { return lo.description }
            if let len = IPv6Address.prefixLength(lo, hi) { return "\(lo)/\(len)" }
            return "\(lo)-\(hi)"
        case .ipv4End(let a): return "end \(a)"
        case .ipv6End(let a): return "end \(a)"
        }
    }

    public static func < (lhs: SetElement, rhs: SetElement) -> Bool {
        let (a, b) = (lhs.sortKey, rhs.sortKey)
        if a.0 != b.0 { return a.0 < b.0 }
        if a.1 != b.1 { return a.1 < b.1 }
        if a.2 != b.2 { return a.2 < b.2 }
        if case .ifname(let x) = lhs, case .ifname(let y) = rhs { return x < y }
        return false
    }

    private var sortKey: (Int, IPv6Address, IPv6Address) {
        func w(_ a: IPv4Address) -> IPv6Address { IPv6Address(high: 0, low: UInt64(a.value)) }
        let zero = IPv6Address(high: 0, low: 0)
        switch self {
        case .ipv4(let a): return (0, w(a), w(a))
        case .ipv4Range(let lo, let hi): return (0, w(lo), w(hi))
        case .ipv4End(let a): return (0, w(a), zero)
        case .ipv6(let a): return (1, a, a)
        case .ipv6Range(let lo, let hi): return (1, lo, hi)
        case .ipv6End(let a): return (1, a, zero)
        case .ifname: return (2, zero, zero)
        }
    }
}

extension IPv6Address {
    /// The first and last address of a prefix.
    static func bounds(_ a: IPv6Address, prefixLength: UInt8) -> (IPv6Address, IPv6Address) {
        let l = Int(prefixLength)
        let hiMask: UInt64 = l >= 64 ? ~0 : (l == 0 ? 0 : ~UInt64(0) << (64 - l))
        let loMask: UInt64 = l <= 64 ? 0 : (l >= 128 ? ~0 : ~UInt64(0) << (128 - l))
        return (IPv6Address(high: a.high & hiMask, low: a.low & loMask),
                IPv6Address(high: a.high | ~hiMask, low: a.low | ~loMask))
    }

    /// The prefix length if [lo, hi] is exactly one prefix.
    static func prefixLength(_ lo: IPv6Address, _ hi: IPv6Address) -> Int? {
        for l in 0...128 {
            let (a, b) = bounds(lo, prefixLength: UInt8(l))
            if a == lo && b == hi { return l }
        }
        return nil
    }

    /// a + 1, or nil at the top of the space.
    public var successor: IPv6Address? {
        if low != .max { return IPv6Address(high: high, low: low + 1) }
        if high != .max { return IPv6Address(high: high + 1, low: 0) }
        return nil
    }

    public var predecessor: IPv6Address? {
        if low != 0 { return IPv6Address(high: high, low: low - 1) }
        if high != 0 { return IPv6Address(high: high - 1, low: .max) }
        return nil
    }
}

/// When an element leaves the kernel by itself: a monotonic deadline in nanoseconds, or never.
public typealias Deadline = UInt64

extension Deadline {
    /// An element without a timeout.
    public static let never: Deadline = .max

    /// Two deadlines the kernel would treat alike: both never, or within 2 s (what a read-back of the kernel's
    /// remaining time can differ by from our own clock).
    public func isSameDeadline(as other: Deadline) -> Bool {
        if self == .never || other == .never { return self == other }
        return (self > other ? self - other : other - self) <= 2_000_000_000
    }
}

/// The managed content of our table: set shapes and their elements with deadlines. Used both for what we want
/// (desired) and for what the kernel holds (applied, read back).
public struct TableState: Equatable, Sendable {
    public var name: String
    public var sets: [String: SetSpec]
    public var elements: [String: [SetElement: Deadline]]

    public init(name: String, sets: [String: SetSpec] = [:], elements: [String: [SetElement: Deadline]] = [:]) {
        self.name = name
        self.sets = sets
        self.elements = elements
    }

    public var elementCount: Int { elements.values.reduce(0) { $0 + $1.count } }

    /// Element keys only (for tests and comparisons that ignore deadlines).
    public var keys: [String: Set<SetElement>] { elements.mapValues { Set($0.keys) } }

    /// Equal up to deadlines the kernel would treat alike.
    public func matches(_ other: TableState) -> Bool {
        guard name == other.name, sets == other.sets, elements.keys == other.elements.keys else { return false }
        for (set, mine) in elements {
            let theirs = other.elements[set] ?? [:]
            guard mine.count == theirs.count else { return false }
            for (e, d) in mine {
                guard let t = theirs[e], d.isSameDeadline(as: t) else { return false }
            }
        }
        return true
    }
}

/// An element to add, with the timeout the kernel should enforce (nil: none, or the set's default).
public struct PlannedElement: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var element: SetElement
    public var timeoutMs: UInt64?

    public init(_ element: SetElement, timeoutMs: UInt64? = nil) {
        self.element = element
        self.timeoutMs = timeoutMs
    }

    public static func < (lhs: PlannedElement, rhs: PlannedElement) -> Bool { lhs.element < rhs.element }

    public var description: String {
        timeoutMs.map { "\(element) timeout \(Durations.format(ms: $0))" } ?? element.description
    }
}

/// One nftables transaction: what to do to go from applied to desired. Empty means no transaction.
public struct Plan: Equatable, Sendable, CustomStringConvertible {
    public var table: String
    /// A table of ours under another name (the config's `table:` changed) to delete in the same transaction.
    public var deleteTable: String?
    /// The table does not exist yet (or its existence is unknown): create it (idempotent).
    public var createTable: Bool
    public var deleteSets: [String]
    public var createSets: [SetSpec]
    /// Per set, sorted.
    public var remove: [String: [SetElement]]
    public var add: [String: [PlannedElement]]
    /// When the plan was made (monotonic ns): timeouts count from here.
    public var now: UInt64

    public init(
        table: String, deleteTable: String? = nil, createTable: Bool = false, deleteSets: [String] = [],
        createSets: [SetSpec] = [], remove: [String: [SetElement]] = [:], add: [String: [PlannedElement]] = [:],
        now: UInt64 = 0
    ) {
        self.table = table
        self.deleteTable = deleteTable
        self.createTable = createTable
        self.deleteSets = deleteSets
        self.createSets = createSets
        self.remove = remove
        self.add = add
        self.now = now
    }

    public var isEmpty: Bool {
        deleteTable == nil && !createTable && deleteSets.isEmpty && createSets.isEmpty
            && remove.values.allSatisfy(\.isEmpty) && add.values.allSatisfy(\.isEmpty)
    }

    public var addedCount: Int { add.values.reduce(0) { $0 + $1.count } }
    public var removedCount: Int { remove.values.reduce(0) { $0 + $1.count } }

    /// Sets whose content or shape this plan touches.
    public var touchedSets: [String] {
        Set(deleteSets + createSets.map(\.name) + remove.filter { !$0.value.isEmpty }.map(\.key)
            + add.filter { !$0.value.isEmpty }.map(\.key)).sorted()
    }

    /// One line per operation, for logs, `--check` and tests.
    public var description: String {
        var lines: [String] = []
        if let t = deleteTable { lines.append("delete table inet \(t)") }
        if createTable { lines.append("create table inet \(table)") }
        for s in deleteSets.sorted() { lines.append("delete set \(s)") }
        for s in createSets.sorted(by: { $0.name < $1.name }) { lines.append("create set \(s.name) (\(s.type))") }
        for (s, els) in remove.sorted(by: { $0.key < $1.key }) where !els.isEmpty {
            lines.append("remove from \(s): " + els.map(\.description).joined(separator: ", "))
        }
        for (s, els) in add.sorted(by: { $0.key < $1.key }) where !els.isEmpty {
            lines.append("add to \(s): " + els.map(\.description).joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    /// The deadline an added element gets.
    public func deadline(of e: PlannedElement, in set: SetSpec?) -> Deadline {
        guard let ms = e.timeoutMs ?? set?.timeoutMs else { return .never }
        return now &+ ms * 1_000_000
    }

    /// The state that results from applying this plan to `applied` (what a successful commit leaves).
    public func applying(to applied: TableState?) -> TableState {
        var state = applied
        apply(to: &state)
        return state!
    }

    /// Applies the plan in place: O(size of the plan) when `state` is uniquely referenced, which is what
    /// keeps the reconciler's hot path independent of how many elements a set holds.
    public func apply(to state: inout TableState?) {
        if state?.name != table { state = TableState(name: table) }
        for s in deleteSets {
            state!.sets[s] = nil
            state!.elements[s] = nil
        }
        for s in createSets {
            state!.sets[s.name] = s
            if state!.elements[s.name] == nil { state!.elements[s.name] = [:] }
        }
        for (s, els) in remove {
            for e in els { state!.elements[s]?[e] = nil }
        }
        for (s, els) in add {
            let spec = state!.sets[s]
            for e in els { state!.elements[s, default: [:]][e.element] = deadline(of: e, in: spec) }
        }
    }
}

/// Pure diff: the plan that turns `applied` (nil: nothing known, table may not exist) into `desired` at `now`.
/// Elements whose deadline differs (beyond what `isSameDeadline` forgives) are removed and re-added with the
/// new timeout in the same transaction; elements already expired are left out.
public func diff(applied: TableState?, desired: TableState, now: UInt64 = 0) -> Plan {
    var plan = Plan(table: desired.name, now: now)
    var base = applied
    if let a = applied, a.name != desired.name {
        plan.deleteTable = a.name
        base = nil
    }
    guard let current = base else {
        plan.createTable = true
        plan.createSets = desired.sets.values.sorted { $0.name < $1.name }
        for (name, els) in desired.elements {
            let adds = els.compactMap { planned($0.key, $0.value, desired.sets[name], now: now) }.sorted()
            if !adds.isEmpty { plan.add[name] = adds }
        }
        return plan
    }
    for (name, spec) in current.sets where desired.sets[name] != spec {
        plan.deleteSets.append(name)
    }
    plan.deleteSets.sort()
    for (name, spec) in desired.sets.sorted(by: { $0.key < $1.key }) {
        let want = desired.elements[name] ?? [:]
        if current.sets[name] != spec {
            plan.createSets.append(spec)
            let adds = want.compactMap { planned($0.key, $0.value, spec, now: now) }.sorted()
            if !adds.isEmpty { plan.add[name] = adds }
            continue
        }
        let have = current.elements[name] ?? [:]
        var adds: [PlannedElement] = []
        var removes: [SetElement] = []
        for (e, d) in want {
            if let h = have[e] {
                if !d.isSameDeadline(as: h) {
                    removes.append(e)
                    if let p = planned(e, d, spec, now: now) { adds.append(p) }
                }
            } else if let p = planned(e, d, spec, now: now) {
                adds.append(p)
            }
        }
        for e in have.keys where want[e] == nil { removes.append(e) }
        if !adds.isEmpty { plan.add[name] = adds.sorted() }
        if !removes.isEmpty { plan.remove[name] = removes.sorted() }
    }
    return plan
}

/// How an element with `deadline` is added at `now`: its own timeout, or none (the set's default applies
/// only to sets whose elements all share it). nil if it is already due.
func planned(_ e: SetElement, _ deadline: Deadline, _ spec: SetSpec?, now: UInt64) -> PlannedElement? {
    if deadline == .never { return PlannedElement(e) }
    guard deadline > now else { return nil }
    let ms = (deadline - now + 999_999) / 1_000_000
    return PlannedElement(e, timeoutMs: max(ms, 1))
}
