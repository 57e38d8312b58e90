// swift-tools-version:6.2
// An rnmd plugin in Swift: libexample_swift.so, loaded by rnmd through the C ABI in rnm_plugin.h.
// Build with the same Swift toolchain as rnmd (see README.md): `swift build -c release`.
import PackageDescription

// The linker version script next to this manifest: the .so exports rnm_plugin_entry_v1 and nothing else.
let here = String(#filePath.prefix(upTo: #filePath.lastIndex(of: "/")!))

let package = Package(
    name: "example-swift",
    products: [
        .library(name: "example_swift", type: .dynamic, targets: ["ExampleSwift"]),
    ],
    targets: [
        // The ABI header, found through pkg-config (rnm-plugin.pc): no code from rnmd is linked.
        .systemLibrary(name: "CRNMPlugin", pkgConfig: "rnm-plugin"),
        .target(
            name: "ExampleSwift",
            dependencies: ["CRNMPlugin"],
            swiftSettings: [.swiftLanguageMode(.v6)],
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(here)/exports.map"])]
        ),
    ]
)
