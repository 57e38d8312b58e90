import RNMCore
import Testing

@Suite struct NetworkPlanTests {
    static let eth0 = Link(index: 2, name: "eth0", isUp: false, mtu: 1500)
    static let eth1 = Link(index: 3, name: "eth1", isUp: true, mtu: 1500)

    static func addr(_ text: String, on link: Link, rnm: Bool = false, valid: UInt32 = .max, scope: UInt8 = 0) -> Address {
        let p = IPPrefix(text)!
        return Address(key: AddressKey(ifindex: link.index, address: p.address, prefixLength: p.length), scope: scope,
                       validLifetime: valid, protocolID: rnm ? NetworkMark.protocolID : 0)
    }

    static func config(exclusive: Bool = false, dhcp: Bool = false, routes: [RouteConfig] = [], forwarding: Bool = false) -> Config {
        Config(interfaces: [
            InterfaceConfig(name: "eth0", zone: "wan", dhcp: dhcp, addresses: [IPPrefix("192.0.2.1/24")!, IPPrefix("2001:db8::1/64")!],
                            exclusive: exclusive, mtu: 1400),
            InterfaceConfig(name: "eth1", zone: "lan", addresses: [IPPrefix("192.168.1.1/24")!]),
        ], routes: routes, forwarding: forwarding)
    }

    @Test func missingAddresses_linkStateAndMTU_areApplied() {
        let observed = ObservedState(links: [Self.eth0, Self.eth1], addresses: [Self.addr("192.168.1.1/24", on: Self.eth1)])
        let ops = NetworkPlan.compute(config: Self.config(), observed: observed)
        #expect(ops.map(\.description) == [
            "set link eth0 up mtu 1400", "add address 192.0.2.1/24 on eth0", "add address 2001:db8::1/64 on eth0",
        ])
    }

    @Test func onlyRNMsOwnAddressesLeave_unlessExclusive() {
        let observed = ObservedState(links: [Self.eth0, Self.eth1], addresses: [
            Self.addr("192.0.2.1/24", on: Self.eth0), Self.addr("2001:db8::1/64", on: Self.eth0),
            Self.addr("192.168.1.1/24", on: Self.eth1),
            Self.addr("198.51.100.9/24", on: Self.eth0, rnm: true),  // rnm added it, the config dropped it
            Self.addr("203.0.113.5/24", on: Self.eth0),  // someone else's
            Self.addr("100.64.0.7/10", on: Self.eth0, valid: 3600),  // a DHCP lease
            Self.addr("fe80::1/64", on: Self.eth0, scope: 253),
        ])
        let plain = NetworkPlan.compute(config: Self.config(), observed: observed).map(\.description)
        #expect(plain.filter { $0.hasPrefix("remove") } == ["remove address 198.51.100.9/24 from eth0 (no longer in the config)"])
        let exclusive = NetworkPlan.compute(config: Self.config(exclusive: true, dhcp: true), observed: observed).map(\.description)
        #expect(exclusive.filter { $0.hasPrefix("remove") } == [
            "remove address 198.51.100.9/24 from eth0 (no longer in the config)",
            "remove address 203.0.113.5/24 from eth0 (exclusive: not in the config)",
        ])
        // Without dhcp: true the leased address is just another foreign one.
        #expect(NetworkPlan.compute(config: Self.config(exclusive: true), observed: observed).map(\.description)
            .contains("remove address 100.64.0.7/10 from eth0 (exclusive: not in the config)"))
    }

    @Test func routes_areAddedReplacedAndRemovedOnlyIfOurs() {
        let routes = [
            RouteConfig(to: IPPrefix("10.20.0.0/16")!, via: IPAddress("192.168.1.254")!),
            RouteConfig(to: IPPrefix("0.0.0.0/0")!, via: IPAddress("192.0.2.254")!, dev: "eth0", metric: 100),
            RouteConfig(to: IPPrefix("10.30.0.0/16")!, dev: "wg0"),  // no such link yet
        ]
        var observed = ObservedState(links: [Self.eth0, Self.eth1], addresses: [])
        let stale = Route(key: RouteKey(destination: IPPrefix("10.99.0.0/16")!), oif: 3)
        let moved = Route(key: RouteKey(destination: IPPrefix("10.20.0.0/16")!), gateway: IPAddress("192.168.1.253")!, oif: 3)
        observed.routes = [stale.key: stale, moved.key: moved]
        let ops = NetworkPlan.compute(config: Self.config(routes: routes), observed: observed).map(\.description)
            .filter { $0.contains("route") }
        #expect(ops == [
            "replace route 10.20.0.0/16 via 192.168.1.254",
            "add route default metric 100 via 192.0.2.254 oif 2",
            "remove route 10.99.0.0/16 oif 3",
        ])
        #expect(NetworkPlan.desiredRoutes(Self.config(routes: routes), observed).waiting.map(\.1) == ["interface wg0 is not present"])
        // Until the kernel's routes are known, none is planned.
        #expect(!NetworkPlan.compute(config: Self.config(routes: routes), observed: observed, routesKnown: false)
            .contains { $0.description.contains("route") })
    }

    @Test func forwarding_setsSysctlsOncePerPresentInterface() {
        let observed = ObservedState(links: [Self.eth0], addresses: [])
        let ops = NetworkPlan.compute(config: Self.config(forwarding: true), observed: observed)
            .filter { if case .sysctl = $0 { true } else { false } }
        #expect(ops.map(\.description) == [
            "sysctl net.ipv4.conf.eth0.forwarding = 1", "sysctl net.ipv6.conf.all.forwarding = 1",
            "sysctl net.ipv6.conf.eth0.forwarding = 1",
        ])
        let done = ["net/ipv4/conf/eth0/forwarding": "1", "net/ipv6/conf/all/forwarding": "1", "net/ipv6/conf/eth0/forwarding": "1"]
        #expect(!NetworkPlan.compute(config: Self.config(forwarding: true), observed: observed, sysctlsDone: done)
            .contains { if case .sysctl = $0 { true } else { false } })
    }
}
