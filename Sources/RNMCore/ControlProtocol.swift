/// The control protocol: newline-delimited JSON on a Unix socket, one request per line
/// (`{"id":1,"cmd":"status"}`), one response per line (`{"id":1,"ok":true,"result":{…}}` or
/// `{"id":1,"ok":false,"error":{"code":"…","message":"…"}}`). A bare `ping`, `status` or `reload` line gets a
/// plain-text answer, for `echo status | socat - UNIX-CONNECT:/run/rnm/rnmd.sock`.
public enum ControlProtocol {
    /// Longest request line accepted (bytes, without the newline).
    public static let maxLineBytes = 64 * 1024
    /// JSON nesting accepted in a request.
    public static let maxDepth = 8
    /// Addresses accepted in one `set add` / `set del`.
    public static let maxElementsPerRequest = 4096
}

/// What a client asks for.
public enum ControlCommand: Equatable, Sendable {
    case ping
    case status
    case reload
    case sets
    case setShow(set: String)
    case setAdd(set: String, elements: [IPPrefix], timeoutMs: UInt64?)
    case setDel(set: String, elements: [IPPrefix])
    case events
    case metrics
    case plugins
    /// What a reload would change in the kernel: the config file on disk against the live table.
    case plan
    /// Test hook (refused unless rnmd runs with RNMD_TEST_HOOKS=1): block the reconciler for `ms`.
    case debugStall(ms: UInt64)

    /// The verb's name on the wire and in counters.
    public var verb: String {
        switch self {
        case .ping: "ping"
        case .status: "status"
        case .reload: "reload"
        case .sets: "sets"
        case .setShow: "set show"
        case .setAdd: "set add"
        case .setDel: "set del"
        case .events: "events"
        case .metrics: "metrics"
        case .plugins: "plugins"
        case .plan: "plan"
        case .debugStall: "debug stall"
        }
    }

    public static let verbs = ["ping", "status", "reload", "sets", "set show", "set add", "set del", "events", "metrics", "plugins", "plan"]

    /// Changes state: root only. The others are read-only: root and members of the control group.
    public var isMutating: Bool {
        switch self {
        case .reload, .setAdd, .setDel, .debugStall: true
        default: false
        }
    }
}

/// A parsed request. `plain` marks a bare text line, answered in text.
public struct ControlRequest: Equatable, Sendable {
    public var id: JSON
    public var command: ControlCommand
    public var plain: Bool

    public init(id: JSON = .null, command: ControlCommand, plain: Bool = false) {
        self.id = id
        self.command = command
        self.plain = plain
    }

    /// The request as one JSON line (what rnmctl sends).
    public var line: String {
        var pairs: [(String, JSON)] = [("id", id), ("cmd", .string(command.verb))]
        switch command {
        case .setShow(let s): pairs.append(("set", .string(s)))
        case .setAdd(let s, let els, let t):
            pairs.append(("set", .string(s)))
            pairs.append(("elements", .array(els.map { .string($0.compactDescription) })))
            if let t { pairs.append(("timeout", .string(Durations.format(ms: t)))) }
        case .setDel(let s, let els):
            pairs.append(("set", .string(s)))
            pairs.append(("elements", .array(els.map { .string($0.compactDescription) })))
        default: break
        }
        return JSON.object(pairs).text
    }
}

/// A refusal: a stable code for scripts and a message for people.
public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public var json: JSON { .object([("code", .string(code)), ("message", .string(message))]) }
}

