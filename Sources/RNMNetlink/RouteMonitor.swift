internal import CMnl
internal import CRNMShims
internal import Glibc
public import RNMCore
import Synchronization

/// Errors from the netlink shell, with the failing call and errno.
public struct NetlinkError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "netlink: \(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Follows links, addresses (IPv4 and IPv6) and rnm's own routes over rtnetlink with libmnl.
///
/// Runs on a dedicated thread (`run` blocks): it subscribes to the link, address and route groups **before**
/// the initial dump, hands the dump to the sink as a snapshot followed by `.events([.routes(…)])` (rnm's
/// routes, those marked with `NetworkMark.protocolID`), then streams changes. ENOBUFS (the kernel dropped
/// notifications) triggers a fresh dump, handed over the same way. `stop()` may be called from any thread.
///
/// Routes of other protocols never reach the process: a socket filter drops their notifications in the
/// kernel, and route dumps ask the kernel for protocol 114 only (NETLINK_GET_STRICT_CHK; older kernels send
/// everything and the decoder skips it).
///
/// The kernel removes IPv4 routes without a notification when their device goes down or loses its last
/// IPv4 address (and when the device is deleted); IPv6 says so. So after a link goes down or away, or an
/// IPv4 address is removed, the monitor dumps rnm's routes again and appends `.routes(…)` to the events it
/// hands over (once per batch).
public final class RouteMonitor: AddressMonitor {
    /// Receive buffer requested with SO_RCVBUFFORCE (falls back to SO_RCVBUF without CAP_NET_ADMIN).
    public let receiveBufferSize: Int
    private let wake: Int32
    private let stopped = Atomic<Bool>(false)
    private let overrunCount = Atomic<Int>(0)

    public init(receiveBufferSize: Int = 4 << 20) throws {
        self.receiveBufferSize = receiveBufferSize
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
        guard fd >= 0 else { throw NetlinkError("eventfd", errno: errno) }
        wake = fd
    }

    deinit { close(wake) }

    /// Overruns (ENOBUFS) seen so far.
    public var overruns: Int { overrunCount.load(ordering: .relaxed) }

