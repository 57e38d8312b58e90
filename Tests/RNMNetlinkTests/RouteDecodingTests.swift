import Glibc
import RNMCore
import RNMNetlink
import Testing

/// Decoding of routes, IFLA_MTU and IFA_PROTO on bytes recorded from a real kernel
/// (Fixtures/rtnetlink-routes.hex, made by Fixtures/record-routes.py), plus hand-built malformed messages.
@Suite struct RouteDecodingTests {
    static let recorded = Recording.load("rtnetlink-routes.hex")

    static func events(after command: String) -> [NetEvent] {
        guard let msgs = recorded.first(where: { $0.command == command })?.messages else {
            Issue.record("no recording of \(command)")
            return []
        }
        return msgs.flatMap { RouteMessages.parse($0).events }
    }

    static func routeEvents(after command: String) -> [NetEvent] {
        events(after: command).filter {
            switch $0 {
            case .routeChanged, .routeRemoved, .routes: true
            default: false
            }
        }
    }

    static func key(_ dst: String, table: UInt32 = 254, metric: UInt32 = 0) -> RouteKey {
        RouteKey(table: table, destination: IPPrefix(dst)!, metric: metric)
    }

    static let lo: Int32 = 1
    static let veth0: Int32 = 3

    // MARK: Links and addresses

    @Test func linkMTU() {
        let up = Self.events(after: "ip link set lo up")
        #expect(up.first == .linkChanged(Link(index: 1, name: "lo", isUp: true, operState: .unknown, mtu: 65536)))
        #expect(Self.events(after: "ip link set lo mtu 9000") == [.linkChanged(Link(index: 1, name: "lo", isUp: true, operState: .unknown, mtu: 9000))])
    }

    @Test func addressProtocol() {
        let marked4 = Self.events(after: "rtnl addr add 192.0.2.1/24 dev lo proto 114").compactMap { e -> Address? in
            if case .addressChanged(let a) = e { a } else { nil }
        }
        #expect(marked4.count == 1)
        #expect(marked4.first?.protocolID == NetworkMark.protocolID && marked4.first?.isRNMs == true)
        #expect(marked4.first?.key == AddressKey(ifindex: 1, address: IPAddress("192.0.2.1")!, prefixLength: 24))

        let plain = Self.events(after: "ip addr add 192.0.2.2/24 dev lo").compactMap { e -> Address? in
            if case .addressChanged(let a) = e { a } else { nil }
        }
        #expect(plain.map(\.protocolID) == [0])

        let marked6 = Self.events(after: "rtnl addr add 2001:db8::1/64 dev lo proto 114").compactMap { e -> Address? in
            if case .addressChanged(let a) = e { a } else { nil }
        }
        #expect(!marked6.isEmpty)
        #expect(marked6.allSatisfy { $0.protocolID == 114 && $0.key.address == IPAddress("2001:db8::1")! && $0.key.prefixLength == 64 })
    }

    // MARK: Routes

    @Test func kernelRoutesAndOtherProtocols_areIgnored() {
        // lo up and address additions make local, broadcast and prefix routes (protocol kernel).
        #expect(Self.routeEvents(after: "ip link set lo up").isEmpty)
        #expect(Self.routeEvents(after: "rtnl addr add 192.0.2.1/24 dev lo proto 114").isEmpty)
        #expect(Self.routeEvents(after: "rtnl addr add 2001:db8::1/64 dev lo proto 114").isEmpty)
        #expect(Self.events(after: "ip route add 10.40.0.0/16 dev lo proto static").isEmpty)
        // rnm's mark but not unicast.
        #expect(Self.events(after: "ip route add blackhole 10.60.0.0/16 proto 114").isEmpty)
        // Skipped, not malformed.
        let msgs = Self.recorded.first { $0.command == "ip route add 10.40.0.0/16 dev lo proto static" }!.messages
        #expect(msgs.allSatisfy { RouteMessages.parse($0).malformed == 0 })
    }

