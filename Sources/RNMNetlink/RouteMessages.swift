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

/// Decoding of RTM_NEWLINK/DELLINK/NEWADDR/DELADDR. Pure apart from libmnl's accessors, so it is tested on
/// recorded kernel bytes.
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
        let maxType = Int(IFLA_OPERSTATE) > Int(IFLA_IFNAME) ? Int(IFLA_OPERSTATE) : Int(IFLA_IFNAME)
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
        let up = ifi.ifi_flags & UInt32(IFF_UP) != 0
        return .linkChanged(Link(index: ifi.ifi_index, name: name, isUp: up, operState: oper))
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
        let maxType = Int(IFA_FLAGS)
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
        return .addressChanged(
            Address(key: key, flags: AddressFlags(rawValue: flags), scope: ifa.ifa_scope,
                validLifetime: valid, preferredLifetime: preferred))
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
