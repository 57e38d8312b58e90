internal import FoundationEssentials

/// The few fields of the Docker Engine API this plugin reads.
public enum Docker {
    /// `GET /containers/json`: running containers.
    public struct Summary: Decodable, Sendable {
        public var id: String
        enum CodingKeys: String, CodingKey { case id = "Id" }
    }

    /// `GET /containers/{id}/json`.
    public struct Inspect: Decodable, Equatable, Sendable {
        public var id: String
        public var name: String?
        public var running: Bool
        public var labels: [String: String]
        /// Network name → (IPv4, global IPv6), as Docker reports them ("" when none).
        public var networks: [String: Endpoint]

        public struct Endpoint: Decodable, Equatable, Sendable {
            public var ipv4: String
            public var ipv6: String

            public init(ipv4: String, ipv6: String) {
                self.ipv4 = ipv4
                self.ipv6 = ipv6
            }

            enum CodingKeys: String, CodingKey { case ipv4 = "IPAddress", ipv6 = "GlobalIPv6Address" }

            public init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                ipv4 = try c.decodeIfPresent(String.self, forKey: .ipv4) ?? ""
                ipv6 = try c.decodeIfPresent(String.self, forKey: .ipv6) ?? ""
            }
        }

        enum Keys: String, CodingKey {
            case id = "Id", name = "Name", state = "State", config = "Config", networkSettings = "NetworkSettings"
            case running = "Running", labels = "Labels", networks = "Networks"
        }

        public init(id: String, name: String? = nil, running: Bool = true, labels: [String: String] = [:], networks: [String: Endpoint] = [:]) {
            self.id = id
            self.name = name
            self.running = running
            self.labels = labels
            self.networks = networks
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            id = try c.decode(String.self, forKey: .id)
            name = try c.decodeIfPresent(String.self, forKey: .name)
            let state = try c.nestedContainer(keyedBy: Keys.self, forKey: .state)
            running = try state.decodeIfPresent(Bool.self, forKey: .running) ?? false
            if c.contains(.config), try !c.decodeNil(forKey: .config) {
                let config = try c.nestedContainer(keyedBy: Keys.self, forKey: .config)
                labels = try config.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
            } else {
                labels = [:]
            }
            if c.contains(.networkSettings), try !c.decodeNil(forKey: .networkSettings) {
                let settings = try c.nestedContainer(keyedBy: Keys.self, forKey: .networkSettings)
                networks = try settings.decodeIfPresent([String: Endpoint].self, forKey: .networks) ?? [:]
            } else {
                networks = [:]
            }
        }
    }

    /// One object of the `/events` stream.
    public struct Event: Decodable, Sendable {
        public var type: String
        public var action: String
        public var actorID: String
        public var attributes: [String: String]

        enum Keys: String, CodingKey { case type = "Type", action = "Action", actor = "Actor", id = "ID", attributes = "Attributes" }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            type = try c.decodeIfPresent(String.self, forKey: .type) ?? ""
            action = try c.decodeIfPresent(String.self, forKey: .action) ?? ""
            let actor = try c.nestedContainer(keyedBy: Keys.self, forKey: .actor)
            actorID = try actor.decodeIfPresent(String.self, forKey: .id) ?? ""
            attributes = try actor.decodeIfPresent([String: String].self, forKey: .attributes) ?? [:]
        }

        /// The container this event is about (container events: the actor; network events: the attribute).
        public var container: String? {
            switch type {
            case "container": return actorID.isEmpty ? nil : actorID
            case "network": return attributes["container"]
            default: return nil
            }
        }

        /// What an event means for the container's addresses.
        public enum Effect: Equatable, Sendable {
            /// It is no longer running: its addresses go, no need to ask Docker (which would answer only
            /// once the container's cleanup is done, tens of milliseconds later).
            case gone
            /// It may have started or changed: inspect it.
            case refresh
            /// A network was connected or disconnected: inspect it if it is running (while it starts, its
            /// `start` event follows and covers every network).
            case network
            /// Nothing that touches addresses (exec, health checks, kill signals, pause...).
            case none
        }

        public var effect: Effect {
            switch type {
            case "container":
                // "exec_start: sh", "health_status: healthy": the action's first word.
                switch action.split(separator: ":").first.map(String.init) ?? action {
                case "die", "destroy": return .gone
                case "start", "restart", "rename": return .refresh
                default: return .none
                }
            case "network": return action == "connect" || action == "disconnect" ? .network : .none
            default: return .none
            }
        }
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }

    /// `/events?since=…&filters=…`, percent-encoded.
    public static func eventsPath(since: String) -> String {
        let filters = #"{"type":["container","network"]}"#
        return "/events?since=\(since)&filters=\(percentEncoded(filters))"
    }

    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let h = String(b, radix: 16, uppercase: true)
                out += "%" + (h.count < 2 ? "0" + h : h)
            }
        }
        return out
    }
}
