internal import CMnl
internal import CRNMShims
internal import Glibc
public import RNMCore

/// Applies addresses, link settings, routes and sysctls through rtnetlink (`NetworkBackend`).
///
/// Owns one NETLINK_ROUTE socket of its own (bound to no group, so only answers arrive on it), in the
/// network namespace of the thread that created it. Every call sends one request with NLM_F_ACK and waits
/// for the kernel's acknowledgement of that request (matched by sequence number). Failures are
/// `NetworkError(code: errno, message: "<what>: <strerror>")`, followed by the kernel's own explanation in
/// parentheses when it gave one (extended ack, e.g. "Nexthop has invalid gateway").
///
/// What is added is marked: addresses with IFA_PROTO and routes with rtm_protocol `NetworkMark.protocolID`,
/// and route deletions name that protocol, so rnm never removes a route it did not add.
// @unchecked Sendable is safe: the protocol requires Sendable, but an instance is used from one thread at a
// time (the reconciler thread; a test's own thread): the socket, its sequence counter and the receive buffer
// are mutated only inside a call, and nothing is shared between instances.
public final class NetlinkConfigurator: NetworkBackend, @unchecked Sendable {
    private let socket: MnlSocket
    private var buffer = [UInt8](repeating: 0, count: 32 * 1024)

    /// Seconds to wait for an acknowledgement. rtnetlink handles a request inside sendmsg, so the answer
    /// is queued by the time send returns; this only bounds the impossible.
    public static let answerTimeout = 10

    public init() throws(NetworkError) {
        do {
            socket = try MnlSocket(bus: NETLINK_ROUTE, groups: 0)
        } catch let e as NetlinkError {
            throw NetworkError(code: e.errno, message: "netlink socket: \(Self.text(e.errno))")
        } catch {
            throw NetworkError(code: 0, message: "netlink socket: \(error)")
        }
        // The kernel's reason as text, and acks without a copy of our request.
        _ = RNM_netlink_set_option(socket.fd, NETLINK_EXT_ACK, 1)
        _ = RNM_netlink_set_option(socket.fd, NETLINK_CAP_ACK, 1)
        var tv = timeval(tv_sec: Self.answerTimeout, tv_usec: 0)
        _ = setsockopt(socket.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { socket.close() }

    // MARK: Addresses

    public func addAddress(_ prefix: IPPrefix, ifindex: Int32) throws(NetworkError) {
        let what = "add address \(prefix) on ifindex \(ifindex)"
        try check(prefix, what)
        let code = try request(what, type: UInt16(RTM_NEWADDR), flags: NLM_F_CREATE | NLM_F_EXCL) { nlh in
            Self.putAddress(nlh, prefix, ifindex: ifindex, adding: true)
        }
        // EEXIST: the address is there already (the contract: success).
        if code != 0, code != EEXIST { throw failure(what, code) }
    }

    public func deleteAddress(_ prefix: IPPrefix, ifindex: Int32) throws(NetworkError) {
        let what = "delete address \(prefix) from ifindex \(ifindex)"
        try check(prefix, what)
        let code = try request(what, type: UInt16(RTM_DELADDR), flags: 0) { nlh in
            Self.putAddress(nlh, prefix, ifindex: ifindex, adding: false)
        }
        // Gone already: no such address (EADDRNOTAVAIL; ENOENT from some paths), or no such link (ENODEV: its
        // addresses went with it).
        if code != 0, code != EADDRNOTAVAIL, code != ENOENT, code != ENODEV { throw failure(what, code) }
    }

    /// ifaddrmsg and the address attributes: IPv4 IFA_LOCAL + IFA_ADDRESS (+ IFA_BROADCAST below /31, as
    /// `ip address add … brd +`), IPv6 IFA_ADDRESS; IFA_PROTO on additions.
    private static func putAddress(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ prefix: IPPrefix, ifindex: Int32, adding: Bool) {
        let ifa = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ifaddrmsg>.size)!.assumingMemoryBound(to: ifaddrmsg.self)
        ifa.pointee.ifa_family = UInt8(prefix.address.family == .v4 ? AF_INET : AF_INET6)
        ifa.pointee.ifa_prefixlen = prefix.length
        ifa.pointee.ifa_index = UInt32(bitPattern: ifindex)
        // The kernel works out IPv6 scopes itself; IPv4 takes the request's (host for 127/8, as ip does).
        if case .v4(let a) = prefix.address, a.isLoopback { ifa.pointee.ifa_scope = UInt8(RT_SCOPE_HOST.rawValue) }
        let bytes = prefix.address.bytes
        switch prefix.address {
        case .v4(let a):
            putBytes(nlh, UInt16(IFA_LOCAL), bytes)
            putBytes(nlh, UInt16(IFA_ADDRESS), bytes)
            if adding, prefix.length < 31 {
                let host: UInt32 = prefix.length == 0 ? .max : (1 << (32 - UInt32(prefix.length))) - 1
                putBytes(nlh, UInt16(IFA_BROADCAST), IPv4Address(a.value | host).bytes)
            }
        case .v6:
            putBytes(nlh, UInt16(IFA_ADDRESS), bytes)
        }
        if adding { mnl_attr_put_u8(nlh, UInt16(IFA_PROTO), NetworkMark.protocolID) }
    }

    // MARK: Links

    public func setLink(ifindex: Int32, up: Bool?, mtu: UInt32?) throws(NetworkError) {
        guard up != nil || mtu != nil else { return }
        let what = "set link ifindex \(ifindex)" + (up == true ? " up" : up == false ? " down" : "") + (mtu.map { " mtu \($0)" } ?? "")
        let code = try request(what, type: UInt16(RTM_NEWLINK), flags: 0) { nlh in
            let ifi = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ifinfomsg>.size)!.assumingMemoryBound(to: ifinfomsg.self)
            ifi.pointee.ifi_family = UInt8(AF_UNSPEC)
            ifi.pointee.ifi_index = ifindex
            // ifi_change names the flags to set; both zero leave the flags alone (an MTU-only change).
            if let up {
                ifi.pointee.ifi_change = UInt32(IFF_UP)
                ifi.pointee.ifi_flags = up ? UInt32(IFF_UP) : 0
            }
            if let mtu { mnl_attr_put_u32(nlh, UInt16(IFLA_MTU), mtu) }
        }
        if code != 0 { throw failure(what, code) }
    }

