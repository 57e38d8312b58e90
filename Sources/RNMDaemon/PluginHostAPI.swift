internal import Glibc
import RNMCore
internal import RNMPluginABI

/// The host function table handed to every plugin (`rnm_host_api`). Built once, never freed; its functions
/// are plain C functions (no captures, nonisolated) that find their instance through `rnm_host *`.
enum PluginHostAPI {
    // nonisolated(unsafe) is safe: the table is written once, here, before any plugin can see it, and only
    // read afterwards (by plugins, through the pointer).
    nonisolated(unsafe) static let table: UnsafeMutablePointer<rnm_host_api> = {
        let p = UnsafeMutablePointer<rnm_host_api>.allocate(capacity: 1)
        p.initialize(to: rnm_host_api(
            struct_size: UInt32(MemoryLayout<rnm_host_api>.size),
            abi_minor: UInt32(RNM_ABI_MINOR),
            log: { h, level, message in
                guard let ctx = context(h), let message else { return }
                ctx.log(level: level, String(cString: message))
            },
            set_apply: { h, set, changes, count in
                guard let ctx = context(h) else { return RNM_EINVAL }
                return apply(ctx, set, changes, count)
            },
            set_replace: { h, set, addrs, count, timeout in
                guard let ctx = context(h) else { return RNM_EINVAL }
                return replace(ctx, set, addrs, count, timeout)
            },
            addr_parse: { text, out in
                guard let text, let out else { return RNM_EINVAL }
                guard let p = parse(String(cString: text)) else { return RNM_EINVAL }
                out.pointee = cAddress(p)
                return RNM_OK
            },
            set_health: { h, state, message in
                guard let ctx = context(h) else { return }
                let s = state == RNM_HEALTH_OK || state == RNM_HEALTH_DEGRADED ? state : RNM_HEALTH_FAILED
                ctx.setHealth(s, message.map { String(cString: $0) })
            },
            wait_writable: { h, timeout in
                guard let ctx = context(h) else { return RNM_EINVAL }
                return ctx.waitWritable(timeoutMs: timeout)
            },
            addr_format: { addr, buf, len in
                guard let addr, let buf, len > 0 else { return RNM_EINVAL }
                guard case .success(let p) = prefix(addr.pointee) else { return RNM_EINVAL }
                let text = Array((p.length == p.address.family.maxPrefixLength ? "\(p.address)" : "\(p)").utf8)
                guard text.count < len else { return RNM_EINVAL }
                for (i, b) in text.enumerated() { buf[i] = CChar(bitPattern: b) }
                buf[text.count] = 0
                return RNM_OK
            }
        ))
        return p
    }()

    static func context(_ h: OpaquePointer?) -> PluginContext? {
        guard let h else { return nil }
        return Unmanaged<PluginContext>.fromOpaque(UnsafeRawPointer(h)).takeUnretainedValue()
    }

    // MARK: Calls

