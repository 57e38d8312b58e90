internal import Logging

/// `rnmd`'s command line. Hand-parsed: the daemon stays free of ArgumentParser, which links
/// FoundationEssentials (2 MiB of resident memory in a process that otherwise needs none of it).
public enum DaemonCommand: Equatable, Sendable {
    case run(DaemonOptions)
    case check(configPath: String)
    case render(configPath: String)
    case version
    case help

    public static let usage = """
        USAGE: rnmd [--config PATH] [--check | --render] [--log-level LEVEL] [--netlink-buffer BYTES]
                    [--nft-buffer BYTES]

        Owns one nftables table (inet) and keeps it in lockstep with the config, its rule templates and the
        live network. Runs in the foreground. SIGHUP re-reads the config (all or nothing); SIGTERM and SIGINT
        stop the daemon and leave the table as last committed.

        OPTIONS:
          --config PATH           The config file (default: /etc/rnm/config.yaml).
          --check                 Validate the config and its rule templates and exit: 0 valid, 1 invalid.
                                  As root, the kernel also checks the rendered table (a dry run: nothing
                                  changes).
          --render                Print the exact table text rnmd would load now (reads addresses and
                                  manual entries; changes nothing) and exit.
          --log-level LEVEL       trace, debug, info, notice, warning, error or critical (default: info).
          --netlink-buffer BYTES  Receive buffer for link and address notifications (default: 4194304).
          --nft-buffer BYTES      Receive buffer for nftables notifications (default: 8388608). When it
                                  overflows, rnmd audits its table.
          --version               Print the version.
          -h, --help              Show this help.

        """

    public struct UsageError: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Parses the arguments after the program name. `--opt value` and `--opt=value` are both accepted.
    public static func parse(_ arguments: [String]) throws(UsageError) -> DaemonCommand {
        var options = DaemonOptions(configPath: "/etc/rnm/config.yaml")
        var check = false
        var render = false
        var i = 0
        func value(_ name: String, _ inline: String?) throws(UsageError) -> String {
            if let inline { return inline }
            i += 1
            guard i < arguments.count else { throw UsageError(description: "missing value for \(name)") }
            return arguments[i]
        }
        while i < arguments.count {
            let arg = arguments[i]
            var name = arg
            var inline: String? = nil
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            switch name {
            case "--config":
                options.configPath = try value(name, inline)
                if options.configPath.isEmpty { throw UsageError(description: "--config needs a path") }
            case "--check":
                check = true
            case "--render":
                render = true
            case "--log-level":
                let v = try value(name, inline)
                guard let level = Logger.Level(rawValue: v) else {
                    throw UsageError(description: "--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(v)")
                }
                options.logLevel = level
            case "--netlink-buffer":
                let v = try value(name, inline)
                guard let n = Int(v), n >= 4096, n <= 1 << 30 else {
                    throw UsageError(description: "--netlink-buffer must be a number of bytes from 4096 to 1073741824; got \(v)")
                }
                options.netlinkBuffer = n
            case "--nft-buffer":
                let v = try value(name, inline)
                guard let n = Int(v), n >= 4096, n <= 1 << 30 else {
                    throw UsageError(description: "--nft-buffer must be a number of bytes from 4096 to 1073741824; got \(v)")
                }
                options.nftBuffer = n
            case "--version":
                return .version
            case "-h", "--help", "help":
                return .help
            default:
                throw UsageError(description: "unknown argument \(arg)")
            }
            i += 1
        }
        if check && render { throw UsageError(description: "--check and --render cannot be combined") }
        if render { return .render(configPath: options.configPath) }
        return check ? .check(configPath: options.configPath) : .run(options)
    }
}
