internal import CMnl
internal import CRNMShims
public import RNMCore

/// What one buffer of rtnetlink messages said.
public struct RouteParseResult: Equatable, Sendable {
    public var events: [NetEvent] = []
    /// NLMSG_DONE was seen (end of a dump).
    public var done = false
    /// A dump was interrupted by a concurrent change (NLM_F_DUMP_INTR): it must be repeated.
    public var interrupted = false
    /// NLMSG_ERROR with a non-zero code (negative errno).
    public var error: Int32? = nil
    /// Messages that were skipped as malformed.
    public var malformed = 0

    public init() {}
}

/// Decoding of RTM_NEWLINK/DELLINK/NEWADDR/DELADDR/NEWROUTE/DELROUTE. Pure apart from libmnl's accessors, so
/// it is tested on recorded kernel bytes.
///
/// Routes: only rnm's own (rtm_protocol `NetworkMark.protocolID`), unicast, without a source prefix or TOS,
/// not cached clones, are decoded; every other route message is skipped without looking at its attributes
/// (neither an event nor counted as malformed), so a full BGP table costs one byte comparison per route.
public enum RouteMessages {
    /// Parses every message in `buffer` (as returned by one recv on a NETLINK_ROUTE socket).
    public static func parse(_ buffer: UnsafeRawBufferPointer) -> RouteParseResult {
        var result = RouteParseResult()
        guard let base = buffer.baseAddress else { return result }
        var len = Int32(buffer.count)
        var nlh = UnsafePointer(base.assumingMemoryBound(to: nlmsghdr.self))
        while messageFits(UnsafeRawPointer(nlh), len) {
            parseOne(nlh, into: &result)
            nlh = UnsafePointer(mnl_nlmsg_next(nlh, &len)!)
        }
        if len > 0 { result.malformed += 1 }
        return result
    }

    /// mnl_nlmsg_ok() compares the length as a signed int, so a corrupt length ≥ 2³¹ passes it; this does not.
    package static func messageFits(_ message: UnsafeRawPointer, _ len: Int32) -> Bool {
        let header = 16  // sizeof(struct nlmsghdr); nlmsg_len is its first field
        guard Int(len) >= header else { return false }
        let l = Int(message.loadUnaligned(as: UInt32.self))
        return l >= header && l <= Int(len)
    }

    /// Convenience for tests and fixtures.
    public static func parse(_ bytes: [UInt8]) -> RouteParseResult {
        bytes.withUnsafeBytes { parse($0) }
    }

    private static func parseOne(_ nlh: UnsafePointer<nlmsghdr>, into result: inout RouteParseResult) {
        let type = Int32(nlh.pointee.nlmsg_type)
        if nlh.pointee.nlmsg_flags & UInt16(NLM_F_DUMP_INTR) != 0 { result.interrupted = true }
        switch type {
        case NLMSG_DONE:
            result.done = true
        case NLMSG_ERROR:
            guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<nlmsgerr>.size else {
                result.malformed += 1
                return
            }
            let err = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.loadUnaligned(as: nlmsgerr.self)
            if err.error != 0 { result.error = err.error }
        case Int32(RTM_NEWLINK), Int32(RTM_DELLINK):
            guard let event = parseLink(nlh, removed: type == Int32(RTM_DELLINK)) else { return }
            if case .linkChanged(let l) = event, l.name.isEmpty {
                result.malformed += 1
                return
            }
            result.events.append(event)
        case Int32(RTM_NEWADDR), Int32(RTM_DELADDR):
            guard let event = parseAddress(nlh, removed: type == Int32(RTM_DELADDR)) else {
                result.malformed += 1
                return
            }
            result.events.append(event)
        case Int32(RTM_NEWROUTE), Int32(RTM_DELROUTE):
            switch parseRoute(nlh, removed: type == Int32(RTM_DELROUTE)) {
            case .event(let e): result.events.append(e)
            case .ignored: break
            case .malformed: result.malformed += 1
            }
        default:
            break
        }
    }

