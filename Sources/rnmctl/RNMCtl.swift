import ArgumentParser
import Glibc
import RNMControlClient
import RNMCore

/// Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 cannot connect or timed out.
enum Exit {
    static let daemonError: Int32 = 1
    static let usage: Int32 = 2
    static let unreachable: Int32 = 3
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The control socket (default: $RNM_SOCKET, else /run/rnm/rnmd.sock).", valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print the daemon's JSON exactly as it answered.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Give up after this many seconds.", valueName: "seconds"))
    var timeout: Double = 5

    func validate() throws {
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be between 0 and 3600 seconds") }
    }

    var client: ControlClient {
        let env = getenv("RNM_SOCKET").map { String(cString: $0) }
        let path = socket ?? (env?.isEmpty == false ? env! : "/run/rnm/rnmd.sock")
        return ControlClient(socket: path, timeout: .milliseconds(Int64(timeout * 1000)))
    }
}

@main
struct RNMCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnmctl",
        abstract: "Talk to rnmd: status, reload, manual set entries, live events.",
        discussion: """
            Exit codes: 0 ok, 1 rnmd answered with an error, 2 usage error, 3 cannot connect or timed out.
            Read-only commands need root or membership of the control group; reload and set add/del need root.
            """,
        version: RNMVersionInfo.version,
        subcommands: [
            Ping.self, Status.self, Reload.self, Plan.self, Sets.self, SetCommand.self, Monitor.self, Metrics.self,
            Plugins.self,
        ])

    @OptionGroup var global: GlobalOptions

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            writeError(fullMessage(for: error))
            Glibc.exit(Exit.usage)
        }
    }
}

func writeError(_ text: String) {
    var bytes = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
    _ = write(2, &bytes, bytes.count)
}

/// Sends one request; prints the raw line with --json, else `render(result)`. Exits with the right code.
func perform(_ global: GlobalOptions, _ command: ControlCommand, render: (JSON) -> String) throws {
    let (line, json): (String, JSON)
    do {
        (line, json) = try global.client.request(ControlRequest(id: .int(1), command: command))
    } catch {
        writeError("rnmctl: \(error)")
        throw ExitCode(Exit.unreachable)
    }
    if global.json {
        print(line)
        if json["ok"]?.bool != true { throw ExitCode(Exit.daemonError) }
        _ = render(json["result"] ?? .null)  // for commands that derive their exit code from the result
        return
    }
    guard json["ok"]?.bool == true else {
        let e = json["error"]
        writeError("rnmctl: \(command.verb): \(e?["message"]?.string ?? line) [\(e?["code"]?.string ?? "error")]")
        throw ExitCode(Exit.daemonError)
    }
    let text = render(json["result"] ?? .null)
    if !text.isEmpty { print(text) }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that rnmd answers.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try perform(global, .ping) { r in
            "pong from rnmd \(r["version"]?.string ?? "?") (up \(Durations.format(ms: UInt64(r["uptime_ms"]?.int ?? 0))))"
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "State, interfaces, sets and counters.")
    @OptionGroup var global: GlobalOptions

    func run() throws { try perform(global, .status, render: ControlText.status) }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the config, all or nothing (root).",
        discussion: "A bad file keeps the running config; the error names file, line and column.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try perform(global, .reload) { r in
            "reloaded: generation \(r["generation"]?.int ?? 0)" + (r["changed"]?.bool == false ? " (config unchanged)" : "")
        }
    }
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What a reload would change: the config on disk against the live table.",
        discussion: """
            Lists the chains, rules, set declarations (in nft's canonical form) and managed set elements that
            differ, `+` to add and `-` to remove; "in sync" when there is nothing to do. Changes nothing.
            With --exit-code: 0 in sync, 4 when something differs.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Exit with 4 when the table differs from the config (0 when in sync).")
    var exitCode = false

    func run() throws {
        var inSync = true
        try perform(global, .plan) { r in
            inSync = r["in_sync"]?.bool ?? true
            var t = r["text"]?.string ?? ""
            if t.hasSuffix("\n") { t.removeLast() }
            return t
        }
        if exitCode && !inSync { throw ExitCode(4) }
    }
}

struct Sets: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The managed sets: type, flags, element count, owners.")
    @OptionGroup var global: GlobalOptions

    func run() throws { try perform(global, .sets, render: ControlText.sets) }
}

struct SetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Show a set, or add and delete manual entries.",
        subcommands: [Show.self, Add.self, Del.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A set's elements with owners and remaining timeouts.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The set.") var name: String

        func run() throws { try perform(global, .setShow(set: name), render: ControlText.setShow) }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add manual entries to a declared set (root).",
            discussion: """
                Addresses (or prefixes, for sets with the interval flag), optionally followed by `timeout DURATION`
                (90s, 30m, 1h30m, 2d) for sets with the timeout flag: the kernel removes them when it runs out.
                Example: rnmctl set add blocklist_v4 192.0.2.7 198.51.100.0/24 timeout 1h
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The set.") var name: String
        @Argument(help: ArgumentHelp("Addresses, then optionally: timeout DURATION.", valueName: "address"))
        var items: [String]

        func run() throws {
            let (elements, timeout) = try parseItems(items, allowTimeout: true)
            try perform(global, .setAdd(set: name, elements: elements, timeoutMs: timeout)) { r in
                let added = (r["added"]?.array ?? []).compactMap(\.string)
                return "added to \(name): \(added.joined(separator: " "))" + (timeout.map { " (timeout \(Durations.format(ms: $0)))" } ?? "")
            }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete manual entries from a set (root).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The set.") var name: String
        @Argument(help: ArgumentHelp("Addresses or prefixes, as they were added.", valueName: "address"))
        var items: [String]

        func run() throws {
            let (elements, _) = try parseItems(items, allowTimeout: false)
            try perform(global, .setDel(set: name, elements: elements)) { r in
                "removed from \(name): " + (r["removed"]?.array ?? []).compactMap(\.string).joined(separator: " ")
            }
        }
    }
}

