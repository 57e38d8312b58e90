/// The seam between the reconciler and nftables. The real one speaks libnftnl batches and libnftables
/// (RNMFirewall); tests use a recording fake.
public protocol FirewallBackend: Sendable {
    /// The managed sets named in `sets` and their elements, as the kernel holds them (other sets in the
    /// table, such as those templates declare, are not read); nil if the table does not exist.
    func readBack(table: String, sets: Set<String>) throws -> TableState?

    /// Applies `plan` (element changes) as **one** nftables transaction and returns once the kernel
    /// acknowledged it. On error the kernel has kept its previous state (transactions are all-or-nothing).
    func commit(_ plan: Plan) throws

    /// Loads the whole table as one transaction that replaces it (with `dryRun`, the kernel checks it and
    /// changes nothing). On error nothing changed; the error names template files and lines.
    func load(_ table: RenderedTable, dryRun: Bool) throws

    /// The table's structure in nft's canonical form: chains, rules, set declarations, no set elements, no
    /// counter values. nil if the table does not exist.
    func listStructure(table: String) throws -> String?

    /// The structure `table` would have once loaded, in the same canonical form as `listStructure`, worked
    /// out without touching the live table (the real backend loads it into a scratch network namespace).
    func canonicalStructure(_ table: RenderedTable) throws -> String
}

/// Why the kernel refused a network change (address, link, route, sysctl).
public struct NetworkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The errno the kernel answered (0 if none).
    public var code: Int32
    public var message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static let ENOENT: Int32 = 2
    public static let ESRCH: Int32 = 3
    public static let ENODEV: Int32 = 19
    public static let EEXIST: Int32 = 17
    public static let ENETUNREACH: Int32 = 101
    public static let EADDRNOTAVAIL: Int32 = 99
}

/// Where the network configuration is applied: rtnetlink in the daemon, a recorder in tests. Every call is
/// one request, acknowledged before it returns. Called from the reconciler thread only.
public protocol NetworkBackend: Sendable {
    /// Adds `prefix` (the host address with its prefix length, e.g. 192.168.1.1/24) on the link, marked with
    /// `NetworkMark.protocolID` (IFA_PROTO). Already present: success.
    func addAddress(_ prefix: IPPrefix, ifindex: Int32) throws(NetworkError)
    /// Removes the address. Already gone: success.
    func deleteAddress(_ prefix: IPPrefix, ifindex: Int32) throws(NetworkError)
    /// Sets the link up (or down) and/or its MTU; nil leaves that alone.
    func setLink(ifindex: Int32, up: Bool?, mtu: UInt32?) throws(NetworkError)
    /// Adds the route marked with `NetworkMark.protocolID`; fails with EEXIST if a route with that identity
    /// exists (someone else's: rnm never replaces it).
    func addRoute(_ route: Route) throws(NetworkError)
    /// Replaces one of rnm's routes (same identity, new gateway or device).
    func replaceRoute(_ route: Route) throws(NetworkError)
    /// Removes one of rnm's routes. Already gone: success.
    func deleteRoute(_ route: Route) throws(NetworkError)
    /// Writes a sysctl of the daemon's network namespace, e.g. ("net/ipv4/conf/eth0/forwarding", "1").
    func setSysctl(_ key: String, _ value: String) throws(NetworkError)
    /// Its current value (whitespace dropped), nil if it cannot be read.
    func readSysctl(_ key: String) -> String?
}
