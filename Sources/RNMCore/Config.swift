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
    /// Sets declared for manual entries and plugins (`sets:`).
    public var sets: [DeclaredSet]
    public var control: ControlConfig
    /// Where manual entries persist.
    public var stateDir: String
    /// Rule templates (nft syntax for the body of our table), in order.
    public var rules: [RuleTemplate]
    /// The user's `defines:` (name → nft text), in order.
    public var defines: [Define]
    /// How often to read our table back as a backstop to drift notifications, in ms; 0: never.
    public var auditIntervalMs: UInt64
    /// What to do when someone else changes our table: repair it (default), or only report.
    public var driftRepair: Bool
    /// Where `plugins:` entries without a `path:` are found (`<plugin_dir>/<name>.so`).
    public var pluginDir: String
    /// Plugins, in config order.
    public var plugins: [PluginConfig]
    /// Static routes rnm applies and keeps.
    public var routes: [RouteConfig]
    /// IPv4/IPv6 forwarding on the configured interfaces (sysctls).
    public var forwarding: Bool
    /// Source NAT for traffic from one zone leaving through another.
    public var masquerade: [MasqueradeConfig]
    /// Port forwards (DNAT) to hosts behind a zone.
    public var forwards: [ForwardConfig]

    public init(
        table: String = "rnm", interfaces: [InterfaceConfig] = [], addressPolicy: AddressPolicy = .init(),
        sets: [DeclaredSet] = [], control: ControlConfig = .init(), stateDir: String = "/var/lib/rnm",
        rules: [RuleTemplate] = [], defines: [Define] = [], auditIntervalMs: UInt64 = 60_000,
        driftRepair: Bool = true, pluginDir: String = Config.defaultPluginDir, plugins: [PluginConfig] = [],
        routes: [RouteConfig] = [], forwarding: Bool = false, masquerade: [MasqueradeConfig] = [],
        forwards: [ForwardConfig] = []
    ) {
        self.table = table
        self.interfaces = interfaces
        self.addressPolicy = addressPolicy
        self.sets = sets
        self.control = control
        self.stateDir = stateDir
        self.rules = rules
        self.defines = defines
        self.auditIntervalMs = auditIntervalMs
        self.driftRepair = driftRepair
        self.pluginDir = pluginDir
        self.plugins = plugins
        self.routes = routes
        self.forwarding = forwarding
        self.masquerade = masquerade
        self.forwards = forwards
    }

    public static let defaultPluginDir = "/usr/lib/rnm/plugins"

    public func declaredSet(named name: String) -> DeclaredSet? { sets.first { $0.name == name } }

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

/// One `plugins:` entry.
public struct PluginConfig: Equatable, Sendable {
    /// The instance's name: unique in the config, the owner name of its contributions (`plugin:<name>`).
    public var name: String
    /// The shared object, absolute: `path:` (relative to the config file) or `<plugin_dir>/<name>.so`.
    public var path: String
    public var enabled: Bool
    /// The declared sets this plugin may touch, in config order.
    public var sets: [String]
    /// The entry's `config:` subtree as compact JSON (`{}` when absent).
    public var configJSON: String

    public init(name: String, path: String, enabled: Bool = true, sets: [String] = [], configJSON: String = "{}") {
        self.name = name
        self.path = path
        self.enabled = enabled
        self.sets = sets
        self.configJSON = configJSON
    }
}

/// One `interfaces:` entry.
public struct InterfaceConfig: Equatable, Sendable {
    public var name: String
    public var zone: String
    /// Addresses come from a DHCP client; rnm follows them.
    public var dhcp: Bool
    /// Static addresses rnm applies (with netlink) and keeps.
    public var addresses: [IPPrefix]
    /// Remove addresses on this interface that the config does not list (except the DHCP client's and
    /// IPv6 link-local ones).
    public var exclusive: Bool
    /// Bring the link up (the default); false leaves its state alone.
    public var up: Bool
    public var mtu: UInt32?

    public init(
        name: String, zone: String, dhcp: Bool = false, addresses: [IPPrefix] = [], exclusive: Bool = false,
        up: Bool = true, mtu: UInt32? = nil
    ) {
        self.name = name
        self.zone = zone
        self.dhcp = dhcp
        self.addresses = addresses
        self.exclusive = exclusive
        self.up = up
        self.mtu = mtu
    }
}

