import Logging
import RNMDaemon
import Testing

@Suite struct ArgumentsTests {
    @Test func defaults() throws {
        #expect(try DaemonCommand.parse([]) == .run(DaemonOptions(configPath: "/etc/rnm/config.yaml")))
    }

    @Test func everyOption_inBothSpellings() throws {
        let expected = DaemonCommand.run(DaemonOptions(configPath: "/x.yaml", logLevel: .debug, netlinkBuffer: 65536, nftBuffer: 8192))
        #expect(try DaemonCommand.parse(["--config", "/x.yaml", "--log-level", "debug", "--netlink-buffer", "65536", "--nft-buffer", "8192"]) == expected)
        #expect(try DaemonCommand.parse(["--config=/x.yaml", "--log-level=debug", "--netlink-buffer=65536", "--nft-buffer=8192"]) == expected)
        #expect(try DaemonCommand.parse(["--check", "--config", "/y.yaml"]) == .check(configPath: "/y.yaml"))
        #expect(try DaemonCommand.parse(["--render", "--config", "/y.yaml"]) == .render(configPath: "/y.yaml"))
        #expect(throws: DaemonCommand.UsageError.self) { try DaemonCommand.parse(["--render", "--check"]) }
        #expect(try DaemonCommand.parse(["--version"]) == .version)
        #expect(try DaemonCommand.parse(["-h"]) == .help)
    }

    @Test(arguments: [
        (["--bogus"], "unknown argument --bogus"),
        (["--config"], "missing value for --config"),
        (["--config="], "--config needs a path"),
        (["--log-level", "loud"], "--log-level must be one of trace, debug, info, notice, warning, error, critical; got loud"),
        (["--netlink-buffer", "12"], "--netlink-buffer must be a number of bytes from 4096 to 1073741824; got 12"),
        (["--netlink-buffer", "lots"], "--netlink-buffer must be a number of bytes from 4096 to 1073741824; got lots"),
    ])
    func badArguments_sayWhatIsWrong(_ args: [String], _ message: String) {
        #expect(throws: DaemonCommand.UsageError(description: message)) { try DaemonCommand.parse(args) }
    }
}