    // MARK: Routes

    public func addRoute(_ route: Route) throws(NetworkError) {
        try addRoute(route, protocolID: NetworkMark.protocolID)
    }

    /// `addRoute` with another rtm_protocol: only for tests, which need routes that are not rnm's.
    package func addRoute(_ route: Route, protocolID: UInt8) throws(NetworkError) {
        let what = "add route \(Self.describe(route))"
        // EEXIST is the caller's to judge (a route with this identity that rnm did not add).
        if let code = try routeRequest(what, UInt16(RTM_NEWROUTE), NLM_F_CREATE | NLM_F_EXCL, route, protocolID), code != 0 {
            throw failure(what, code)
        }
    }

    public func replaceRoute(_ route: Route) throws(NetworkError) {
        let what = "replace route \(Self.describe(route))"
        if let code = try routeRequest(what, UInt16(RTM_NEWROUTE), NLM_F_CREATE | NLM_F_REPLACE, route, NetworkMark.protocolID),
            code != 0
        {
            throw failure(what, code)
        }
    }

    public func deleteRoute(_ route: Route) throws(NetworkError) {
        let what = "delete route \(route.key)"
        // Only the identity and the protocol: whatever the gateway or device is now, rnm's route goes.
        let identity = Route(key: route.key)
        guard let code = try routeRequest(what, UInt16(RTM_DELROUTE), 0, identity, NetworkMark.protocolID) else { return }
        // Gone already: ESRCH (no such route, or no such table), ENOENT from some paths.
        if code != 0, code != ESRCH, code != ENOENT { throw failure(what, code) }
    }