    static func apply(
        _ ctx: PluginContext, _ setName: UnsafePointer<CChar>?, _ changes: UnsafePointer<rnm_set_change>?, _ count: Int
    ) -> rnm_status {
        if ctx.isShutDown { return ctx.reject(.shutdown, "set_apply after stop") }
        guard let setName else { return ctx.reject(.invalid, "set_apply: no set name") }
        let set = String(cString: setName)
        guard count <= Int(RNM_MAX_CHANGES) else {
            return ctx.reject(.tooBig, "set_apply: \(count) changes in one call (at most \(RNM_MAX_CHANGES))")
        }
        guard let grant = ctx.grant(set) else { return notGranted(ctx, "set_apply", set) }
        guard count > 0 else { return RNM_OK }
        guard let changes else { return ctx.reject(.invalid, "set_apply: \(count) changes but no array") }
        var out: [PluginChange] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let c = changes[i]
            guard c.op == UInt32(RNM_OP_ADD) || c.op == UInt32(RNM_OP_REMOVE) else {
                return ctx.reject(.invalid, "set_apply on \(set): change \(i): op \(c.op) is neither RNM_OP_ADD nor RNM_OP_REMOVE")
            }
            guard c.reserved == 0, c.reserved2 == 0 else {
                return ctx.reject(.invalid, "set_apply on \(set): change \(i): reserved fields must be zero")
            }
            let p: IPPrefix
            switch prefix(c.addr) {
            case .success(let v): p = v
            case .failure(let e): return ctx.reject(.invalid, "set_apply on \(set): change \(i): \(e.why)")
            }
            if let problem = fits(p, grant, set) { return ctx.reject(problem.0, "set_apply on \(set): change \(i): \(problem.1)") }
            let add = c.op == UInt32(RNM_OP_ADD)
            if add, c.timeout_ms > 0, !grant.timeout {
                return ctx.reject(.unsupported, "set_apply on \(set): change \(i): a timeout needs a set with flags timeout")
            }
            out.append(PluginChange(add: add, prefix: p.network, timeoutMs: add ? c.timeout_ms : 0))
        }
        return ctx.submit(.apply(set: set, out), weight: count)
    }

    static func replace(
        _ ctx: PluginContext, _ setName: UnsafePointer<CChar>?, _ addrs: UnsafePointer<rnm_addr>?, _ count: Int, _ timeout: UInt64
    ) -> rnm_status {
        if ctx.isShutDown { return ctx.reject(.shutdown, "set_replace after stop") }
        guard let setName else { return ctx.reject(.invalid, "set_replace: no set name") }
        let set = String(cString: setName)
        guard count <= Int(RNM_MAX_CHANGES) else {
            return ctx.reject(.tooBig, "set_replace: \(count) addresses in one call (at most \(RNM_MAX_CHANGES))")
        }
        guard let grant = ctx.grant(set) else { return notGranted(ctx, "set_replace", set) }
        if timeout > 0, !grant.timeout {
            return ctx.reject(.unsupported, "set_replace on \(set): a timeout needs a set with flags timeout")
        }
        guard count == 0 || addrs != nil else { return ctx.reject(.invalid, "set_replace: \(count) addresses but no array") }
        var out: [IPPrefix] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let p: IPPrefix
            switch prefix(addrs![i]) {
            case .success(let v): p = v
            case .failure(let e): return ctx.reject(.invalid, "set_replace on \(set): address \(i): \(e.why)")
            }
            if let problem = fits(p, grant, set) { return ctx.reject(problem.0, "set_replace on \(set): address \(i): \(problem.1)") }
            out.append(p.network)
        }
        return ctx.submit(.replace(set: set, out, timeoutMs: timeout), weight: max(count, 1))
    }

    private static func notGranted(_ ctx: PluginContext, _ call: String, _ set: String) -> rnm_status {
        let granted = ctx.grantedNames
        return ctx.reject(.notGranted, "\(call): set \(LogText.oneLine(set, max: 64)) is not granted to this plugin"
            + (granted.isEmpty ? " (it has no sets; grant them with `sets:` in its plugins entry)" : " (granted: \(granted.joined(separator: ", ")))"))
    }

    private static func fits(_ p: IPPrefix, _ grant: PluginGrant, _ set: String) -> (PluginRejection, String)? {
        if p.address.family != grant.family {
            return (.family, "\(p.compactDescription) is \(p.address.family == .v4 ? "IPv4" : "IPv6"); set \(set) holds \(grant.family == .v4 ? "IPv4" : "IPv6") addresses")
        }
        if !grant.interval, p.length != p.address.family.maxPrefixLength {
            return (.invalid, "\(p) is a prefix; set \(set) has no interval flag")
        }
        return nil
    }

    // MARK: Addresses

    /// An `rnm_addr` as a prefix, or why it is malformed.
    struct Malformed: Error { var why: String }

    static func prefix(_ a: rnm_addr) -> Result<IPPrefix, Malformed> {
        guard a.reserved.0 == 0, a.reserved.1 == 0 else { return .failure(Malformed(why: "rnm_addr.reserved must be zero")) }
        let bytes = withUnsafeBytes(of: a.bytes) { Array($0) }
        switch a.family {
        case 4:
            guard a.prefix_len <= 32 else { return .failure(Malformed(why: "prefix length \(a.prefix_len) > 32")) }
            return .success(IPPrefix(address: .v4(IPv4Address(bytes: bytes[0..<4])!), length: a.prefix_len))
        case 6:
            guard a.prefix_len <= 128 else { return .failure(Malformed(why: "prefix length \(a.prefix_len) > 128")) }
            return .success(IPPrefix(address: .v6(IPv6Address(bytes: bytes)!), length: a.prefix_len))
        default:
            return .failure(Malformed(why: "family \(a.family) is neither 4 nor 6"))
        }
    }

    static func cAddress(_ p: IPPrefix) -> rnm_addr {
        var a = rnm_addr()
        a.family = p.address.family == .v4 ? 4 : 6
        a.prefix_len = p.length
        let b = p.address.bytes
        withUnsafeMutableBytes(of: &a.bytes) { raw in
            for (i, v) in b.enumerated() { raw[i] = v }
        }
        return a
    }

    /// "192.0.2.1", "2001:db8::1", "10.0.0.0/8", "2001:db8::/32" → the prefix with host bits cleared.
    static func parse(_ text: String) -> IPPrefix? {
        if text.contains("/") { return IPPrefix(text)?.network }
        guard let a = IPAddress(text) else { return nil }
        return IPPrefix(address: a, length: a.family.maxPrefixLength)
    }
}
