public import RNMCore
import Synchronization

/// An in-memory `NetworkBackend`: records every request and can be told to refuse some with an errno.
public final class RecordingNetwork: NetworkBackend {
    private let state = Mutex<(calls: [String], refuse: [String: Int32], sysctls: [String: String])>(([], [:], [:]))

    public init() {}

    /// Every request so far, as text ("addAddress 192.0.2.1/24 2", "addRoute 10.20.0.0/16 via …").
    public var calls: [String] { state.withLock { $0.calls } }

    /// Requests whose text starts with `prefix` fail with `code` until cleared (code nil).
    public func refuse(_ prefix: String, code: Int32?) { state.withLock { $0.refuse[prefix] = code } }

    private func record(_ call: String) throws(NetworkError) {
        let refused: Int32? = state.withLock { s in
            s.calls.append(call)
            return s.refuse.first { call.hasPrefix($0.key) }?.value
        }
        if let refused { throw NetworkError(code: refused, message: "\(call): refused (\(refused))") }
    }

    public func addAddress(_ prefix: IPPrefix, ifindex: Int32) throws(NetworkError) { try record("addAddress \(prefix) \(ifindex)") }
    public func deleteAddress(_ prefix: IPPrefix, ifindex: Int32) throws(NetworkError) { try record("deleteAddress \(prefix) \(ifindex)") }
    public func setLink(ifindex: Int32, up: Bool?, mtu: UInt32?) throws(NetworkError) {
        try record("setLink \(ifindex) up=\(up.map { "\($0)" } ?? "-") mtu=\(mtu.map { "\($0)" } ?? "-")")
    }
    public func addRoute(_ route: Route) throws(NetworkError) { try record("addRoute \(route.key)" + (route.gateway.map { " via \($0)" } ?? "")) }
    public func replaceRoute(_ route: Route) throws(NetworkError) { try record("replaceRoute \(route.key)" + (route.gateway.map { " via \($0)" } ?? "")) }
    public func deleteRoute(_ route: Route) throws(NetworkError) { try record("deleteRoute \(route.key)") }
    public func setSysctl(_ key: String, _ value: String) throws(NetworkError) {
        try record("sysctl \(key)=\(value)")
        state.withLock { $0.sysctls[key] = value }
    }
    public func readSysctl(_ key: String) -> String? { state.withLock { $0.sysctls[key] } ?? "0" }
    /// What someone else would do: `sysctl -w key=value`.
    public func overrideSysctl(_ key: String, _ value: String) { state.withLock { $0.sysctls[key] = value } }
}