    private static func parseLink(_ nlh: UnsafePointer<nlmsghdr>, removed: Bool) -> NetEvent? {
        let hdrLen = MemoryLayout<ifinfomsg>.size
        guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + hdrLen else { return nil }
        let ifi = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.loadUnaligned(as: ifinfomsg.self)
        // Bridge port messages (AF_BRIDGE) share the group; a DELLINK there means "left the bridge",
        // not "gone". Only AF_UNSPEC messages describe the link itself.
        guard ifi.ifi_family == UInt8(AF_UNSPEC) else { return nil }
        if removed { return .linkRemoved(index: ifi.ifi_index) }
        let maxType = max(Int(IFLA_OPERSTATE), Int(IFLA_IFNAME), Int(IFLA_MTU))
        var tb = [UnsafePointer<nlattr>?](repeating: nil, count: maxType + 1)
        guard RNM_mnl_attr_table(nlh, UInt32(hdrLen), &tb, UInt32(maxType)) >= 0 else { return nil }
        var name = ""
        if let a = tb[Int(IFLA_IFNAME)] {
            name = string(a)
        }
        var oper = OperState.unknown
        if let a = tb[Int(IFLA_OPERSTATE)], mnl_attr_get_payload_len(a) >= 1 {
            oper = OperState(rawValue: mnl_attr_get_u8(a)) ?? .unknown
        }
        var mtu: UInt32? = nil
        if let a = tb[Int(IFLA_MTU)], mnl_attr_get_payload_len(a) >= 4 {
            mtu = mnl_attr_get_u32(a)
        }
        let up = ifi.ifi_flags & UInt32(IFF_UP) != 0
        return .linkChanged(Link(index: ifi.ifi_index, name: name, isUp: up, operState: oper, mtu: mtu))
    }

    private static func parseAddress(_ nlh: UnsafePointer<nlmsghdr>, removed: Bool) -> NetEvent? {
        let hdrLen = MemoryLayout<ifaddrmsg>.size
        guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + hdrLen else { return nil }
        let ifa = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.loadUnaligned(as: ifaddrmsg.self)
        let expected: Int
        switch Int32(ifa.ifa_family) {
        case AF_INET: expected = 4
        case AF_INET6: expected = 16
        default: return nil
        }
        let maxType = max(Int(IFA_FLAGS), Int(IFA_PROTO))
        var tb = [UnsafePointer<nlattr>?](repeating: nil, count: maxType + 1)
        guard RNM_mnl_attr_table(nlh, UInt32(hdrLen), &tb, UInt32(maxType)) >= 0 else { return nil }
        // IFA_LOCAL is the local address (IFA_ADDRESS is the peer on point-to-point links).
        guard let attr = tb[Int(IFA_LOCAL)] ?? tb[Int(IFA_ADDRESS)],
            Int(mnl_attr_get_payload_len(attr)) == expected
        else { return nil }
        let bytes = UnsafeRawBufferPointer(start: mnl_attr_get_payload(attr), count: expected)
        guard let ip = IPAddress(bytes: bytes) else { return nil }
        guard ifa.ifa_prefixlen <= ip.family.maxPrefixLength else { return nil }
        let key = AddressKey(ifindex: Int32(bitPattern: ifa.ifa_index), address: ip, prefixLength: ifa.ifa_prefixlen)
        if removed { return .addressRemoved(key) }
        var flags = UInt32(ifa.ifa_flags)
        if let f = tb[Int(IFA_FLAGS)], mnl_attr_get_payload_len(f) >= 4 { flags = mnl_attr_get_u32(f) }
        var valid = UInt32.max
        var preferred = UInt32.max
        if let c = tb[Int(IFA_CACHEINFO)], Int(mnl_attr_get_payload_len(c)) >= MemoryLayout<ifa_cacheinfo>.size {
            let ci = UnsafeRawPointer(mnl_attr_get_payload(c))!.loadUnaligned(as: ifa_cacheinfo.self)
            valid = ci.ifa_valid
            preferred = ci.ifa_prefered
        }
        // IFA_PROTO (Linux 6.1+): who added the address. Absent (older kernels, or nobody said): 0.
        var proto: UInt8 = 0
        if let p = tb[Int(IFA_PROTO)], mnl_attr_get_payload_len(p) >= 1 { proto = mnl_attr_get_u8(p) }
        return .addressChanged(
            Address(key: key, flags: AddressFlags(rawValue: flags), scope: ifa.ifa_scope,
                validLifetime: valid, preferredLifetime: preferred, protocolID: proto))
    }

    /// rtattr_type_t values (the enum imports as a struct; these read better as plain indexes).
    package enum RTA {
        static let dst = Int(RTA_DST.rawValue)
        static let oif = Int(RTA_OIF.rawValue)
        static let gateway = Int(RTA_GATEWAY.rawValue)
        static let priority = Int(RTA_PRIORITY.rawValue)
        static let table = Int(RTA_TABLE.rawValue)
        static let via = Int(RTA_VIA.rawValue)
    }

    private enum RouteDecode {
        case event(NetEvent)
        case ignored
        case malformed
    }