    /// Builds and sends a route request; returns the kernel's errno (0: done).
    private func routeRequest(_ what: String, _ type: UInt16, _ flags: Int32, _ route: Route, _ protocolID: UInt8) throws(NetworkError) -> Int32? {
        let key = route.key
        try check(key.destination, what)
        let deleting = type == UInt16(RTM_DELROUTE)
        return try request(what, type: type, flags: flags) { nlh in
            let rtm = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<rtmsg>.size)!.assumingMemoryBound(to: rtmsg.self)
            let family = key.family
            rtm.pointee.rtm_family = UInt8(family == .v4 ? AF_INET : AF_INET6)
            rtm.pointee.rtm_dst_len = key.destination.length
            // rtm_table holds 8 bits; RTA_TABLE (always sent) holds the real one.
            rtm.pointee.rtm_table = key.table < 256 ? UInt8(key.table) : UInt8(RT_TABLE_UNSPEC.rawValue)
            rtm.pointee.rtm_protocol = protocolID
            rtm.pointee.rtm_type = UInt8(RTN_UNICAST)
            if deleting {
                rtm.pointee.rtm_scope = UInt8(RT_SCOPE_NOWHERE.rawValue)  // any scope
            } else {
                rtm.pointee.rtm_scope = UInt8(route.gateway == nil ? RT_SCOPE_LINK.rawValue : RT_SCOPE_UNIVERSE.rawValue)
            }
            mnl_attr_put_u32(nlh, UInt16(RouteMessages.RTA.table), key.table)
            if key.destination.length > 0 {
                Self.putBytes(nlh, UInt16(RouteMessages.RTA.dst), key.destination.address.bytes)
            }
            if key.metric != 0 { mnl_attr_put_u32(nlh, UInt16(RouteMessages.RTA.priority), key.metric) }
            if let gw = route.gateway {
                if gw.family == family {
                    Self.putBytes(nlh, UInt16(RouteMessages.RTA.gateway), gw.bytes)
                } else {
                    // An IPv4 route via an IPv6 next hop (RFC 5549): struct rtvia, family then address.
                    let fam = UInt16(gw.family == .v4 ? AF_INET : AF_INET6)
                    Self.putBytes(nlh, UInt16(RouteMessages.RTA.via), withUnsafeBytes(of: fam) { Array($0) } + gw.bytes)
                }
            }
            if let oif = route.oif { mnl_attr_put_u32(nlh, UInt16(RouteMessages.RTA.oif), UInt32(bitPattern: oif)) }
        }
    }

    private static func describe(_ r: Route) -> String {
        "\(r.key)" + (r.gateway.map { " via \($0)" } ?? "") + (r.oif.map { " oif \($0)" } ?? "")
    }

    // MARK: Sysctls

    /// Writes `/proc/sys/<key>`. The namespace is the **calling thread's** (procfs resolves net sysctls by
    /// the opener), which for rnmd is the daemon's. Keys with ".." or a leading "/" are refused (EINVAL).
    public func setSysctl(_ key: String, _ value: String) throws(NetworkError) {
        let what = "sysctl \(key) = \(value)"
        guard !key.isEmpty, !key.hasPrefix("/"), !key.contains(".."), !key.utf8.contains(0), !value.utf8.contains(0) else {
            throw NetworkError(code: EINVAL, message: "\(what): refused: not a key under /proc/sys")
        }
        let fd = open("/proc/sys/" + key, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(what, errno) }
        defer { close(fd) }
        // One write: procfs parses what a single write hands it.
        let bytes = Array((value + "\n").utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw failure(what, errno) }
        if n != bytes.count { throw NetworkError(code: EIO, message: "\(what): short write (\(n) of \(bytes.count) bytes)") }
    }

    public func readSysctl(_ key: String) -> String? {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.contains(".."), !key.utf8.contains(0) else { return nil }
        let fd = open("/proc/sys/" + key, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self).filter { !$0.isWhitespace }
    }

    // MARK: The exchange

    /// Sends one request (NLM_F_REQUEST | NLM_F_ACK | `flags`) built by `build` and returns the errno of its
    /// acknowledgement (0: done). The extended ack's text is kept for `failure`.
    private func request(
        _ what: String, type: UInt16, flags: Int32, build: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) throws(NetworkError) -> Int32 {
        lastKernelMessage = nil
        let seq = socket.nextSequence()
        var req = [UInt8](repeating: 0, count: 512)
        let len = req.withUnsafeMutableBytes { raw -> Int in
            let nlh = mnl_nlmsg_put_header(raw.baseAddress)!
            nlh.pointee.nlmsg_type = type
            nlh.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_ACK | flags)
            nlh.pointee.nlmsg_seq = seq
            build(nlh)
            return Int(nlh.pointee.nlmsg_len)
        }
        do {
            try socket.send(Array(req[0..<len]))
        } catch {
            let e = Self.code(of: error)
            throw NetworkError(code: e, message: "\(what): \(Self.text(e))")
        }
        while true {
            let n: Int
            do {
                n = try socket.receive(&buffer)
            } catch {
                var e = Self.code(of: error)
                if e == EAGAIN || e == EWOULDBLOCK { e = ETIMEDOUT }
                throw NetworkError(code: e, message: "\(what): no answer from the kernel: \(Self.text(e))")
            }
            if let code = buffer.withUnsafeBytes({ ack(in: UnsafeRawBufferPointer(rebasing: $0[0..<n]), seq: seq) }) {
                return code
            }
        }
    }

    /// The kernel's text from the last acknowledgement (NLMSGERR_ATTR_MSG), if any.
    private var lastKernelMessage: String?

    /// The errno of the NLMSG_ERROR answering `seq` in this datagram, or nil if it holds none (an answer to
    /// an earlier request that timed out, or anything else: skipped).
    private func ack(in datagram: UnsafeRawBufferPointer, seq: UInt32) -> Int32? {
        guard let base = datagram.baseAddress else { return nil }
        var offset = 0
        let header = MemoryLayout<nlmsghdr>.size
        let errSize = MemoryLayout<nlmsgerr>.size
        while datagram.count - offset >= header {
            let p = base + offset
            guard RouteMessages.messageFits(p, Int32(datagram.count - offset)) else { return nil }
            let h = p.loadUnaligned(as: nlmsghdr.self)
            let len = Int(h.nlmsg_len)
            if h.nlmsg_seq == seq, h.nlmsg_pid == socket.portID || h.nlmsg_pid == 0, Int32(h.nlmsg_type) == NLMSG_ERROR,
                len >= header + errSize
            {
                let err = (p + header).loadUnaligned(as: nlmsgerr.self)
                if h.nlmsg_flags & UInt16(NLM_F_ACK_TLVS) != 0 {
                    // TLVs follow the echoed request: its header alone when capped, else all of it.
                    let echoed = h.nlmsg_flags & UInt16(NLM_F_CAPPED) != 0 ? header : Int(err.msg.nlmsg_len)
                    let start = header + 4 + ((echoed + 3) & ~3)
                    if start < len { lastKernelMessage = Self.extackMessage(UnsafeRawBufferPointer(start: p + start, count: len - start)) }
                }
                return -err.error
            }
            offset += (len + 3) & ~3
        }
        return nil
    }

    /// NLMSGERR_ATTR_MSG from the extended ack's attributes, bounds-checked.
    private static func extackMessage(_ tlvs: UnsafeRawBufferPointer) -> String? {
        var offset = 0
        while tlvs.count - offset >= 4 {
            let alen = Int(tlvs.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let atype = Int(tlvs.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)) & 0x3FFF
            guard alen >= 4, offset + alen <= tlvs.count else { return nil }
            if atype == Int(NLMSGERR_ATTR_MSG.rawValue) {
                let payload = tlvs[(offset + 4)..<(offset + alen)]
                let end = payload.firstIndex(of: 0) ?? payload.endIndex
                let text = String(decoding: payload[payload.startIndex..<end], as: UTF8.self)
                return text.isEmpty ? nil : text
            }
            offset += (alen + 3) & ~3
        }
        return nil
    }

    private func failure(_ what: String, _ code: Int32) -> NetworkError {
        var message = "\(what): \(Self.text(code))"
        if let k = lastKernelMessage { message += " (\(k))" }
        return NetworkError(code: code, message: message)
    }

    private func check(_ prefix: IPPrefix, _ what: String) throws(NetworkError) {
        guard prefix.length <= prefix.address.family.maxPrefixLength else {
            throw NetworkError(code: EINVAL, message: "\(what): prefix length \(prefix.length) is too long")
        }
    }

    private static func putBytes(_ nlh: UnsafeMutablePointer<nlmsghdr>, _ type: UInt16, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { mnl_attr_put(nlh, type, $0.count, $0.baseAddress) }
    }

    private static func code(of error: any Error) -> Int32 { (error as? NetlinkError)?.errno ?? EIO }

    private static func text(_ code: Int32) -> String { String(cString: strerror(code)) }
}