    /// Makes `run` return soon. Safe from any thread.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    /// Blocks until `stop()`; calls `sink` on the calling thread. Throws only if the sockets cannot be set up.
    public func run(_ sink: (MonitorOutput) -> Void) throws {
        let groups = UInt32(RTMGRP_LINK) | UInt32(RTMGRP_IPV4_IFADDR) | UInt32(RTMGRP_IPV6_IFADDR)
            | UInt32(RTMGRP_IPV4_ROUTE) | UInt32(RTMGRP_IPV6_ROUTE)
        let events = try MnlSocket(bus: NETLINK_ROUTE, groups: groups)
        defer { events.close() }
        events.setReceiveBuffer(receiveBufferSize)
        // Other protocols' route notifications are dropped by the kernel. Without the filter (it cannot fail on
        // Linux, but if it did) they would arrive and the decoder would skip them: slower, not wrong.
        _ = RNM_netlink_route_protocol_filter(events.fd, NetworkMark.protocolID)
        let dumper = try Self.dumpSocket(receiveBufferSize)
        defer { dumper.close() }

        // Subscribed first, so nothing that happens during the dump is lost: it is queued on `events`.
        var started = ContinuousClock.now  // when the current dump was asked for
        var snap = dumpUntilStable(dumper, routes: true)
        if stopped.load(ordering: .acquiring) { return }
        sink(.snapshot(links: snap.links, addresses: snap.addresses, overrun: false, since: started))
        sink(.events([.routes(snap.routes)]))
        // Which links are up, to notice the transitions after which the kernel drops IPv4 routes silently.
        var linkUp: [Int32: Bool] = [:]
        func resetLinks(_ links: [Link]) {
            linkUp.removeAll(keepingCapacity: true)
            for l in links { linkUp[l.index] = l.isUp }
        }
        resetLinks(snap.links)
        var routesStale = false
        func handOver(_ pending: inout [NetEvent]) {
            if routesStale {
                routesStale = false
                if let routes = dumpRoutesUntilStable(dumper) { pending.append(.routes(routes)) }
            }
            guard !pending.isEmpty else { return }
            sink(.events(pending))
            pending.removeAll(keepingCapacity: true)
        }

        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var fds = [pollfd(fd: events.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        // Notifications arrive one per datagram; gather what is already queued and hand it over in one go.
        var pending: [NetEvent] = []
        while !stopped.load(ordering: .acquiring) {
            let n = buffer.withUnsafeMutableBytes { recv(events.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                let parsed = buffer.withUnsafeBytes { RouteMessages.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                for e in parsed.events {
                    switch e {
                    case .linkChanged(let l):
                        if !l.isUp, linkUp[l.index] == true { routesStale = true }
                        linkUp[l.index] = l.isUp
                    case .linkRemoved(let index):
                        linkUp[index] = nil
                        routesStale = true
                    case .addressRemoved(let k) where k.address.family == .v4:
                        routesStale = true
                    default:
                        break
                    }
                }
                pending.append(contentsOf: parsed.events)
                if pending.count >= 4096 { handOver(&pending) }
                continue
            }
            if n == 0 { continue }
            switch errno {
            case EAGAIN:
                if !pending.isEmpty || routesStale {
                    handOver(&pending)
                    continue
                }
                fds[0].revents = 0
                fds[1].revents = 0
                _ = poll(&fds, 2, -1)
            case EINTR:
                continue
            case ENOBUFS:
                // The kernel dropped notifications: our picture is stale. Count it and start over from a dump,
                // which supersedes whatever was gathered but not yet handed over.
                started = ContinuousClock.now
                overrunCount.add(1, ordering: .relaxed)
                pending.removeAll(keepingCapacity: true)
                routesStale = false
                // What is still queued predates the overflow, and the notifications that followed it were
                // dropped: applied after the dump, it would resurrect stale state (an add whose delete was
                // lost). Discard it; the dump below covers all of it.
                discardQueued(events.fd, &buffer)
                snap = dumpUntilStable(dumper, routes: true)
                if stopped.load(ordering: .acquiring) { return }
                sink(.snapshot(links: snap.links, addresses: snap.addresses, overrun: true, since: started))
                sink(.events([.routes(snap.routes)]))
                resetLinks(snap.links)
            default:
                // Unexpected: back off briefly so a persistent error cannot spin a core.
                var ts = timespec(tv_sec: 0, tv_nsec: 100_000_000)
                nanosleep(&ts, nil)
            }
        }
    }

    /// One dump of links and addresses, without subscribing (for `rnmd --render`).
    public func snapshot() throws -> (links: [Link], addresses: [Address]) {
        let sock = try Self.dumpSocket(receiveBufferSize)
        defer { sock.close() }
        let snap = dumpUntilStable(sock, routes: false)
        return (snap.links, snap.addresses)
    }

    /// One dump of rnm's routes (IPv4 and IPv6, every table), without subscribing.
    public func routes() throws -> [Route] {
        let sock = try Self.dumpSocket(receiveBufferSize)
        defer { sock.close() }
        var attempt = 0
        while true {
            attempt += 1
            let (routes, interrupted) = try dumpRoutes(sock)
            if !interrupted || attempt >= 10 { return routes }
        }
    }

    /// The socket dumps are asked on. Strict checking makes the kernel honour the route dump's protocol
    /// filter (Linux 4.20+); the link and address dump requests are all zeros, which it accepts too.
    private static func dumpSocket(_ receiveBufferSize: Int) throws -> MnlSocket {
        let sock = try MnlSocket(bus: NETLINK_ROUTE, groups: 0)
        sock.setReceiveBuffer(receiveBufferSize)
        _ = RNM_netlink_set_option(sock.fd, NETLINK_GET_STRICT_CHK, 1)
        return sock
    }

    /// Discards what the socket had queued at the overflow: at most a receive buffer's worth of bytes, so a
    /// storm that keeps going cannot keep us here (anything later is newer than the dump that follows).
    private func discardQueued(_ fd: Int32, _ buffer: inout [UInt8]) {
        var budget = 2 * receiveBufferSize + buffer.count
        while budget > 0 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                budget -= n
            } else if n == 0 || (errno != EINTR && errno != ENOBUFS) {
                return
            }
        }
    }

    private struct Dump {
        var links: [Link] = []
        var addresses: [Address] = []
        var routes: [Route] = []
    }

    /// Links, addresses and (with `routes`) rnm's routes; repeated while the kernel marks a dump as
    /// interrupted.
    private func dumpUntilStable(_ sock: MnlSocket, routes withRoutes: Bool) -> Dump {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let (links, li) = try dump(sock, type: UInt16(RTM_GETLINK), headerSize: MemoryLayout<ifinfomsg>.size)
                let (addresses, ai) = try dump(sock, type: UInt16(RTM_GETADDR), headerSize: MemoryLayout<ifaddrmsg>.size)
                var out = Dump()
                var ri = false
                if withRoutes { (out.routes, ri) = try dumpRoutes(sock) }
                if (li || ai || ri) && attempt < 10 { continue }
                for e in links { if case .linkChanged(let l) = e { out.links.append(l) } }
                for e in addresses { if case .addressChanged(let a) = e { out.addresses.append(a) } }
                return out
            } catch {
                if stopped.load(ordering: .acquiring) { return Dump() }
                var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
                nanosleep(&ts, nil)
            }
        }
    }