/// One `routes:` entry.
public struct RouteConfig: Hashable, Sendable {
    /// Destination; `default` is 0.0.0.0/0 or ::/0 (the family of `via`).
    public var to: IPPrefix
    public var via: IPAddress?
    /// Output interface name.
    public var dev: String?
    public var metric: UInt32?
    /// Routing table id (254 = main).
    public var table: UInt32

    public init(to: IPPrefix, via: IPAddress? = nil, dev: String? = nil, metric: UInt32? = nil, table: UInt32 = 254) {
        self.to = to
        self.via = via
        self.dev = dev
        self.metric = metric
        self.table = table
    }
}

/// One `masquerade:` entry: traffic from `from`'s interfaces leaving through `to`'s gets `to`'s address.
public struct MasqueradeConfig: Hashable, Sendable {
    public var from: String
    public var to: String

    public init(from: String, to: String) {
        self.from = from
        self.to = to
    }
}

/// One `forwards:` entry: traffic arriving on `zone`'s interfaces for one of the zone's addresses and `port`
/// goes to `to`:`toPort`.
public struct ForwardConfig: Hashable, Sendable {
    public enum Proto: String, Hashable, Sendable { case tcp, udp }

    public var zone: String
    public var proto: Proto
    /// A port or a range (inclusive).
    public var port: ClosedRange<UInt16>
    public var to: IPAddress
    /// Same length as `port`; nil: the same ports.
    public var toPort: ClosedRange<UInt16>?
    /// Also for clients behind another zone using the zone's address (NAT reflection).
    public var hairpin: Bool

    public init(zone: String, proto: Proto, port: ClosedRange<UInt16>, to: IPAddress, toPort: ClosedRange<UInt16>? = nil, hairpin: Bool = false) {
        self.zone = zone
        self.proto = proto
        self.port = port
        self.to = to
        self.toPort = toPort
        self.hairpin = hairpin
    }
}

/// A set declared in config: for manual entries (`rnmctl set add`) and plugins.
public struct DeclaredSet: Equatable, Sendable {
    public var name: String
    public var family: IPFamily
    /// Holds prefixes and ranges (nft `flags interval`).
    public var interval: Bool
    /// Elements may carry timeouts (nft `flags timeout`).
    public var timeoutFlag: Bool
    /// Default timeout of an element added without one (nft `timeout`), in milliseconds.
    public var defaultTimeoutMs: UInt64?
    /// Permanent elements from config.
    public var elements: [IPPrefix]

    public init(
        name: String, family: IPFamily, interval: Bool = false, timeoutFlag: Bool = false,
        defaultTimeoutMs: UInt64? = nil, elements: [IPPrefix] = []
    ) {
        self.name = name
        self.family = family
        self.interval = interval
        self.timeoutFlag = timeoutFlag
        self.defaultTimeoutMs = defaultTimeoutMs
        self.elements = elements
    }

    public var spec: SetSpec {
        var flags: SetFlags = []
        if interval { flags.insert(.interval) }
        if timeoutFlag { flags.insert(.timeout) }
        return SetSpec(name: name, type: SetKeyType(family), flags: flags, timeoutMs: defaultTimeoutMs)
    }

    /// The element a prefix becomes in this set: a range in an interval set, else a single address.
    public func element(_ p: IPPrefix) -> SetElement {
        interval ? SetElement(range: p) : SetElement(p.address)
    }
}

/// One `rules:` entry: a template file, resolved against the config file's directory, and its content.
public struct RuleTemplate: Equatable, Sendable {
    /// As written in the config.
    public var given: String
    /// Absolute path.
    public var path: String
    /// The file's text (filled by the loader; empty until then).
    public var text: String
    /// Where the entry is in the config file.
    public var mark: SourceMark

    public init(given: String, path: String, text: String = "", mark: SourceMark = SourceMark(line: 0, column: 0)) {
        self.given = given
        self.path = path
        self.text = text
        self.mark = mark
    }
}

/// One `defines:` entry: `define NAME = VALUE` ahead of the templates. Values are nft text from the config
/// file (root's), never from outside.
public struct Define: Equatable, Sendable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// The control socket (`control:`).
public struct ControlConfig: Equatable, Sendable {
    public var socket: String
    /// Members may use the read-only verbs; root may use all. A group name or a numeric gid.
    public var group: String

    public init(socket: String = "/run/rnm/rnmd.sock", group: String = "rnm") {
        self.socket = socket
        self.group = group
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
