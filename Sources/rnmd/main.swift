import Glibc
import RNMDaemon

// Thin on purpose: parse, then hand over to RNMDaemon.
let command: DaemonCommand
do {
    command = try DaemonCommand.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    writeError("rnmd: \(error)\n\(DaemonCommand.usage)")
    exit(2)
}
switch command {
case .version:
    print(Daemon.version)
case .help:
    print(DaemonCommand.usage, terminator: "")
case .check(let path):
    exit(Daemon.check(configPath: path))
case .render(let path):
    exit(Daemon.render(configPath: path))
case .run(let options):
    exit(Daemon.run(options))
}

func writeError(_ text: String) {
    var bytes = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
    _ = write(2, &bytes, bytes.count)
}