    private static func parseRoute(_ nlh: UnsafePointer<nlmsghdr>, removed: Bool) -> RouteDecode {
        let hdrLen = MemoryLayout<rtmsg>.size
        guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + hdrLen else { return .malformed }
        let rtm = UnsafeRawPointer(mnl_nlmsg_get_payload(nlh))!.loadUnaligned(as: rtmsg.self)
        // Someone else's route: not looked at any further (the common case on a router with a full table),
        // unless it replaced a route (NLM_F_REPLACE): then that identity is no longer ours, if it was.
        let replacedByOther = !removed && rtm.rtm_protocol != NetworkMark.protocolID
            && Int32(nlh.pointee.nlmsg_flags) & NLM_F_REPLACE != 0
        guard rtm.rtm_protocol == NetworkMark.protocolID || replacedByOther else { return .ignored }
        let family: IPFamily
        switch Int32(rtm.rtm_family) {
        case AF_INET: family = .v4
        case AF_INET6: family = .v6
        default: return .ignored
        }
        // rnm adds plain unicast routes: a blackhole, local or multicast route, a cached clone (exceptions,
        // PMTU) or a route with a source prefix or TOS has another identity and is not one of them.
        guard rtm.rtm_type == UInt8(RTN_UNICAST), rtm.rtm_flags & UInt32(RTM_F_CLONED) == 0,
            rtm.rtm_src_len == 0, rtm.rtm_tos == 0
        else { return .ignored }
        guard rtm.rtm_dst_len <= family.maxPrefixLength else { return .malformed }
        let maxType = RTA.via
        var tb = [UnsafePointer<nlattr>?](repeating: nil, count: maxType + 1)
        guard RNM_mnl_attr_table(nlh, UInt32(hdrLen), &tb, UInt32(maxType)) >= 0 else { return .malformed }
        let size = family == .v4 ? 4 : 16

        var table = UInt32(rtm.rtm_table)
        if let a = tb[RTA.table] {
            guard mnl_attr_get_payload_len(a) >= 4 else { return .malformed }
            table = mnl_attr_get_u32(a)
        }
        let destination: IPAddress
        if let a = tb[RTA.dst] {
            guard let ip = address(a, size: size) else { return .malformed }
            destination = ip
        } else {
            // No RTA_DST: the default route of the family (a non-zero length without one is nonsense).
            guard rtm.rtm_dst_len == 0 else { return .malformed }
            destination = family == .v4 ? .v4(IPv4Address(0)) : .v6(IPv6Address(high: 0, low: 0))
        }
        var metric: UInt32 = 0
        if let a = tb[RTA.priority] {
            guard mnl_attr_get_payload_len(a) >= 4 else { return .malformed }
            metric = mnl_attr_get_u32(a)
        }
        let key = RouteKey(table: table, destination: IPPrefix(address: destination, length: rtm.rtm_dst_len), metric: metric)
        if removed || replacedByOther { return .event(.routeRemoved(key)) }

        var gateway: IPAddress? = nil
        if let a = tb[RTA.gateway] {
            guard let ip = address(a, size: size) else { return .malformed }
            gateway = ip
        } else if let a = tb[RTA.via] {
            // struct rtvia: a 16-bit address family, then the address (an IPv4 route via an IPv6 next hop).
            let len = Int(mnl_attr_get_payload_len(a))
            guard len >= 2, let p = mnl_attr_get_payload(a) else { return .malformed }
            let viaFamily = Int32(p.loadUnaligned(as: UInt16.self))
            let want = viaFamily == AF_INET ? 4 : viaFamily == AF_INET6 ? 16 : -1
            guard want > 0, len == 2 + want,
                let ip = IPAddress(bytes: UnsafeRawBufferPointer(start: p + 2, count: want))
            else { return .malformed }
            gateway = ip
        }
        var oif: Int32? = nil
        if let a = tb[RTA.oif] {
            guard mnl_attr_get_payload_len(a) >= 4 else { return .malformed }
            oif = Int32(bitPattern: mnl_attr_get_u32(a))
        }
        return .event(.routeChanged(Route(key: key, gateway: gateway, oif: oif, protocolID: rtm.rtm_protocol)))
    }

    /// An address attribute of exactly `size` bytes.
    private static func address(_ attr: UnsafePointer<nlattr>, size: Int) -> IPAddress? {
        guard Int(mnl_attr_get_payload_len(attr)) == size, let p = mnl_attr_get_payload(attr) else { return nil }
        return IPAddress(bytes: UnsafeRawBufferPointer(start: p, count: size))
    }

    /// A NUL-terminated string attribute, bounded by the attribute's length.
    private static func string(_ attr: UnsafePointer<nlattr>) -> String {
        let len = Int(mnl_attr_get_payload_len(attr))
        guard len > 0, let p = mnl_attr_get_payload(attr) else { return "" }
        let bytes = UnsafeRawBufferPointer(start: p, count: len)
        let end = bytes.firstIndex(of: 0) ?? len
        return String(decoding: bytes[0..<end], as: UTF8.self)
    }
}
