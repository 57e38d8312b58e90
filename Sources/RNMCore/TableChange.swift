/// What one nftables transaction by someone else did to our table, as its notifications told it; or that
/// notifications were lost and nobody knows.
public struct TableChange: Equatable, Sendable {
    /// Notifications by kind of object: `table`, `chain`, `rule`, `set`, `element`, `object`, `flowtable`.
    public var kinds: [String: Int]
    /// Sets whose elements were added or removed.
    public var elementSets: Set<String>
    /// Who committed the transaction (from the generation notice), if known.
    public var pid: UInt32?
    public var process: String?
    /// The kernel dropped notifications (ENOBUFS): anything may have changed.
    public var lost: Bool

    public init(
        kinds: [String: Int] = [:], elementSets: Set<String> = [], pid: UInt32? = nil, process: String? = nil,
        lost: Bool = false
    ) {
        self.kinds = kinds
        self.elementSets = elementSets
        self.pid = pid
        self.process = process
        self.lost = lost
    }

    public static let lostNotifications = TableChange(lost: true)

    /// Whether element transactions can repair it: only elements of the given (managed) sets changed.
    public func isElementsOnly(managed: some Collection<String>) -> Bool {
        !lost && kinds.keys.allSatisfy { $0 == "element" } && elementSets.allSatisfy { managed.contains($0) }
    }

    /// `rule ×2, element ×5` for logs.
    public var summary: String {
        if lost { return "notifications lost" }
        return kinds.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
    }

    /// `by pid 1234 (nft)`.
    public var origin: String {
        guard let pid else { return "by an unknown process" }
        return "by pid \(pid)" + (process.map { " (\(YAMLNode.quoted($0)))" } ?? "")
    }
}