    /// rnm's routes alone, repeated while interrupted; nil if `stop()` was called meanwhile.
    private func dumpRoutesUntilStable(_ sock: MnlSocket) -> [Route]? {
        var attempt = 0
        while !stopped.load(ordering: .acquiring) {
            attempt += 1
            do {
                let (routes, interrupted) = try dumpRoutes(sock)
                if !interrupted || attempt >= 10 { return routes }
            } catch {
                var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
                nanosleep(&ts, nil)
            }
        }
        return nil
    }

    /// RTM_GETROUTE for IPv4 then IPv6, every table, asking for protocol 114 only (honoured with strict
    /// checking; the decoder drops other protocols either way).
    private func dumpRoutes(_ sock: MnlSocket) throws -> ([Route], Bool) {
        var routes: [Route] = []
        var interrupted = false
        for family in [AF_INET, AF_INET6] {
            let (events, i) = try dump(sock, type: UInt16(RTM_GETROUTE), headerSize: MemoryLayout<rtmsg>.size) { header in
                let rtm = header.assumingMemoryBound(to: rtmsg.self)
                rtm.pointee.rtm_family = UInt8(family)
                rtm.pointee.rtm_protocol = NetworkMark.protocolID
            }
            interrupted = interrupted || i
            for e in events { if case .routeChanged(let r) = e { routes.append(r) } }
        }
        return (routes, interrupted)
    }

    /// One dump request. `fill` may set fields of the (zeroed) family header; left alone, family AF_UNSPEC
    /// means every family.
    private func dump(
        _ sock: MnlSocket, type: UInt16, headerSize: Int, fill: (UnsafeMutableRawPointer) -> Void = { _ in }
    ) throws -> ([NetEvent], Bool) {
        var req = [UInt8](repeating: 0, count: MemoryLayout<nlmsghdr>.size + headerSize)
        let seq = sock.nextSequence()
        req.withUnsafeMutableBytes { raw in
            let nlh = mnl_nlmsg_put_header(raw.baseAddress)!
            nlh.pointee.nlmsg_type = type
            nlh.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
            nlh.pointee.nlmsg_seq = seq
            fill(mnl_nlmsg_put_extra_header(nlh, headerSize)!)  // zeroed
        }
        try sock.send(req)
        var events: [NetEvent] = []
        var interrupted = false
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            let n = try sock.receive(&buffer)
            let parsed = buffer.withUnsafeBytes { RouteMessages.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            events.append(contentsOf: parsed.events)
            interrupted = interrupted || parsed.interrupted
            if let e = parsed.error { throw NetlinkError("dump", errno: -e) }
            if parsed.done { return (events, interrupted) }
        }
    }
}

/// A libmnl socket with the few operations the shells need. Used by one thread at a time.
package final class MnlSocket {
    private let nl: OpaquePointer
    package let fd: Int32
    package let portID: UInt32
    private var seq: UInt32

    package init(bus: Int32, groups: UInt32) throws {
        guard let nl = mnl_socket_open2(bus, Int32(SOCK_CLOEXEC.rawValue)) else { throw NetlinkError("mnl_socket_open", errno: errno) }
        guard mnl_socket_bind(nl, groups, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let e = errno
            mnl_socket_close(nl)
            throw NetlinkError("mnl_socket_bind", errno: e)
        }
        self.nl = nl
        fd = mnl_socket_get_fd(nl)
        portID = mnl_socket_get_portid(nl)
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        seq = UInt32(truncatingIfNeeded: ts.tv_nsec)
    }

    package func close() { mnl_socket_close(nl) }

    package func nextSequence() -> UInt32 {
        seq &+= 1
        return seq
    }

    /// Marks `n` sequence numbers as used (a batch numbered its messages itself).
    package func skipSequences(_ n: Int) {
        seq &+= UInt32(truncatingIfNeeded: n)
    }

    /// SO_RCVBUFFORCE (needs CAP_NET_ADMIN), else SO_RCVBUF.
    package func setReceiveBuffer(_ size: Int) {
        var v = Int32(clamping: size)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// SO_SNDBUFFORCE, else SO_SNDBUF.
    package func setSendBuffer(_ size: Int) {
        var v = Int32(clamping: size)
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    package func send(_ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { mnl_socket_sendto(nl, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw NetlinkError("sendto", errno: n < 0 ? errno : EMSGSIZE) }
    }

    /// Blocking receive; retries EINTR.
    package func receive(_ buffer: inout [UInt8]) throws -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(nl, $0.baseAddress, $0.count) }
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw NetlinkError("recvfrom", errno: errno)
        }
    }
}
