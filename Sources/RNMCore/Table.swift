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
}

/// The shape of a set: name, key type and flags. Two specs that differ mean "delete and re-create".
public struct SetSpec: Hashable, Sendable {
    public var name: String
    public var type: SetKeyType
    public var flags: SetFlags

    public init(name: String, type: SetKeyType, flags: SetFlags = []) {
        self.name = name
        self.type = type
        self.flags = flags
    }
}

/// A typed set element. Names and addresses travel as values, never as rule text.
public enum SetElement: Hashable, Sendable, Comparable, CustomStringConvertible {
    case ipv4(IPv4Address)
    case ipv6(IPv6Address)
    case ifname(String)

    public init(_ address: IPAddress) {
        switch address {
        case .v4(let a): self = .ipv4(a)
        case .v6(let a): self = .ipv6(a)
        }
    }

    public var keyType: SetKeyType {
        switch self {
        case .ipv4: .ipv4Addr
        case .ipv6: .ipv6Addr
        case .ifname: .ifname
        }
    }

    /// The key as the kernel stores it: network-order address bytes, or the name NUL-padded to IFNAMSIZ.
    public var keyBytes: [UInt8] {
        switch self {
        case .ipv4(let a): return a.bytes
        case .ipv6(let a): return a.bytes
        case .ifname(let n):
            var b = Array(n.utf8.prefix(15))
            b.append(contentsOf: [UInt8](repeating: 0, count: 16 - b.count))
            return b
        }
    }

    /// Decodes a kernel key for a set of type `type`.
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

    public var description: String {
        switch self {
        case .ipv4(let a): a.description
        case .ipv6(let a): a.description
        case .ifname(let n): n
        }
    }

    public static func < (lhs: SetElement, rhs: SetElement) -> Bool {
        switch (lhs, rhs) {
        case (.ipv4(let a), .ipv4(let b)): a < b
        case (.ipv6(let a), .ipv6(let b)): a < b
        case (.ifname(let a), .ifname(let b)): a < b
        default: lhs.rank < rhs.rank
        }
    }

    private var rank: Int {
        switch self {
        case .ipv4: 0
        case .ipv6: 1
        case .ifname: 2
        }
    }
}

/// The managed content of our table: set shapes and their elements. Used both for what we want (desired)
/// and for what the kernel holds (applied, read back).
public struct TableState: Equatable, Sendable {
    public var name: String
    public var sets: [String: SetSpec]
    public var elements: [String: Set<SetElement>]

    public init(name: String, sets: [String: SetSpec] = [:], elements: [String: Set<SetElement>] = [:]) {
        self.name = name
        self.sets = sets
        self.elements = elements
    }

    public var elementCount: Int { elements.values.reduce(0) { $0 + $1.count } }
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
    public var add: [String: [SetElement]]

    public init(
        table: String, deleteTable: String? = nil, createTable: Bool = false, deleteSets: [String] = [],
        createSets: [SetSpec] = [], remove: [String: [SetElement]] = [:], add: [String: [SetElement]] = [:]
    ) {
        self.table = table
        self.deleteTable = deleteTable
        self.createTable = createTable
        self.deleteSets = deleteSets
        self.createSets = createSets
        self.remove = remove
        self.add = add
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
            if state!.elements[s.name] == nil { state!.elements[s.name] = [] }
        }
        for (s, els) in remove {
            for e in els { state!.elements[s]?.remove(e) }
        }
        for (s, els) in add {
            for e in els { state!.elements[s, default: []].insert(e) }
        }
    }
}

/// Pure diff: the plan that turns `applied` (nil: nothing known, table may not exist) into `desired`.
public func diff(applied: TableState?, desired: TableState) -> Plan {
    var plan = Plan(table: desired.name)
    var base = applied
    if let a = applied, a.name != desired.name {
        plan.deleteTable = a.name
        base = nil
    }
    guard let current = base else {
        plan.createTable = true
        plan.createSets = desired.sets.values.sorted { $0.name < $1.name }
        for (name, els) in desired.elements where !els.isEmpty { plan.add[name] = els.sorted() }
        return plan
    }
    for (name, spec) in current.sets where desired.sets[name] != spec {
        plan.deleteSets.append(name)
    }
    plan.deleteSets.sort()
    for (name, spec) in desired.sets.sorted(by: { $0.key < $1.key }) {
        let want = desired.elements[name] ?? []
        if current.sets[name] != spec {
            plan.createSets.append(spec)
            if !want.isEmpty { plan.add[name] = want.sorted() }
            continue
        }
        let have = current.elements[name] ?? []
        let adds = want.subtracting(have)
        let removes = have.subtracting(want)
        if !adds.isEmpty { plan.add[name] = adds.sorted() }
        if !removes.isEmpty { plan.remove[name] = removes.sorted() }
    }
    return plan
}