extension ControlProtocol {
    /// Parses one request line (without its newline). On failure, returns the id if one could be read.
    public static func parse(_ line: some Collection<UInt8>) -> Result<ControlRequest, RequestFailure> {
        var bytes = Array(line)
        while let last = bytes.last, last == 0x0D || last == 0x20 || last == 0x09 { bytes.removeLast() }
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes.removeFirst() }
        guard bytes.first == UInt8(ascii: "{") else {
            switch String(decoding: bytes, as: UTF8.self) {
            case "ping": return .success(ControlRequest(command: .ping, plain: true))
            case "status": return .success(ControlRequest(command: .status, plain: true))
            case "reload": return .success(ControlRequest(command: .reload, plain: true))
            default:
                return .failure(RequestFailure(id: .null, plain: true, error: ControlError(
                    "invalid_request", "expected a JSON object ({\"cmd\":\"status\"}) or one of: ping, status, reload")))
            }
        }
        let value: JSON
        do {
            value = try JSON.parse(bytes, maxDepth: maxDepth)
        } catch {
            return .failure(RequestFailure(id: .null, plain: false, error: ControlError("parse_error", error.description)))
        }
        guard let fields = value.object else {
            return .failure(RequestFailure(id: .null, plain: false, error: ControlError("invalid_request", "expected a JSON object")))
        }
        let id = value["id"] ?? .null
        func fail(_ code: String, _ message: String) -> Result<ControlRequest, RequestFailure> {
            .failure(RequestFailure(id: id, plain: false, error: ControlError(code, message)))
        }
        switch id {
        case .null, .string, .number: break
        default: return fail("invalid_request", "`id` must be a number or a string")
        }
        guard let cmd = value["cmd"] else { return fail("invalid_request", "missing `cmd`") }
        guard let verb = cmd.string else { return fail("invalid_request", "`cmd` must be a string") }
        let allowed: Set<String>
        switch verb {
        case "set show": allowed = ["id", "cmd", "set"]
        case "set add": allowed = ["id", "cmd", "set", "elements", "timeout"]
        case "set del": allowed = ["id", "cmd", "set", "elements"]
        case "debug stall": allowed = ["id", "cmd", "ms"]
        case _ where ControlCommand.verbs.contains(verb): allowed = ["id", "cmd"]
        default:
            return fail("unknown_command", "unknown command \(YAMLNode.quoted(String(verb.prefix(64)))) (known: \(ControlCommand.verbs.joined(separator: ", ")))")
        }
        for (k, _) in fields where !allowed.contains(k) {
            return fail("invalid_request", "unknown field \(YAMLNode.quoted(String(k.prefix(64)))) for \(verb)")
        }
        func setName() -> Result<String, RequestFailure> {
            guard let s = value["set"] else {
                return .failure(RequestFailure(id: id, plain: false, error: ControlError("invalid_request", "missing `set`")))
            }
            guard let name = s.string, Names.setNameProblem(name) == nil else {
                return .failure(RequestFailure(id: id, plain: false, error: ControlError("invalid_argument", "`set` must be a set name ([a-z][a-z0-9_]*)")))
            }
            return .success(name)
        }
        func elements() -> Result<[IPPrefix], RequestFailure> {
            guard let list = value["elements"]?.array else {
                return .failure(RequestFailure(id: id, plain: false, error: ControlError("invalid_request", "`elements` must be a list of addresses")))
            }
            guard !list.isEmpty, list.count <= maxElementsPerRequest else {
                return .failure(RequestFailure(id: id, plain: false, error: ControlError(
                    "invalid_argument", "give 1 to \(maxElementsPerRequest) addresses, got \(list.count)")))
            }
            var out: [IPPrefix] = []
            for item in list {
                guard let s = item.string, let p = IPPrefix(s) else {
                    let shown = item.string.map { YAMLNode.quoted(String($0.prefix(64))) } ?? item.text.prefix(64).description
                    return .failure(RequestFailure(id: id, plain: false, error: ControlError(
                        "invalid_argument", "not an IPv4/IPv6 address or prefix: \(shown)")))
                }
                out.append(p)
            }
            return .success(out)
        }
        switch verb {
        case "ping": return .success(ControlRequest(id: id, command: .ping))
        case "status": return .success(ControlRequest(id: id, command: .status))
        case "reload": return .success(ControlRequest(id: id, command: .reload))
        case "sets": return .success(ControlRequest(id: id, command: .sets))
        case "events": return .success(ControlRequest(id: id, command: .events))
        case "metrics": return .success(ControlRequest(id: id, command: .metrics))
        case "plugins": return .success(ControlRequest(id: id, command: .plugins))
        case "plan": return .success(ControlRequest(id: id, command: .plan))
        case "debug stall":
            guard let ms = value["ms"]?.int, (1...60_000).contains(ms) else { return fail("invalid_argument", "`ms` must be 1 to 60000") }
            return .success(ControlRequest(id: id, command: .debugStall(ms: UInt64(ms))))
        case "set show":
            return setName().map { ControlRequest(id: id, command: .setShow(set: $0)) }
        case "set del":
            return setName().flatMap { s in elements().map { ControlRequest(id: id, command: .setDel(set: s, elements: $0)) } }
        default:  // set add
            var timeout: UInt64? = nil
            if let t = value["timeout"] {
                guard let text = t.string else { return fail("invalid_argument", "`timeout` must be a duration such as \"10m\"") }
                switch Durations.parse(text) {
                case .success(let ms): timeout = ms
                case .failure(let e): return fail("invalid_argument", e.description)
                }
            }
            return setName().flatMap { s in
                elements().map { ControlRequest(id: id, command: .setAdd(set: s, elements: $0, timeoutMs: timeout)) }
            }
        }
    }

    /// `{"id":…,"ok":true,"result":…}`
    public static func success(id: JSON, _ result: JSON) -> String {
        JSON.object([("id", id), ("ok", .bool(true)), ("result", result)]).text
    }

    /// `{"id":…,"ok":false,"error":{"code":…,"message":…}}`
    public static func failure(id: JSON, _ error: ControlError) -> String {
        JSON.object([("id", id), ("ok", .bool(false)), ("error", error.json)]).text
    }
}

public struct RequestFailure: Error, Equatable, Sendable {
    public var id: JSON
    public var plain: Bool
    public var error: ControlError
}
