/// The rules a plugin descriptor must pass before rnmd calls into the plugin (see rnm_plugin.h). Pure, so
/// the compatibility promise can be tested against hosts of other minor versions than this one.
public enum PluginABI {
    public static let magic: UInt32 = 0x504D_4E52

    /// What the host read from a descriptor (only fields within its struct_size).
    public struct Descriptor: Equatable, Sendable {
        public var structSize: UInt32
        public var magic: UInt32
        public var major: UInt32
        public var minor: UInt32
        public var hasName: Bool
        public var hooks: [String: Bool]
        public var buildInfo: String?

        public init(
            structSize: UInt32, magic: UInt32, major: UInt32, minor: UInt32, hasName: Bool = true,
            hooks: [String: Bool] = ["create": true, "start": true, "stop": true, "destroy": true], buildInfo: String? = nil
        ) {
            self.structSize = structSize
            self.magic = magic
            self.major = major
            self.minor = minor
            self.hasName = hasName
            self.hooks = hooks
            self.buildInfo = buildInfo
        }
    }

    /// The host's side of the check.
    public struct Host: Equatable, Sendable {
        public var major: UInt32
        public var minor: UInt32
        /// The size of a v1.0 descriptor: every plugin of this major has at least that.
        public var minimumDescriptorSize: UInt32
        /// "swift-6.3.1", or nil if the host cannot tell (then no Swift plugin loads).
        public var swiftBuild: String?

        public init(major: UInt32, minor: UInt32, minimumDescriptorSize: UInt32, swiftBuild: String?) {
            self.major = major
            self.minor = minor
            self.minimumDescriptorSize = minimumDescriptorSize
            self.swiftBuild = swiftBuild
        }
    }

    /// Why the host must refuse the descriptor, or nil.
    public static func problem(_ d: Descriptor, host: Host) -> String? {
        if d.magic != magic {
            return "bad magic \(hex(d.magic)) (expected \(hex(magic))): not an rnm plugin descriptor"
        }
        if d.major != host.major {
            return "built for ABI major \(d.major); this rnmd speaks ABI \(host.major)"
        }
        if d.minor > host.minor {
            return "built for ABI \(d.major).\(d.minor); this rnmd supports up to ABI \(host.major).\(host.minor) (upgrade rnmd or rebuild the plugin against an older header)"
        }
        if d.structSize < host.minimumDescriptorSize {
            return "descriptor struct_size \(d.structSize) is smaller than the \(host.minimumDescriptorSize) bytes of ABI \(host.major).0"
        }
        if !d.hasName { return "descriptor has no name" }
        for hook in ["create", "start", "stop", "destroy"] where d.hooks[hook] != true {
            return "descriptor has no \(hook) function"
        }
        if let b = d.buildInfo, b.hasPrefix("swift-") {
            guard let mine = host.swiftBuild else {
                return "built with \(b); this rnmd cannot tell its own Swift toolchain, so it loads no Swift plugin"
            }
            if b != mine {
                return "built with \(b); this rnmd was built with \(mine) (a Swift plugin must be built with the same toolchain: Swift has no stable ABI on Linux)"
            }
        }
        return nil
    }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
