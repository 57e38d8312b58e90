internal import FoundationEssentials

/// The plugin's config (its `config:` entry in config.yaml, as JSON) and the rules that turn containers into
/// set members.
public struct DockerConfig: Equatable, Sendable {
    public var socket: String
    public var rules: [Rule]

    public struct Rule: Equatable, Sendable {
        /// The container must carry this label (and, with `value`, with exactly that value).
        public var label: String?
        public var value: String?
        /// Only the addresses on this network; nil: on every network.
        public var network: String?
        public var setV4: String?
        public var setV6: String?
        /// The label's value names the sets: `<value>_v4`, `<value>_v6`.
        public var setsFromLabelValue: Bool

        public init(label: String? = nil, value: String? = nil, network: String? = nil, setV4: String? = nil,
                    setV6: String? = nil, setsFromLabelValue: Bool = false) {
            self.label = label
            self.value = value
            self.network = network
            self.setV4 = setV4
            self.setV6 = setV6
            self.setsFromLabelValue = setsFromLabelValue
        }
    }

    public init(socket: String = "/var/run/docker.sock", rules: [Rule] = []) {
        self.socket = socket
        self.rules = rules
    }

    public struct Problem: Error, Equatable, Sendable, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// Decodes and checks the config; every problem names the field.
    public static func parse(_ json: [UInt8]) throws(Problem) -> DockerConfig {
        let raw: RawConfig
        do {
            raw = try JSONDecoder().decode(RawConfig.self, from: Data(json))
        } catch let e as Problem {
            throw e
        } catch {
            throw Problem("config: \(Self.describe(error))")
        }
        var config = DockerConfig()
        if let s = raw.socket {
            guard s.hasPrefix("/"), !s.utf8.contains(0), s.utf8.count <= 107 else {
                throw Problem("config.socket: expected an absolute path of at most 107 bytes")
            }
            config.socket = s
        }
        guard let rules = raw.rules, !rules.isEmpty else { throw Problem("config.rules: at least one rule is needed") }
        for (i, r) in rules.enumerated() {
            let at = "config.rules[\(i)]"
            if r.label == nil && r.network == nil { throw Problem("\(at): needs `label` or `network` (or both)") }
            if r.value != nil && r.label == nil { throw Problem("\(at).value: needs `label`") }
            if r.setsFromLabelValue == true {
                if r.label == nil { throw Problem("\(at).sets_from_label_value: needs `label`") }
                if r.value != nil { throw Problem("\(at).sets_from_label_value: cannot go with `value` (the value names the sets)") }
            }
            if r.setV4 == nil && r.setV6 == nil && r.setsFromLabelValue != true {
                throw Problem("\(at): needs `set_v4`, `set_v6` or `sets_from_label_value: true`")
            }
            for (key, name) in [("set_v4", r.setV4), ("set_v6", r.setV6)] {
                if let name, !isSetName(name) { throw Problem("\(at).\(key): \(quoted(name)) is not a set name ([a-z][a-z0-9_]*, at most 32)") }
            }
            config.rules.append(Rule(label: r.label, value: r.value, network: r.network, setV4: r.setV4, setV6: r.setV6,
                                     setsFromLabelValue: r.setsFromLabelValue ?? false))
        }
        return config
    }

    /// Every set name the rules name outright (label-derived ones are found per container).
    public var fixedSets: Set<String> { Set(rules.flatMap { [$0.setV4, $0.setV6].compactMap { $0 } }) }

    public static func isSetName(_ s: String, max: Int = 32) -> Bool {
        let u = Array(s.utf8)
        guard let f = u.first, u.count <= max, f >= 0x61 && f <= 0x7A else { return false }
        return u.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    /// Quoted with control characters escaped (`\n`, `\t`, `\xHH`, as rnmd escapes its own log text) and
    /// the length capped: for messages about outside text.
    public static func quoted(_ s: String, max: Int = 64) -> String {
        var out = "\""
        for (i, u) in s.unicodeScalars.enumerated() {
            if i == max {
                out += "…"
                break
            }
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let hex = String(u.value, radix: 16)
                    out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.typeMismatch(let t, let c): return "\(path(c.codingPath)): expected \(t)"
        case DecodingError.keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): missing"
        case DecodingError.valueNotFound(let t, let c): return "\(path(c.codingPath)): expected \(t), got null"
        case DecodingError.dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        default: return "\(error)"
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
    }

    /// The JSON as given, refusing keys it does not know (a typo must not silently select nothing).
    private struct RawConfig: Decodable {
        var socket: String?
        var rules: [RawRule]?

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            try AnyKey.refuseUnknown(c, known: ["socket", "rules"], at: "config")
            socket = try c.decodeIfPresent(String.self, forKey: AnyKey("socket"))
            rules = try c.decodeIfPresent([RawRule].self, forKey: AnyKey("rules"))
        }
    }

