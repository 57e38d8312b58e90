import Glibc
import RNMCore
import RNMNetlink
import Testing

/// NetlinkConfigurator and RouteMonitor against the real kernel, each test in its own scratch network
/// namespace (needs root, as CI has), using only `lo` (ifindex 1).
@Suite struct NetlinkConfiguratorTests {
    static let lo: Int32 = 1

    static func prefix(_ s: String) -> IPPrefix { IPPrefix(s)! }
    static func key(_ dst: String, table: UInt32 = 254, metric: UInt32 = 0) -> RouteKey {
        RouteKey(table: table, destination: IPPrefix(dst)!, metric: metric)
    }

    /// The error code `body` threw (0: it did not).
    static func code(_ body: () throws(NetworkError) -> Void) -> Int32 {
        do throws(NetworkError) {
            try body()
            return 0
        } catch {
            return error.code
        }
    }

    /// A scratch namespace with lo up and a configurator living in it.
    static func setUp() throws -> (ScratchNet, NetlinkConfigurator) {
        let ns = try ScratchNet()
        let nc = try ns.run { try NetlinkConfigurator() }
        try nc.setLink(ifindex: lo, up: true, mtu: nil)
        return (ns, nc)
    }

    @Test func addresses_addReadBackDelete() throws {
        let (ns, nc) = try Self.setUp()
        let v4 = Self.prefix("192.0.2.1/24")
        let v6 = Self.prefix("2001:db8::1/64")
        try nc.addAddress(v4, ifindex: Self.lo)
        try nc.addAddress(v6, ifindex: Self.lo)
        // Already there: success.
        try nc.addAddress(v4, ifindex: Self.lo)
        try nc.addAddress(v6, ifindex: Self.lo)

        let snap = try ns.run { try RouteMonitor().snapshot() }
        let mine = snap.addresses.filter(\.isRNMs)
        #expect(Set(mine.map(\.key)) == [
            AddressKey(ifindex: Self.lo, address: v4.address, prefixLength: 24),
            AddressKey(ifindex: Self.lo, address: v6.address, prefixLength: 64),
        ])
        // The kernel's own (127.0.0.1, ::1) carry another protocol (or none).
        #expect(snap.addresses.contains { $0.key.address == IPAddress("127.0.0.1")! && !$0.isRNMs })

        // IFA_BROADCAST went with the IPv4 address, as `ip addr add … brd +` would.
        let shown = try ns.shell("ip -4 addr show dev lo")
        #expect(shown.contains("inet 192.0.2.1/24 brd 192.0.2.255 scope global"), "\(shown)")

        try nc.deleteAddress(v4, ifindex: Self.lo)
        try nc.deleteAddress(v6, ifindex: Self.lo)
        // Gone already: success, also for a link that does not exist.
        try nc.deleteAddress(v4, ifindex: Self.lo)
        try nc.deleteAddress(v6, ifindex: Self.lo)
        try nc.deleteAddress(v4, ifindex: 999)
        let after = try ns.run { try RouteMonitor().snapshot() }
        #expect(after.addresses.filter(\.isRNMs).isEmpty)

        // No such link: the kernel's code and a message naming what failed.
        do throws(NetworkError) {
            try nc.addAddress(v4, ifindex: 999)
            Issue.record("added an address to ifindex 999")
        } catch {
            #expect(error.code == ENODEV)
            #expect(error.message.hasPrefix("add address 192.0.2.1/24 on ifindex 999: "))
        }
    }

    @Test func setLink_mtuAndState() throws {
        let (ns, nc) = try Self.setUp()
        try nc.setLink(ifindex: Self.lo, up: nil, mtu: 9000)
        var lo = try ns.run { try RouteMonitor().snapshot() }.links.first { $0.index == Self.lo }
        #expect(lo?.mtu == 9000 && lo?.isUp == true)
        try nc.setLink(ifindex: Self.lo, up: false, mtu: nil)
        lo = try ns.run { try RouteMonitor().snapshot() }.links.first { $0.index == Self.lo }
        #expect(lo?.isUp == false && lo?.mtu == 9000)
        try nc.setLink(ifindex: Self.lo, up: true, mtu: 65536)
        lo = try ns.run { try RouteMonitor().snapshot() }.links.first { $0.index == Self.lo }
        #expect(lo?.isUp == true && lo?.mtu == 65536)
        try nc.setLink(ifindex: Self.lo, up: nil, mtu: nil)  // nothing to do
        #expect(Self.code { () throws(NetworkError) in try nc.setLink(ifindex: 999, up: true, mtu: nil) } == ENODEV)
        // The kernel takes the MTU as an int: 2³¹ is negative to it.
        #expect(Self.code { () throws(NetworkError) in try nc.setLink(ifindex: Self.lo, up: nil, mtu: 1 << 31) } == EINVAL)
    }

    @Test func routes_addReplaceDeleteAndErrors() throws {
        let (ns, nc) = try Self.setUp()
        try nc.addAddress(Self.prefix("192.0.2.1/24"), ifindex: Self.lo)

        let r1 = Route(key: Self.key("10.20.0.0/16"), oif: Self.lo)
        let r1m = Route(key: Self.key("10.20.0.0/16", metric: 50), oif: Self.lo)
        let r2 = Route(key: Self.key("2001:db8:1::/48", metric: 1024), oif: Self.lo)
        let r3 = Route(key: Self.key("10.30.0.0/16", table: 100), oif: Self.lo)
        let r4 = Route(key: Self.key("0.0.0.0/0", table: 1000), gateway: IPAddress("192.0.2.254"))
        for r in [r1, r1m, r2, r3, r4] { try nc.addRoute(r) }

        // A route with that identity exists: EEXIST is the caller's to judge.
        #expect(Self.code { () throws(NetworkError) in try nc.addRoute(r1) } == EEXIST)
        #expect(Self.code { () throws(NetworkError) in try nc.addRoute(r2) } == EEXIST)

        // Read back through the dump and the decoder: rnm's routes, nothing else (the kernel's local routes
        // and the address's prefix route have other protocols).
        var routes = try ns.run { try RouteMonitor().routes() }
        #expect(Set(routes) == Set([
            r1, r1m, r2, r3,
            Route(key: r4.key, gateway: r4.gateway, oif: Self.lo),  // the kernel resolved the device
        ]))

        // Replace: same identity, now via a gateway.
        let r1via = Route(key: r1.key, gateway: IPAddress("192.0.2.253"), oif: Self.lo)
        try nc.replaceRoute(r1via)
        routes = try ns.run { try RouteMonitor().routes() }
        #expect(routes.contains(r1via) && !routes.contains(r1) && routes.contains(r1m))
        // Replace creates when missing.
        let r5 = Route(key: Self.key("10.50.0.0/16"), oif: Self.lo)
        try nc.replaceRoute(r5)

        // Delete by identity (whatever the gateway is now); deleting again succeeds, also in a table that
        // never existed.
        for r in [r1, r1m, r2, r3, r4, r5] { try nc.deleteRoute(r) }
        for r in [r1, r2, r3, r4, Route(key: Self.key("10.9.0.0/16", table: 4242))] { try nc.deleteRoute(r) }
        #expect(try ns.run { try RouteMonitor().routes() }.isEmpty)

        // Unreachable gateway: the kernel's ENETUNREACH surfaces, with its own explanation.
        do throws(NetworkError) {
            try nc.addRoute(Route(key: Self.key("10.40.0.0/16"), gateway: IPAddress("198.51.100.1")))
            Issue.record("added a route via an unreachable gateway")
        } catch {
            #expect(error.code == ENETUNREACH)
            // "<what>: <strerror> (<the kernel's extended ack>)"
            #expect(error.message == "add route 10.40.0.0/16 via 198.51.100.1: Network is unreachable (Nexthop has invalid gateway)")
        }
        // No such device.
        #expect(Self.code { () throws(NetworkError) in try nc.addRoute(Route(key: Self.key("10.41.0.0/16"), oif: 999)) } == ENODEV)
    }

    /// rnm deletes only its own: a route with the same identity added by someone else stays.
    @Test func deleteRoute_leavesOtherProtocolsAlone() throws {
        let (ns, nc) = try Self.setUp()
        let theirs = Route(key: Self.key("10.60.0.0/16"), oif: Self.lo)
        try nc.addRoute(theirs, protocolID: 4)  // RTPROT_STATIC
        try nc.deleteRoute(theirs)  // ESRCH for protocol 114: success, and nothing removed
        let table = try ns.run { try Self.readFile("/proc/thread-self/net/route") }
        #expect(table.contains("00003C0A"))  // 10.60.0.0 as /proc/net/route prints it (the bytes as a host u32)
        #expect(try ns.run { try RouteMonitor().routes() }.isEmpty)
        // And an add over it is refused.
        #expect(Self.code { () throws(NetworkError) in try nc.addRoute(theirs) } == EEXIST)
    }

    @Test func sysctl_writesTheNamespacesValue() throws {
        let (ns, nc) = try Self.setUp()
        let key = "net/ipv4/conf/lo/forwarding"
        let host = try Self.readFile("/proc/sys/" + key)
        let value = try ns.run { () throws -> String in
            try nc.setSysctl(key, "1")
            return try Self.readFile("/proc/sys/" + key)
        }
        #expect(value == "1\n")
        #expect(try Self.readFile("/proc/sys/" + key) == host)  // the host's own is untouched
        for bad in ["../../etc/passwd", "/etc/passwd", "net/../../etc/passwd", ""] {
            #expect(Self.code { () throws(NetworkError) in try nc.setSysctl(bad, "1") } == EINVAL, "\(bad)")
        }
        let missing = try ns.run { Self.code { () throws(NetworkError) in try nc.setSysctl("net/ipv4/conf/nosuch0/forwarding", "1") } }
        #expect(missing == ENOENT)
    }

    // MARK: The monitor's routes

    @Test func monitor_reportsRNMsRoutesOnly() throws {
        let (ns, nc) = try Self.setUp()
        let before = Route(key: Self.key("10.10.0.0/16"), oif: Self.lo)
        try nc.addRoute(before)
        try nc.addRoute(Route(key: Self.key("10.11.0.0/16"), oif: Self.lo), protocolID: 4)

        let monitor = try RouteMonitor()
        let log = MonitorLog()
        let thread = try ns.spawn { try? monitor.run(log.sink) }
        defer {
            monitor.stop()
            thread.join()
        }
        // The snapshot, then rnm's routes (only).
        #expect(log.wait { $0.events.contains(.routes([before])) })
        guard case .snapshot(_, _, let overrun, _) = log.all.first else {
            Issue.record("first output is not the snapshot: \(log.all)")
            return
        }
        #expect(!overrun)

        // Someone else's route, then one of rnm's as a marker: the first yields nothing.
        try nc.addRoute(Route(key: Self.key("10.12.0.0/16"), oif: Self.lo), protocolID: 4)
        try nc.addRoute(Route(key: Self.key("2001:db8:12::/48"), oif: Self.lo), protocolID: 186)
        let added = Route(key: Self.key("10.13.0.0/16", table: 100, metric: 5), oif: Self.lo)
        try nc.addRoute(added)
        #expect(log.wait { $0.events.contains(.routeChanged(added)) })
        let routeEvents = log.events.filter {
            if case .routeChanged = $0 { true } else if case .routeRemoved = $0 { true } else { false }
        }
        #expect(routeEvents == [.routeChanged(added)])

        let v6 = Route(key: Self.key("2001:db8:1::/48", metric: 1024), oif: Self.lo)
        try nc.addRoute(v6)
        #expect(log.wait { $0.events.contains(.routeChanged(v6)) })
        try nc.deleteRoute(added)
        #expect(log.wait { $0.events.contains(.routeRemoved(added.key)) })

        // lo goes down: the kernel drops the IPv4 route without a notification, the IPv6 one with one; the
        // monitor dumps again and hands over rnm's routes as they are now.
        let count = log.events.count
        try nc.setLink(ifindex: Self.lo, up: false, mtu: nil)
        #expect(log.wait { log in log.events.dropFirst(count).contains(.routes([])) })
        #expect(log.events.dropFirst(count).contains(.routeRemoved(v6.key)))
        #expect(monitor.overruns == 0)
    }

    /// An overrun (the sink held while notifications pile up in a tiny buffer) is followed by a fresh
    /// snapshot and then every one of rnm's routes.
    @Test func monitor_afterAnOverrun_dumpsRoutesAgain() throws {
        let (ns, nc) = try Self.setUp()
        let monitor = try RouteMonitor(receiveBufferSize: 4096)
        let log = MonitorLog()
        let thread = try ns.spawn { try? monitor.run(log.sink) }
        defer {
            log.hold(false)
            monitor.stop()
            thread.join()
        }
        #expect(log.wait { $0.events.contains(.routes([])) })
        log.hold(true)
        var added: [Route] = []
        for i in 0..<200 {
            let r = Route(key: Self.key("10.\(100 + i / 100).\(i % 100).0/24"), oif: Self.lo)
            try nc.addRoute(r)
            added.append(r)
        }
        log.hold(false)
        #expect(log.wait { log in
            log.all.contains { if case .snapshot(_, _, true, _) = $0 { true } else { false } }
                && log.events.contains { if case .routes(let rs) = $0 { Set(rs) == Set(added) } else { false } }
        })
        #expect(monitor.overruns >= 1)
        // The routes come right after the overrun's snapshot.
        let all = log.all
        if let i = all.firstIndex(where: { if case .snapshot(_, _, true, _) = $0 { true } else { false } }), i + 1 < all.count,
            case .events(let e) = all[i + 1]
        {
            #expect(e.count == 1 && e.first.map { if case .routes = $0 { true } else { false } } == true)
        } else {
            Issue.record("no output after the overrun's snapshot")
        }
    }

    /// Other protocols' routes are dropped in the kernel (the socket filter): a burst of them fills no
    /// buffer, even a tiny one with the sink held, so it causes no overrun and no resync.
    @Test func monitor_otherProtocolsBurst_costsNoOverrun() throws {
        let (ns, nc) = try Self.setUp()
        let monitor = try RouteMonitor(receiveBufferSize: 4096)
        let log = MonitorLog()
        let thread = try ns.spawn { try? monitor.run(log.sink) }
        defer {
            log.hold(false)
            monitor.stop()
            thread.join()
        }
        #expect(log.wait { $0.events.contains(.routes([])) })
        log.hold(true)
        let first = Route(key: Self.key("10.99.0.0/16"), oif: Self.lo)
        try nc.addRoute(first)  // the monitor's sink now holds on this one
        for i in 0..<300 {
            try nc.addRoute(Route(key: Self.key("10.\(100 + i / 100).\(i % 100).0/24"), oif: Self.lo), protocolID: 186)  // RTPROT_BGP
        }
        log.hold(false)
        let marker = Route(key: Self.key("10.98.0.0/16"), oif: Self.lo)
        try nc.addRoute(marker)
        #expect(log.wait { $0.events.contains(.routeChanged(marker)) })
        #expect(monitor.overruns == 0)
        #expect(log.events.contains(.routeChanged(first)))
    }

    static func readFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ScratchNet.Failure(description: "open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
