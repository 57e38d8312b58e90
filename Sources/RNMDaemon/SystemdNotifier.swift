internal import CRNMShims
internal import Glibc

/// The service manager's notification protocol (`sd_notify`), spoken directly: one datagram per message on
/// the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). No
/// libsystemd. Without `$NOTIFY_SOCKET` every call does nothing.
package final class SystemdNotifier: Sendable {
    private let fd: Int32
    private let address: [UInt8]
    /// Half of `$WATCHDOG_USEC` (when the watchdog is meant for this process), in nanoseconds.
    package let watchdogInterval: UInt64?

    package init(environment: [String: String] = SystemdNotifier.processEnvironment()) {
        var addr: [UInt8] = []
        if let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108 {
            addr = Array(path.utf8)
            if addr.first == UInt8(ascii: "@") { addr[0] = 0 }  // abstract namespace
        }
        address = addr
        fd = addr.isEmpty ? -1 : socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var interval: UInt64? = nil
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 {
            let pid = environment["WATCHDOG_PID"].flatMap(Int32.init)
            if pid == nil || pid == getpid() { interval = usec * 1000 / 2 }
        }
        watchdogInterval = interval
    }

    deinit { if fd >= 0 { close(fd) } }

    package var isActive: Bool { fd >= 0 }

    /// Sends `text` (newline-separated KEY=VALUE lines). Failures are ignored: the service manager may be gone.
    package func send(_ text: String) {
        guard fd >= 0 else { return }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, b) in address.enumerated() { raw[i] = b }
        }
        // An abstract address's length counts its bytes exactly; a path's includes the terminating NUL.
        let len = socklen_t(MemoryLayout<sa_family_t>.size + address.count + (address.first == 0 ? 0 : 1))
        let bytes = Array(text.utf8)
        _ = withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sp, len) }
            }
        }
    }

    /// `STATUS=` text: one line, no control characters.
    package static func status(_ s: String) -> String {
        "STATUS=" + String(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) }.prefix(200))
    }

    /// CLOCK_MONOTONIC in microseconds, for `MONOTONIC_USEC=` with `RELOADING=1`.
    package static func monotonicUsec() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    package static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let v = getenv(key) { out[key] = String(cString: v) }
        }
        return out
    }
}
