/// What every Swift plugin of this repository needs around the C ABI, and what the host needs to judge Swift
/// plugins: the toolchain a module was compiled with. Imports nothing of the host (plugins must not).
///
/// Out-of-tree Swift plugins carry their own copy of these few lines (see Plugins/example-swift), because
/// they cannot depend on this package; keep the toolchain ladder in step with theirs.
public enum PluginKit {
    /// "swift-6.3.1" for the compiler that built this module; nil for one this ladder does not know (then
    /// the host loads no Swift plugin, and a plugin says "swift-unknown").
    public static let swiftToolchain: String? = {
        #if compiler(>=6.3.3)
        return nil
        #elseif compiler(>=6.3.2)
        return "swift-6.3.2"
        #elseif compiler(>=6.3.1)
        return "swift-6.3.1"
        #elseif compiler(>=6.3)
        return "swift-6.3.0"
        #elseif compiler(>=6.2.4)
        return nil
        #elseif compiler(>=6.2.3)
        return "swift-6.2.3"
        #elseif compiler(>=6.2.2)
        return "swift-6.2.2"
        #elseif compiler(>=6.2.1)
        return "swift-6.2.1"
        #else
        return "swift-6.2.0"
        #endif
    }()

    /// A NUL-terminated copy of `s` that lives as long as the process (descriptor strings).
    public static func permanentCString(_ s: String) -> UnsafePointer<CChar> {
        let bytes = Array(s.utf8) + [0]
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
        return UnsafePointer(p)
    }

    /// Writes `message` into a host-owned error buffer (cut to fit, NUL-terminated).
    public static func writeError(_ message: String, _ err: UnsafeMutablePointer<CChar>?, _ len: Int) {
        guard let err, len > 0 else { return }
        let bytes = Array(message.utf8.prefix(len - 1))
        for (i, b) in bytes.enumerated() { err[i] = CChar(bitPattern: b) }
        err[bytes.count] = 0
    }
}
