/// A position in a source file (1-based line and column).
public struct SourceMark: Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// The daemon's configuration, decoded and validated (see `ConfigDecoder`).
public struct Config: Equatable, Sendable {
    /// Our table, family inet.
    public var table: String
    public var interfaces: [InterfaceConfig]
    public var addressPolicy: AddressPolicy

    public init(table: String = "rnm", interfaces: [InterfaceConfig] = [], addressPolicy: AddressPolicy = .init()) {
        self.table = table
        self.interfaces = interfaces
        self.addressPolicy = addressPolicy
    }

    /// Zone names in first-seen order.
    public var zones: [String] {
        var seen = Set<String>()
        return interfaces.compactMap { seen.insert($0.zone).inserted ? $0.zone : nil }
    }

    /// Interface name → zone.
    public var zoneByInterface: [String: String] {
        Dictionary(interfaces.map { ($0.name, $0.zone) }, uniquingKeysWith: { a, _ in a })
    }
}

/// One `interfaces:` entry.
public struct InterfaceConfig: Equatable, Sendable {
    public var name: String
    public var zone: String
    /// Addresses come from a DHCP client; rnm follows them.
    public var dhcp: Bool
    /// Static addresses (applying them comes with the router features).
    public var addresses: [IPPrefix]

    public init(name: String, zone: String, dhcp: Bool = false, addresses: [IPPrefix] = []) {
        self.name = name
        self.zone = zone
        self.dhcp = dhcp
        self.addresses = addresses
    }
}

/// Which addresses count as a zone's addresses. Tentative and DAD-failed ones never do.
public struct AddressPolicy: Equatable, Sendable {
    public var linkLocal: Bool
    public var deprecated: Bool
    public var temporary: Bool

    public init(linkLocal: Bool = false, deprecated: Bool = true, temporary: Bool = true) {
        self.linkLocal = linkLocal
        self.deprecated = deprecated
        self.temporary = temporary
    }
}

/// A config problem with its place: `file:line:col: field.path: message`.
public struct ConfigIssue: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var mark: SourceMark
    /// Field path such as `interfaces[1].zone`; empty for document-level problems.
    public var path: String
    public var message: String

    public init(file: String, mark: SourceMark, path: String, message: String) {
        self.file = file
        self.mark = mark
        self.path = path
        self.message = message
    }

    /// `file:line:col: path: message`; a file-level problem (line 0) prints as `file: message`.
    public var description: String {
        let place = mark.line == 0 ? file : "\(file):\(mark)"
        return path.isEmpty ? "\(place): \(message)" : "\(place): \(path): \(message)"
    }
}

/// All problems found in one config file. Decoding collects as many as it can before giving up.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var issues: [ConfigIssue]

    public init(_ issues: [ConfigIssue]) { self.issues = issues }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
