/// A network interface as the kernel reports it. Keyed by `index`; the name is an attribute (a rename is an
/// update, a delete and re-create is a new index).
public struct Link: Hashable, Sendable {
    public var index: Int32
    public var name: String
    /// IFF_UP: administratively up.
    public var isUp: Bool
    /// RFC 2863 operational state (IFLA_OPERSTATE).
    public var operState: OperState
    /// IFLA_MTU, if the kernel said.
    public var mtu: UInt32?

    public init(index: Int32, name: String, isUp: Bool = true, operState: OperState = .unknown, mtu: UInt32? = nil) {
        self.index = index
        self.name = name
        self.isUp = isUp
        self.operState = operState
        self.mtu = mtu
    }
}

/// The marks rnm puts on what it adds to the kernel's network configuration, so that it only ever removes
/// its own: `rtm_protocol` of its routes and `IFA_PROTO` of its addresses.
public enum NetworkMark {
    public static let protocolID: UInt8 = 114
}

/// A route's identity in the kernel: family, table, destination and metric (priority).
public struct RouteKey: Hashable, Sendable, CustomStringConvertible {
    public var table: UInt32
    public var destination: IPPrefix
    public var metric: UInt32

    public init(table: UInt32 = 254, destination: IPPrefix, metric: UInt32 = 0) {
        self.table = table
        self.destination = destination
        self.metric = metric
    }

    public var family: IPFamily { destination.address.family }

    public var description: String {
        let to = destination.length == 0 ? "default" : destination.compactDescription
        return "\(to)\(family == .v6 && destination.length == 0 ? " (v6)" : "")\(table == 254 ? "" : " table \(table)")\(metric == 0 ? "" : " metric \(metric)")"
    }
}

/// A unicast route as the kernel reports it (only routes carrying `NetworkMark.protocolID` are tracked).
public struct Route: Hashable, Sendable {
    public var key: RouteKey
    public var gateway: IPAddress?
    /// Output interface index.
    public var oif: Int32?
    public var protocolID: UInt8

    public init(key: RouteKey, gateway: IPAddress? = nil, oif: Int32? = nil, protocolID: UInt8 = NetworkMark.protocolID) {
        self.key = key
        self.gateway = gateway
        self.oif = oif
        self.protocolID = protocolID
    }
}

/// IF_OPER_* values.
public enum OperState: UInt8, Hashable, Sendable, CustomStringConvertible {
    case unknown = 0, notPresent = 1, down = 2, lowerLayerDown = 3, testing = 4, dormant = 5, up = 6

    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .notPresent: "notpresent"
        case .down: "down"
        case .lowerLayerDown: "lowerlayerdown"
        case .testing: "testing"
        case .dormant: "dormant"
        case .up: "up"
        }
    }
}

/// The identity of an address on a link: (ifindex, address, prefix length).
public struct AddressKey: Hashable, Sendable, CustomStringConvertible {
    public var ifindex: Int32
    public var address: IPAddress
    public var prefixLength: UInt8

    public init(ifindex: Int32, address: IPAddress, prefixLength: UInt8) {
        self.ifindex = ifindex
        self.address = address
        self.prefixLength = prefixLength
    }

    public var description: String { "\(address)/\(prefixLength) on ifindex \(ifindex)" }
}

/// IFA_F_* flags that matter for membership. The raw kernel bits are kept; IPv4's 0x01 means "secondary",
/// IPv6's means "temporary", so `isTemporary` looks at the family.
public struct AddressFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let secondaryOrTemporary = AddressFlags(rawValue: 0x01)
    public static let noDAD = AddressFlags(rawValue: 0x02)
    public static let optimistic = AddressFlags(rawValue: 0x04)
    public static let dadFailed = AddressFlags(rawValue: 0x08)
    public static let homeAddress = AddressFlags(rawValue: 0x10)
    public static let deprecated = AddressFlags(rawValue: 0x20)
    public static let tentative = AddressFlags(rawValue: 0x40)
    public static let permanent = AddressFlags(rawValue: 0x80)
    public static let managedTempAddress = AddressFlags(rawValue: 0x100)
    public static let noPrefixRoute = AddressFlags(rawValue: 0x200)
}

/// An address on a link, as last reported by RTM_NEWADDR.
public struct Address: Hashable, Sendable {
    public var key: AddressKey
    public var flags: AddressFlags
    /// RT_SCOPE_* (0 universe, 200 site, 253 link, 254 host).
    public var scope: UInt8
    /// Seconds; `UInt32.max` is forever.
    public var validLifetime: UInt32
    public var preferredLifetime: UInt32
    /// IFA_PROTO: who added it (`NetworkMark.protocolID` for rnm), 0 if unknown.
    public var protocolID: UInt8