    private struct RawRule: Decodable {
        var label, value, network, setV4, setV6: String?
        var setsFromLabelValue: Bool?

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            let at = "config." + DockerConfig.path(decoder.codingPath)
            try AnyKey.refuseUnknown(c, known: ["label", "value", "network", "set_v4", "set_v6", "sets_from_label_value"], at: at)
            label = try c.decodeIfPresent(String.self, forKey: AnyKey("label"))
            value = try c.decodeIfPresent(String.self, forKey: AnyKey("value"))
            network = try c.decodeIfPresent(String.self, forKey: AnyKey("network"))
            setV4 = try c.decodeIfPresent(String.self, forKey: AnyKey("set_v4"))
            setV6 = try c.decodeIfPresent(String.self, forKey: AnyKey("set_v6"))
            setsFromLabelValue = try c.decodeIfPresent(Bool.self, forKey: AnyKey("sets_from_label_value"))
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }

        static func refuseUnknown(_ c: KeyedDecodingContainer<AnyKey>, known: [String], at: String) throws {
            for k in c.allKeys where !known.contains(k.stringValue) {
                throw Problem("\(at).\(k.stringValue): unknown key (known: \(known.joined(separator: ", ")))")
            }
        }
    }
}

/// One address in one set.
public struct Membership: Hashable, Comparable, Sendable {
    public var set: String
    public var address: String

    public init(set: String, address: String) {
        self.set = set
        self.address = address
    }

    public static func < (a: Membership, b: Membership) -> Bool { (a.set, a.address) < (b.set, b.address) }
}

/// What the running containers contribute, by container, with a reference count per (set, address): an
/// address that a new container took over from a dead one stays as long as any container holds it.
public struct ContainerTracker: Sendable {
    public let config: DockerConfig
    private var byContainer: [String: [Membership]] = [:]
    private var counts: [Membership: Int] = [:]
    /// Containers whose label value could not name a set (counted once per container).
    private var refused: Set<String> = []
    public private(set) var refusedCount = 0

    public init(config: DockerConfig) { self.config = config }

    public var containerCount: Int { byContainer.count }

    /// Whether the container is known to be running.
    public func isTracked(_ id: String) -> Bool { byContainer[id] != nil }

    /// Every (set, address) the current containers contribute.
    public var members: Set<Membership> { Set(counts.keys) }

    /// What a container contributes under the rules, and the label values it carried that name no set.
    public func memberships(of c: Docker.Inspect) -> (members: [Membership], refusedValues: [String]) {
        guard c.running else { return ([], []) }
        var out = Set<Membership>()
        var refusedValues: [String] = []
        for rule in config.rules {
            var value: String? = nil
            if let label = rule.label {
                guard let v = c.labels[label] else { continue }
                if let want = rule.value, v != want { continue }
                value = v
            }
            var v4 = rule.setV4
            var v6 = rule.setV6
            if rule.setsFromLabelValue, let value {
                // The value becomes part of a set name only if it is one: [a-z][a-z0-9_]*, room for "_v4".
                guard DockerConfig.isSetName(value, max: 29) else {
                    refusedValues.append(value)
                    continue
                }
                v4 = value + "_v4"
                v6 = value + "_v6"
            }
            for (network, endpoint) in c.networks where rule.network == nil || rule.network == network {
                if let v4, !endpoint.ipv4.isEmpty { out.insert(Membership(set: v4, address: endpoint.ipv4)) }
                if let v6, !endpoint.ipv6.isEmpty { out.insert(Membership(set: v6, address: endpoint.ipv6)) }
            }
        }
        return (out.sorted(), refusedValues)
    }

    /// The container's new state (nil: gone or not running). Returns the (set, address) pairs that appear
    /// and disappear from the union, and label values refused for the first time for this container.
    public mutating func update(_ id: String, _ c: Docker.Inspect?) -> (added: [Membership], removed: [Membership], refused: [String]) {
        let (new, refusedValues) = c.map(memberships) ?? ([], [])
        let old = byContainer[id] ?? []
        var added: [Membership] = []
        var removed: [Membership] = []
        let oldSet = Set(old)
        let newSet = Set(new)
        for m in new where !oldSet.contains(m) {
            counts[m, default: 0] += 1
            if counts[m] == 1 { added.append(m) }
        }
        for m in old where !newSet.contains(m) {
            let n = (counts[m] ?? 1) - 1
            counts[m] = n > 0 ? n : nil
            if n <= 0 { removed.append(m) }
        }
        // Running containers are tracked even when no rule selects them ("watching N containers").
        byContainer[id] = c?.running == true ? new : nil
        var firstRefusal: [String] = []
        if !refusedValues.isEmpty {
            if !refused.contains(id) {
                refused.insert(id)
                refusedCount += refusedValues.count
                firstRefusal = refusedValues
            }
        } else if c?.running != true {
            refused.remove(id)
        }
        return (added.sorted(), removed.sorted(), firstRefusal)
    }

    /// Starts over from a full listing (after a (re)connect).
    public mutating func reset(_ containers: [Docker.Inspect]) -> [String] {
        byContainer = [:]
        counts = [:]
        var newlyRefused: [String] = []
        for c in containers { newlyRefused += update(c.id, c).refused }
        return newlyRefused
    }

    /// The full contribution per set (for set_replace), including empty sets from `alsoSets`.
    public func contribution(alsoSets: Set<String>) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for s in alsoSets { out[s] = [] }
        for m in counts.keys { out[m.set, default: []].append(m.address) }
        return out.mapValues { $0.sorted() }
    }
}