    @Test func ipv4Routes() {
        #expect(Self.events(after: "ip route add 10.20.0.0/16 dev lo proto 114")
            == [.routeChanged(Route(key: Self.key("10.20.0.0/16"), gateway: nil, oif: Self.lo))])
        #expect(Self.events(after: "ip route add 10.30.0.0/16 via 192.0.2.254 proto 114 metric 50 table 100")
            == [.routeChanged(Route(key: Self.key("10.30.0.0/16", table: 100, metric: 50), gateway: IPAddress("192.0.2.254"), oif: Self.lo))])
        // Table 1000 does not fit rtm_table (the kernel says RT_TABLE_COMPAT there): RTA_TABLE wins. No RTA_DST.
        #expect(Self.events(after: "ip route add default via 192.0.2.254 proto 114 table 1000")
            == [.routeChanged(Route(key: Self.key("0.0.0.0/0", table: 1000), gateway: IPAddress("192.0.2.254"), oif: Self.lo))])
        #expect(Self.events(after: "ip route add 10.70.0.0/16 dev lo proto 114 table 100 metric 1024")
            == [.routeChanged(Route(key: Self.key("10.70.0.0/16", table: 100, metric: 1024), oif: Self.lo))])
        #expect(Self.events(after: "ip route replace 10.20.0.0/16 via 192.0.2.253 proto 114")
            == [.routeChanged(Route(key: Self.key("10.20.0.0/16"), gateway: IPAddress("192.0.2.253"), oif: Self.lo))])
        #expect(Self.events(after: "ip route del 10.20.0.0/16 proto 114") == [.routeRemoved(Self.key("10.20.0.0/16"))])
        #expect(Self.events(after: "ip route del default table 1000") == [.routeRemoved(Self.key("0.0.0.0/0", table: 1000))])
    }

    @Test func ipv6Routes() {
        // IPv6 has no metric 0: the kernel makes it 1024 and reports that.
        #expect(Self.routeEvents(after: "ip -6 route add 2001:db8:1::/48 dev lo proto 114")
            == [.routeChanged(Route(key: Self.key("2001:db8:1::/48", metric: 1024), oif: Self.lo))])
        #expect(Self.routeEvents(after: "ip -6 route add default via 2001:db8:5::fe dev veth0 proto 114 metric 7 table 100")
            == [.routeChanged(Route(key: Self.key("::/0", table: 100, metric: 7), gateway: IPAddress("2001:db8:5::fe"), oif: Self.veth0))])
        #expect(Self.routeEvents(after: "ip -6 route del 2001:db8:1::/48 proto 114") == [.routeRemoved(Self.key("2001:db8:1::/48", metric: 1024))])
        #expect(Self.routeEvents(after: "ip -6 route del default table 100 proto 114 metric 7") == [.routeRemoved(Self.key("::/0", table: 100, metric: 7))])
    }

    /// What the kernel says when a device goes down: IPv6 routes are withdrawn with RTM_DELROUTE, IPv4
    /// routes vanish without a word (the reason RouteMonitor dumps rnm's routes again after a link goes
    /// down or away).
    @Test func linkDown_withdrawsIPv6RoutesLoudlyAndIPv4RoutesSilently() {
        #expect(Self.routeEvents(after: "ip route add 10.80.0.0/16 dev veth0 proto 114")
            == [.routeChanged(Route(key: Self.key("10.80.0.0/16"), oif: Self.veth0))])
        #expect(Self.routeEvents(after: "ip link set veth0 down") == [.routeRemoved(Self.key("2001:db8:6::/48", metric: 1024))])
        #expect(Self.routeEvents(after: "ip route add 10.80.0.0/16 dev veth1 proto 114")
            == [.routeChanged(Route(key: Self.key("10.80.0.0/16"), oif: 2))])
        let gone = Self.events(after: "ip link del veth0")
        #expect(gone.contains(.linkRemoved(index: 2)) && gone.contains(.linkRemoved(index: 3)))
        #expect(!gone.contains(.routeRemoved(Self.key("10.80.0.0/16"))))
    }

    @Test func wholeRecording_inOneBuffer_decodesInOrder() {
        let all = Self.recorded.flatMap(\.messages)
        let one = RouteMessages.parse(all.reduce([], +))
        #expect(one.events == all.flatMap { RouteMessages.parse($0).events })
        #expect(one.malformed == 0)
    }

    // MARK: Malformed and unusual messages

    /// A route message as the kernel lays it out: nlmsghdr, rtmsg, attributes.
    static func routeMessage(
        type: UInt16 = 24, family: UInt8 = 2, dstLen: UInt8, srcLen: UInt8 = 0, tos: UInt8 = 0, table: UInt8 = 254,
        proto: UInt8 = 114, routeType: UInt8 = 1, flags: UInt32 = 0, attributes: [(UInt16, [UInt8])]
    ) -> [UInt8] {
        var body: [UInt8] = [family, dstLen, srcLen, tos, table, proto, 0, routeType]
        body += withUnsafeBytes(of: flags) { Array($0) }
        for (t, payload) in attributes {
            body += withUnsafeBytes(of: UInt16(4 + payload.count)) { Array($0) }
            body += withUnsafeBytes(of: t) { Array($0) }
            body += payload
            while body.count % 4 != 0 { body.append(0) }
        }
        var msg = withUnsafeBytes(of: UInt32(16 + body.count)) { Array($0) }
        msg += withUnsafeBytes(of: type) { Array($0) }
        msg += [0, 0] + [UInt8](repeating: 0, count: 8)
        return msg + body
    }

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }

    @Test func handBuilt_viaAndUnusualShapes() {
        // An IPv4 route via an IPv6 next hop (RTA_VIA: family AF_INET6, then the address).
        let via = withUnsafeBytes(of: UInt16(10)) { Array($0) } + IPAddress("fe80::1")!.bytes
        let m = Self.routeMessage(dstLen: 8, attributes: [(15, Self.u32(254)), (1, [10, 0, 0, 0]), (18, via), (4, Self.u32(1))])
        #expect(RouteMessages.parse(m).events == [.routeChanged(Route(key: Self.key("10.0.0.0/8"), gateway: IPAddress("fe80::1"), oif: 1))])
        // No RTA_TABLE: rtm_table.
        let t = Self.routeMessage(dstLen: 8, table: 100, attributes: [(1, [10, 0, 0, 0])])
        #expect(RouteMessages.parse(t).events == [.routeChanged(Route(key: Self.key("10.0.0.0/8", table: 100)))])
        // Other identities than rnm's plain unicast routes: skipped, not malformed.
        for skipped in [
            Self.routeMessage(dstLen: 8, srcLen: 8, attributes: [(1, [10, 0, 0, 0])]),
            Self.routeMessage(dstLen: 8, tos: 4, attributes: [(1, [10, 0, 0, 0])]),
            Self.routeMessage(dstLen: 8, flags: 0x200, attributes: [(1, [10, 0, 0, 0])]),  // RTM_F_CLONED
            Self.routeMessage(dstLen: 8, routeType: 7, attributes: [(1, [10, 0, 0, 0])]),  // unreachable
            Self.routeMessage(family: 28, dstLen: 8, attributes: []),  // AF_MPLS
            Self.routeMessage(dstLen: 8, proto: 4, attributes: [(1, [10, 0])]),  // static: not even looked at
        ] {
            let r = RouteMessages.parse(skipped)
            #expect(r.events.isEmpty && r.malformed == 0)
        }
    }

    @Test func handBuilt_malformedRoutes_areCounted() {
        for bad in [
            Self.routeMessage(dstLen: 8, attributes: [(1, [10, 0, 0])]),  // RTA_DST of 3 bytes
            Self.routeMessage(dstLen: 8, attributes: []),  // a length without RTA_DST
            Self.routeMessage(dstLen: 33, attributes: [(1, [10, 0, 0, 0])]),  // /33
            Self.routeMessage(family: 10, dstLen: 48, attributes: [(1, [10, 0, 0, 0])]),  // IPv6 with 4 bytes
            Self.routeMessage(dstLen: 8, attributes: [(1, [10, 0, 0, 0]), (5, [1, 2, 3, 4, 5, 6])]),  // gateway size
            Self.routeMessage(dstLen: 8, attributes: [(1, [10, 0, 0, 0]), (15, [1, 0])]),  // short RTA_TABLE
            Self.routeMessage(dstLen: 8, attributes: [(1, [10, 0, 0, 0]), (6, [1])]),  // short RTA_PRIORITY
            Self.routeMessage(dstLen: 8, attributes: [(1, [10, 0, 0, 0]), (4, [1])]),  // short RTA_OIF
            Self.routeMessage(dstLen: 8, attributes: [(1, [10, 0, 0, 0]), (18, [2, 0, 1])]),  // short RTA_VIA
        ] {
            let r = RouteMessages.parse(bad)
            #expect(r.events.isEmpty && r.malformed == 1, "\(bad)")
        }
        // A delete needs no gateway, and a short rtmsg is malformed.
        let short = Array(Self.routeMessage(dstLen: 0, attributes: [])[0..<20])
        var fixed = short
        fixed[0] = 20
        #expect(RouteMessages.parse(fixed).malformed == 1)
    }

    @Test func truncatedOrCorruptRouteMessages_neverCrash() {
        let samples = [
            "ip route add 10.30.0.0/16 via 192.0.2.254 proto 114 metric 50 table 100",
            "ip -6 route add default via 2001:db8:5::fe dev veth0 proto 114 metric 7 table 100",
            "ip route del 10.20.0.0/16 proto 114",
        ].map { c in Self.recorded.first { $0.command == c }!.messages[0] }
        var x: UInt64 = 11
        for msg in samples {
            for cut in 0..<msg.count {
                let r = RouteMessages.parse(Array(msg[0..<cut]))
                #expect(r.events.isEmpty)
            }
            for _ in 0..<3000 {
                var b = msg
                for _ in 0..<4 {
                    x = x &* 6364136223846793005 &+ 1
                    b[Int(x >> 33) % b.count] = UInt8(truncatingIfNeeded: x >> 17)
                }
                let r = RouteMessages.parse(b)
                // Whatever it decodes is one of rnm's routes with a sane prefix.
                for e in r.events {
                    if case .routeChanged(let route) = e {
                        #expect(route.protocolID == 114)
                        #expect(route.key.destination.length <= route.key.destination.address.family.maxPrefixLength)
                    }
                }
            }
        }
    }
}