/// `ADDR… [timeout DURATION]`, validated before anything is sent.
func parseItems(_ items: [String], allowTimeout: Bool) throws -> ([IPPrefix], UInt64?) {
    var list = items
    var timeout: UInt64? = nil
    if allowTimeout, list.count >= 2, list[list.count - 2] == "timeout" {
        switch Durations.parse(list[list.count - 1]) {
        case .success(let ms): timeout = ms
        case .failure(let e): throw ValidationError(e.description)
        }
        list.removeLast(2)
    }
    guard !list.isEmpty else { throw ValidationError("give at least one address") }
    var out: [IPPrefix] = []
    for s in list {
        guard let p = IPPrefix(s) else { throw ValidationError("not an IPv4/IPv6 address or prefix: \(s)") }
        out.append(p)
    }
    return (out, timeout)
}

struct Monitor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow live events: address changes, commits, resyncs, reloads, errors.",
        discussion: "Runs until interrupted or rnmd stops. A client that reads too slowly loses its oldest events (and is told).")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        do {
            try global.client.stream(ControlRequest(id: .int(1), command: .events)) { line, json in
                if json["ok"]?.bool != true {
                    writeError("rnmctl: events: \(json["error"]?["message"]?.string ?? line)")
                }
            } onLine: { line in
                if global.json {
                    print(line)
                } else if let e = try? JSON.parse(line, maxDepth: 16) {
                    print(ControlText.event(e))
                }
                fflush(nil)  // one event per line, as it happens
                return true
            }
        } catch {
            writeError("rnmctl: \(error)")
            throw ExitCode(Exit.unreachable)
        }
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counters in Prometheus text format.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try perform(global, .metrics) { r in
            var t = r["text"]?.string ?? ""
            if t.hasSuffix("\n") { t.removeLast() }
            return t
        }
    }
}

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Plugins.", subcommands: [List.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Configured plugins: state, health, version, granted sets with element counts, calls accepted, rejected and refused as busy, last error.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try perform(global, .plugins) { r in ControlText.plugins(r) }
        }
    }
}
