// swift-tools-version:6.2
// rnm: keeps nftables in lockstep with the live network.
//
// Layering (see docs/architecture.md):
//   RNMCore        pure Swift: model, config, reconcile, plan. Imports no C module and no Glibc.
//   RNMYAML        libyaml -> RNMCore.YAMLNode tree with marks (the only YAML parser).
//   RNMNetlink     rtnetlink monitor over libmnl.
//   RNMFirewall    nftables: element transactions over libnftnl + libmnl, whole-table loads and listings
//                  over libnftables, the drift watcher.
//   RNMPluginABI   rnm_plugin.h, the C ABI plugins are built against.
//   RNMDaemon      event bus, reconciler loop, plugin host, logging, wiring. Testable on fakes.
//   rnmd           thin executable.
import Foundation
import PackageDescription

let packageDirectory = "/" + #filePath.split(separator: "/").dropLast().joined(separator: "/")

let version: String = {
    // One place for the version: the VERSION file next to this manifest.
    let here = #filePath.split(separator: "/").dropLast().joined(separator: "/")
    if let text = try? String(contentsOfFile: "/" + here + "/VERSION", encoding: .utf8) {
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return "0.0.0"
}()

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "rnm",
    products: [
        .executable(name: "rnmd", targets: ["rnmd"]),
        .executable(name: "rnmctl", targets: ["rnmctl"]),
        // Built-in plugins: shared objects rnmd loads through the C ABI (installed as <plugin_dir>/<name>.so).
        .library(name: "rnm-docker", type: .dynamic, targets: ["RNMDockerPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(name: "CMnl", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),
        .systemLibrary(name: "CNftnl", pkgConfig: "libnftnl", providers: [.apt(["libnftnl-dev"])]),
        .systemLibrary(name: "CNftables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .target(
            name: "CRNMShims",
            dependencies: ["CMnl"],
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(
            name: "CRNMVersion",
            cSettings: [.define("RNM_VERSION", to: "\"\(version)\"")]
        ),

        // The plugin ABI: include/rnm_plugin.h is the public contract (installed for out-of-tree plugins);
        // abi.c freezes its layout at compile time.
        .target(name: "RNMPluginABI"),
        // Swift plugins' side of the ABI (toolchain identity, C strings); the host uses it to judge them.
        .target(name: "RNMPluginKit"),

        // MARK: Pure core
        .target(name: "RNMCore"),

        // MARK: Shells
        .target(name: "RNMYAML", dependencies: ["RNMCore", "CYAML", "CRNMShims"]),
        .target(name: "RNMNetlink", dependencies: ["RNMCore", "CMnl", "CRNMShims"]),
        .target(name: "RNMFirewall", dependencies: ["RNMCore", "RNMNetlink", "CMnl", "CNftnl", "CNftables", "CRNMShims"]),
        .target(
            name: "RNMDaemon",
            dependencies: [
                "RNMCore", "RNMYAML", "RNMNetlink", "RNMFirewall", "CRNMShims", "CRNMVersion", "RNMPluginABI", "RNMPluginKit",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .target(name: "RNMControlClient", dependencies: ["RNMCore"]),

        // MARK: Fakes shipped for tests
        .target(name: "RNMTesting", dependencies: ["RNMCore"]),

        // MARK: Executables
        .executableTarget(
            name: "rnmd",
            dependencies: ["RNMDaemon"],
            // Link only the Swift runtime libraries the daemon uses: every module's implicit
            // _StringProcessing import would otherwise map ~1 MiB of regex support into an idle daemon.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--as-needed"])]
        ),

        .executableTarget(
            name: "rnmctl",
            dependencies: [
                "RNMCore", "RNMControlClient", "CRNMVersion",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Plugins (they import only the ABI and the plugin kit, never host modules)
        .target(name: "RNMDocker", path: "Plugins/docker/Sources/RNMDocker"),
        .target(
            name: "RNMDockerPlugin",
            dependencies: ["RNMDocker", "RNMPluginABI", "RNMPluginKit"],
            path: "Plugins/docker/Sources/RNMDockerPlugin",
            // Export only rnm_plugin_entry_v1: the plugin's own copies of everything stay private.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(packageDirectory)/Plugins/docker/exports.map"])]
        ),

        // MARK: Benchmarks (in-process parts; see Benchmarks/run.py for the end-to-end ones)
        .executableTarget(name: "rnm-bench", dependencies: ["RNMCore", "RNMFirewall"], path: "Benchmarks/RNMBench"),

        // MARK: Tests
        .testTarget(name: "RNMCoreTests", dependencies: ["RNMCore", "RNMTesting"]),
        .testTarget(name: "RNMConfigTests", dependencies: ["RNMCore", "RNMYAML"], exclude: ["Fixtures"]),
        .testTarget(name: "RNMNetlinkTests", dependencies: ["RNMCore", "RNMNetlink"], exclude: ["Fixtures"]),
        .testTarget(name: "RNMDaemonTests", dependencies: ["RNMCore", "RNMDaemon", "RNMTesting"]),
        .testTarget(name: "RNMDockerTests", dependencies: ["RNMDocker"], path: "Plugins/docker/Tests/RNMDockerTests"),
    ]
)

for target in package.targets where target.type != .system {
    if target.name.hasPrefix("C") { continue }
    target.swiftSettings = (target.swiftSettings ?? []) + strict
}
