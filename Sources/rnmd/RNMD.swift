import ArgumentParser
import Logging
import RNMDaemon

@main
struct RNMD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnmd",
        abstract: "Keeps nftables sets in lockstep with the live network.",
        discussion: """
            Runs in the foreground. SIGHUP re-reads the config (all or nothing); SIGTERM and SIGINT stop the \
            daemon and leave the table as last committed.
            """,
        version: Daemon.version)

    @Option(name: .long, help: "The config file.")
    var config: String = "/etc/rnm/config.yaml"

    @Flag(name: .long, help: "Validate the config and exit: 0 valid, 1 invalid. Touches nothing.")
    var check = false

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Netlink receive buffer in bytes.")
    var netlinkBuffer: Int = 4 << 20

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard netlinkBuffer >= 4096 else { throw ValidationError("--netlink-buffer must be at least 4096") }
    }

    func run() async throws {
        if check { throw ExitCode(Daemon.check(configPath: config)) }
        let code = await Daemon.run(
            DaemonOptions(configPath: config, logLevel: Logger.Level(rawValue: logLevel)!, netlinkBuffer: netlinkBuffer))
        if code != 0 { throw ExitCode(code) }
    }
}
