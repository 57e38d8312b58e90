// build_info: the compiler this plugin was built with, fixed at compile time. rnmd loads a Swift plugin only
// if it equals rnmd's own (e.g. "swift-6.3.1"): Swift has no stable ABI on Linux, and the plugin and rnmd share
// one copy of the runtime and standard library, so they must come from the same toolchain. A compiler this
// ladder does not know yields "swift-unknown" (refused): add a rung for it, in step with PluginHost.swiftBuild.
import CRNMPlugin

#if compiler(>=6.2) && !compiler(>=6.2.1)
let buildInfo: StaticString = "swift-6.2.0"
#elseif compiler(>=6.2.1) && !compiler(>=6.2.2)
let buildInfo: StaticString = "swift-6.2.1"
#elseif compiler(>=6.2.2) && !compiler(>=6.2.3)
let buildInfo: StaticString = "swift-6.2.2"
#elseif compiler(>=6.2.3) && !compiler(>=6.2.4)
let buildInfo: StaticString = "swift-6.2.3"
#elseif compiler(>=6.3) && !compiler(>=6.3.1)
let buildInfo: StaticString = "swift-6.3.0"
#elseif compiler(>=6.3.1) && !compiler(>=6.3.2)
let buildInfo: StaticString = "swift-6.3.1"
#elseif compiler(>=6.3.2) && !compiler(>=6.3.3)
let buildInfo: StaticString = "swift-6.3.2"
#else
let buildInfo: StaticString = "swift-unknown"
#endif

/// A C string with static lifetime (the descriptor's strings live as long as the process).
func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// A value moved to the heap, for C to hold as a pointer (free with deinitialize + deallocate).
func heap<T>(_ value: T) -> UnsafeMutablePointer<T> {
    let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
    p.initialize(to: value)
    return p
}

/// Copies `message` into the host's error buffer (NUL-terminated, cut to fit) and returns RNM_EINVAL.
func fail(_ message: String, _ err: UnsafeMutablePointer<CChar>?, _ len: Int) -> rnm_status {
    guard let err, len > 0 else { return RNM_EINVAL }
    let bytes = message.utf8.prefix(len - 1).map { CChar(bitPattern: $0) }
    _ = UnsafeMutableBufferPointer(start: err, count: len).initialize(from: bytes + [0])
    return RNM_EINVAL
}