    public init(
        key: AddressKey, flags: AddressFlags = .permanent, scope: UInt8 = 0,
        validLifetime: UInt32 = .max, preferredLifetime: UInt32 = .max, protocolID: UInt8 = 0
    ) {
        self.key = key
        self.flags = flags
        self.scope = scope
        self.validLifetime = validLifetime
        self.preferredLifetime = preferredLifetime
        self.protocolID = protocolID
    }

    /// Added by rnm (marked with `NetworkMark.protocolID`).
    public var isRNMs: Bool { protocolID == NetworkMark.protocolID }

    public var isTentative: Bool { flags.contains(.tentative) }
    public var isDADFailed: Bool { flags.contains(.dadFailed) }
    public var isDeprecated: Bool { flags.contains(.deprecated) }
    /// IPv6 privacy (RFC 8981) address. Always false for IPv4, where the same bit means "secondary".
    public var isTemporary: Bool { key.address.family == .v6 && flags.contains(.secondaryOrTemporary) }
    public var isLinkLocal: Bool { key.address.isLinkLocal || scope == 253 }

    /// Flag names for status output.
    public var flagNames: [String] {
        var out: [String] = []
        if key.address.family == .v4, flags.contains(.secondaryOrTemporary) { out.append("secondary") }
        if isTemporary { out.append("temporary") }
        if flags.contains(.noDAD) { out.append("nodad") }
        if flags.contains(.optimistic) { out.append("optimistic") }
        if isDADFailed { out.append("dadfailed") }
        if isDeprecated { out.append("deprecated") }
        if isTentative { out.append("tentative") }
        if flags.contains(.permanent) { out.append("permanent") }
        return out
    }
}

/// What netlink told us, folded into one value. Owned by the reconciler alone.
public struct ObservedState: Equatable, Sendable {
    public private(set) var links: [Int32: Link] = [:]
    public private(set) var addresses: [AddressKey: Address] = [:]
    /// ifindex → keys of its addresses, so a link change touches only its own addresses.
    public private(set) var addressesByLink: [Int32: Set<AddressKey>] = [:]
    /// rnm's own routes (marked), by identity.
    public var routes: [RouteKey: Route] = [:]

    public init() {}

    public init(links: [Link], addresses: [Address]) {
        for l in links { self.links[l.index] = l }
        for a in addresses { upsert(a) }
    }

    @discardableResult
    public mutating func upsert(_ link: Link) -> Link? {
        links.updateValue(link, forKey: link.index)
    }

    /// Removes the link and every address on it (the kernel may or may not send RTM_DELADDR for them).
    @discardableResult
    public mutating func removeLink(_ index: Int32) -> (link: Link?, addresses: [Address]) {
        let link = links.removeValue(forKey: index)
        var removed: [Address] = []
        if let keys = addressesByLink.removeValue(forKey: index) {
            for k in keys {
                if let a = addresses.removeValue(forKey: k) { removed.append(a) }
            }
        }
        return (link, removed)
    }

    @discardableResult
    public mutating func upsert(_ address: Address) -> Address? {
        let old = addresses.updateValue(address, forKey: address.key)
        if old == nil { addressesByLink[address.key.ifindex, default: []].insert(address.key) }
        return old
    }

    @discardableResult
    public mutating func removeAddress(_ key: AddressKey) -> Address? {
        guard let old = addresses.removeValue(forKey: key) else { return nil }
        addressesByLink[key.ifindex]?.remove(key)
        if addressesByLink[key.ifindex]?.isEmpty == true { addressesByLink[key.ifindex] = nil }
        return old
    }

    public func addresses(onLink index: Int32) -> [Address] {
        (addressesByLink[index] ?? []).compactMap { addresses[$0] }
    }

    public func link(named name: String) -> Link? {
        links.values.first { $0.name == name }
    }
}

/// Events from the netlink monitor.
public enum NetEvent: Hashable, Sendable {
    case linkChanged(Link)
    case linkRemoved(index: Int32)
    case addressChanged(Address)
    case addressRemoved(AddressKey)
    /// A full dump after start or an overrun: replaces the observed state (routes come separately).
    case snapshot(links: [Link], addresses: [Address])
    /// One of rnm's routes appeared or changed.
    case routeChanged(Route)
    case routeRemoved(RouteKey)
    /// A full dump of rnm's routes: replaces the observed ones.
    case routes([Route])
}
