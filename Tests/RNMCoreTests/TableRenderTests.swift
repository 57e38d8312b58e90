import RNMCore
import Testing

/// Golden tests: config + state → the exact table text rnmd loads.
@Suite struct TableRenderTests {
    static let template = RuleTemplate(
        given: "rules.d/base.nft", path: "/etc/rnm/rules.d/base.nft",
        text: "chain input {\n\ttype filter hook input priority filter; policy drop;\n\tiifname $lan_ifaces accept\n}\n")

    static let config = Config(
        table: "rnm",
        interfaces: [
            InterfaceConfig(name: "eth0", zone: "wan"), InterfaceConfig(name: "eth1", zone: "lan"),
            InterfaceConfig(name: "br-lan.10", zone: "lan"),
        ],
        sets: [DeclaredSet(name: "block_v4", family: .v4, interval: true, timeoutFlag: true, defaultTimeoutMs: 3_600_000)],
        rules: [template], defines: [Define(name: "ssh_port", value: "22")])

    static let second: UInt64 = 1_000_000_000

    static func desired() -> TableState {
        var observed = ObservedState()
        _ = observed.upsert(Link(index: 2, name: "eth0"))
        _ = observed.upsert(Address(key: AddressKey(ifindex: 2, address: IPAddress("198.51.100.7")!, prefixLength: 24), flags: .permanent))
        _ = observed.upsert(Address(key: AddressKey(ifindex: 2, address: IPAddress("2001:db8::7")!, prefixLength: 64), flags: .permanent))
        let manual: [String: [IPPrefix: Deadline]] = [
            "block_v4": [IPPrefix("192.0.2.0/24")!: 100 * second + 90_500_000_000, IPPrefix("203.0.113.9")!: .never,
                         IPPrefix("10.9.9.9")!: 50 * second],  // the last one is already due at `now`
        ]
        return Desired.compute(config: config, observed: observed, manual: manual)
    }

    @Test func golden_wholeTable() {
        let r = TableRenderer.render(config: Self.config, desired: Self.desired(), now: 100 * Self.second, source: "/etc/rnm/config.yaml")
        #expect(r.text == """
            # Table inet rnm as rendered by rnmd from /etc/rnm/config.yaml.
            # Managed sets show their elements as of rendering; rnmd keeps them current.
            define wan_ifaces = { "eth0" }
            define lan_ifaces = { "eth1", "br-lan.10" }
            define ssh_port = 22
            table inet rnm {}
            delete table inet rnm
            table inet rnm {
            \tset block_v4 {
            \t\ttype ipv4_addr
            \t\tflags interval,timeout
            \t\ttimeout 3600000ms
            \t\telements = {
            \t\t\t192.0.2.0/24 timeout 90500ms,
            \t\t\t203.0.113.9,
            \t\t}
            \t}
            \tset lan_ifaces {
            \t\ttype ifname
            \t\telements = {
            \t\t\t"br-lan.10",
            \t\t\t"eth1",
            \t\t}
            \t}
            \tset lan_v4 {
            \t\ttype ipv4_addr
            \t}
            \tset lan_v6 {
            \t\ttype ipv6_addr
            \t}
            \tset wan_ifaces {
            \t\ttype ifname
            \t\telements = {
            \t\t\t"eth0",
            \t\t}
            \t}
            \tset wan_v4 {
            \t\ttype ipv4_addr
            \t\telements = {
            \t\t\t198.51.100.7,
            \t\t}
            \t}
            \tset wan_v6 {
            \t\ttype ipv6_addr
            \t\telements = {
            \t\t\t2001:db8::7,
            \t\t}
            \t}
            \tchain rnm_forward {
            \t}

            # /etc/rnm/rules.d/base.nft
            chain input {
            \ttype filter hook input priority filter; policy drop;
            \tiifname $lan_ifaces accept
            }
            }

            """)
        // What the kernel holds after loading it: the due element is not there.
        #expect(r.managed.elements["block_v4"]?.count == 2)
        #expect(r.replacing == nil)
    }

    @Test func renamedTable_isDeletedInTheSameTransaction() {
        var config = Self.config
        config.rules = []
        config.sets = []
        let r = TableRenderer.render(config: config, desired: Desired.compute(config: config, observed: ObservedState()), now: 0, replacing: "old")
        let lines = r.text.split(separator: "\n")
        #expect(Array(lines[5...10]) == [
            "table inet old {}", "delete table inet old", "table inet rnm {}", "delete table inet rnm", "table inet rnm {",
            "\tset lan_ifaces {",
        ])
        #expect(r.replacing == "old")
    }

    @Test func templateLines_mapBackToTheirFile() {
        let r = TableRenderer.render(config: Self.config, desired: Self.desired(), now: 100 * Self.second)
        let lines = r.text.split(separator: "\n", omittingEmptySubsequences: false)
        let first = lines.firstIndex(of: "chain input {")! + 1
        let origin = r.origin(ofLine: first + 2)
        #expect(origin?.source == .template(path: "/etc/rnm/rules.d/base.nft"))
        #expect(origin?.line == 3)
        #expect(r.origin(ofLine: 3)?.source == .generated("defines"))
        let nft = """
            /proc/self/fd/7:\(first + 2):10-21: Error: syntax error, unexpected junk
            \tiifname $lan_ifaces accept
            \t        ^^^^^^^^^^^
            /proc/self/fd/7:14:4-9: Error: something about a set
            """
        #expect(r.mapDiagnostics(nft, loadedAs: "/proc/self/fd/7") == """
            /etc/rnm/rules.d/base.nft:3:10-21: Error: syntax error, unexpected junk
            \tiifname $lan_ifaces accept
            \t        ^^^^^^^^^^^
            (rnm-generated set block_v4, rendered line 14):4-9: Error: something about a set
            """)
    }

    @Test func structure_ignoresElements_butNotTemplatesOrShapes() {
        let a = TableRenderer.render(config: Self.config, desired: Self.desired(), now: 0)
        let b = TableRenderer.render(
            config: Self.config, desired: Desired.compute(config: Self.config, observed: ObservedState()), now: 0)
        #expect(a.text != b.text)
        #expect(a.structure == b.structure)
        var changed = Self.config
        changed.rules[0].text += "chain forward {\n}\n"
        #expect(TableRenderer.render(config: changed, desired: Self.desired(), now: 0).structure != a.structure)
        var reshaped = Self.config
        reshaped.sets[0].defaultTimeoutMs = 60_000
        let reshapedDesired = Desired.compute(config: reshaped, observed: ObservedState())
        #expect(TableRenderer.render(config: reshaped, desired: reshapedDesired, now: 0).structure != a.structure)
    }

    @Test func templateWithoutTrailingNewline_stillClosesTheTable() {
        var config = Self.config
        config.rules[0].text = "chain c {\n}"
        let r = TableRenderer.render(config: config, desired: Self.desired(), now: 0)
        #expect(r.text.hasSuffix("chain c {\n}\n}\n"))
    }
}

/// The chains rendered from `masquerade:` and `forwards:` (NATRender), ahead of the templates.
@Suite struct NATRenderTests {
    static let config = Config(
        table: "rnm",
        interfaces: [
            InterfaceConfig(name: "eth0", zone: "wan", dhcp: true),
            InterfaceConfig(name: "eth1", zone: "lan", addresses: [IPPrefix("192.168.1.1/24")!, IPPrefix("fd00:1::1/64")!]),
            InterfaceConfig(name: "wg0", zone: "vpn", addresses: [IPPrefix("10.8.0.1/24")!]),
        ],
        rules: [RuleTemplate(
            given: "fw.nft", path: "/etc/rnm/fw.nft",
            text: "chain forward {\n\ttype filter hook forward priority filter; policy drop;\n\tjump rnm_forward\n}\n")])

    static func render(masquerade: [MasqueradeConfig] = [], forwards: [ForwardConfig] = []) -> RenderedTable {
        var c = config
        c.masquerade = masquerade
        c.forwards = forwards
        return TableRenderer.render(config: c, desired: Desired.compute(config: c, observed: ObservedState()), now: 0)
    }

    /// The rendered lines from the first generated chain up to the templates.
    static func chains(_ r: RenderedTable) -> String {
        let lines = r.text.split(separator: "\n", omittingEmptySubsequences: false)
        let first = lines.firstIndex { $0.hasPrefix("\tchain rnm_") }!
        let end = lines[first...].firstIndex(of: "")!
        return lines[first..<end].joined(separator: "\n") + "\n"
    }

    static let a10 = IPAddress("192.168.1.10")!
    static let lanToWan = MasqueradeConfig(from: "lan", to: "wan")

    @Test func noNATConfig_onlyAnEmptyForwardChain() {
        let r = Self.render()
        #expect(Self.chains(r) == """
            \tchain rnm_forward {
            \t}

            """)
        #expect(!r.text.contains("type nat"))
        #expect(r.structure.contains("\tchain rnm_forward {\n\t}\n"))
    }

    @Test func masqueradeOnly_isIPv4AndNeedsNoPrerouting() {
        let r = Self.render(masquerade: [Self.lanToWan, MasqueradeConfig(from: "vpn", to: "wan")])
        #expect(Self.chains(r) == """
            \tchain rnm_postrouting {
            \t\ttype nat hook postrouting priority srcnat; policy accept;
            \t\tmeta nfproto ipv4 iifname @lan_ifaces oifname @wan_ifaces masquerade
            \t\tmeta nfproto ipv4 iifname @vpn_ifaces oifname @wan_ifaces masquerade
            \t}
            \tchain rnm_forward {
            \t}

            """)
    }

    @Test func forwardsV4_singlePortAndShiftedRange() {
        let r = Self.render(forwards: [
            ForwardConfig(zone: "wan", proto: .tcp, port: 8080...8080, to: Self.a10, toPort: 80...80),
            // A port range in a DNAT target is a pool (every connection would get 9000): a map shifts one to one.
            ForwardConfig(zone: "wan", proto: .tcp, port: 8000...8003, to: Self.a10, toPort: 9000...9003),
            // The same ports: the target is the address alone.
            ForwardConfig(zone: "wan", proto: .tcp, port: 5000...5002, to: Self.a10, toPort: 5000...5002),
            ForwardConfig(zone: "wan", proto: .tcp, port: 22...22, to: IPAddress("192.168.1.11")!),
        ])
        #expect(Self.chains(r) == """
            \tchain rnm_prerouting {
            \t\ttype nat hook prerouting priority dstnat; policy accept;
            \t\tiifname @wan_ifaces ip daddr @wan_v4 tcp dport 8080 dnat ip to 192.168.1.10:80
            \t\tiifname @wan_ifaces ip daddr @wan_v4 tcp dport 8000-8003 dnat ip to 192.168.1.10:tcp dport map { 8000 : 9000, 8001 : 9001, 8002 : 9002, 8003 : 9003 }
            \t\tiifname @wan_ifaces ip daddr @wan_v4 tcp dport 5000-5002 dnat ip to 192.168.1.10
            \t\tiifname @wan_ifaces ip daddr @wan_v4 tcp dport 22 dnat ip to 192.168.1.11
            \t}
            \tchain rnm_forward {
            \t\tct status dnat ip daddr 192.168.1.10 tcp dport 80 accept
            \t\tct status dnat ip daddr 192.168.1.10 tcp dport 9000-9003 accept
            \t\tct status dnat ip daddr 192.168.1.10 tcp dport 5000-5002 accept
            \t\tct status dnat ip daddr 192.168.1.11 tcp dport 22 accept
            \t}

            """)
    }

    @Test func udpForwards_andAcceptsAreNotRepeated() {
        let r = Self.render(forwards: [
            ForwardConfig(zone: "wan", proto: .udp, port: 51820...51820, to: IPAddress("10.8.0.5")!),
            ForwardConfig(zone: "lan", proto: .udp, port: 1194...1194, to: IPAddress("10.8.0.5")!, toPort: 51820...51820),
            ForwardConfig(zone: "wan", proto: .udp, port: 6000...6001, to: Self.a10, toPort: 7000...7001),
        ])
        #expect(Self.chains(r) == """
            \tchain rnm_prerouting {
            \t\ttype nat hook prerouting priority dstnat; policy accept;
            \t\tiifname @wan_ifaces ip daddr @wan_v4 udp dport 51820 dnat ip to 10.8.0.5
            \t\tiifname @lan_ifaces ip daddr @lan_v4 udp dport 1194 dnat ip to 10.8.0.5:51820
            \t\tiifname @wan_ifaces ip daddr @wan_v4 udp dport 6000-6001 dnat ip to 192.168.1.10:udp dport map { 6000 : 7000, 6001 : 7001 }
            \t}
            \tchain rnm_forward {
            \t\tct status dnat ip daddr 10.8.0.5 udp dport 51820 accept
            \t\tct status dnat ip daddr 192.168.1.10 udp dport 7000-7001 accept
            \t}

            """)
    }

    @Test func ipv6Forwards_matchTheZonesIPv6Set() {
        let to = IPAddress("fd00:1::10")!
        let r = Self.render(forwards: [
            ForwardConfig(zone: "wan", proto: .tcp, port: 443...443, to: to, toPort: 8443...8443),
            ForwardConfig(zone: "wan", proto: .tcp, port: 80...80, to: to),
            ForwardConfig(zone: "wan", proto: .udp, port: 6000...6001, to: to, toPort: 7000...7001),
        ])
        #expect(Self.chains(r) == """
            \tchain rnm_prerouting {
            \t\ttype nat hook prerouting priority dstnat; policy accept;
            \t\tiifname @wan_ifaces ip6 daddr @wan_v6 tcp dport 443 dnat ip6 to [fd00:1::10]:8443
            \t\tiifname @wan_ifaces ip6 daddr @wan_v6 tcp dport 80 dnat ip6 to fd00:1::10
            \t\tiifname @wan_ifaces ip6 daddr @wan_v6 udp dport 6000-6001 dnat ip6 to [fd00:1::10]:udp dport map { 6000 : 7000, 6001 : 7001 }
            \t}
            \tchain rnm_forward {
            \t\tct status dnat ip6 daddr fd00:1::10 tcp dport 8443 accept
            \t\tct status dnat ip6 daddr fd00:1::10 tcp dport 80 accept
            \t\tct status dnat ip6 daddr fd00:1::10 udp dport 7000-7001 accept
            \t}

            """)
    }

    @Test func hairpin_perOtherZone_withTheReflectedConnectionsMasqueraded() {
        let r = Self.render(
            masquerade: [Self.lanToWan],
            forwards: [
                ForwardConfig(zone: "wan", proto: .tcp, port: 8080...8080, to: Self.a10, toPort: 80...80, hairpin: true),
                ForwardConfig(zone: "wan", proto: .tcp, port: 443...443, to: IPAddress("fd00:1::10")!, hairpin: true),
                ForwardConfig(zone: "wan", proto: .udp, port: 53...53, to: Self.a10),
            ])
        #expect(Self.chains(r) == """
            \tchain rnm_prerouting {
            \t\ttype nat hook prerouting priority dstnat; policy accept;
            \t\tiifname @wan_ifaces ip daddr @wan_v4 tcp dport 8080 dnat ip to 192.168.1.10:80
            \t\tiifname @lan_ifaces ip daddr @wan_v4 tcp dport 8080 dnat ip to 192.168.1.10:80
            \t\tiifname @vpn_ifaces ip daddr @wan_v4 tcp dport 8080 dnat ip to 192.168.1.10:80
            \t\tiifname @wan_ifaces ip6 daddr @wan_v6 tcp dport 443 dnat ip6 to fd00:1::10
            \t\tiifname @lan_ifaces ip6 daddr @wan_v6 tcp dport 443 dnat ip6 to fd00:1::10
            \t\tiifname @vpn_ifaces ip6 daddr @wan_v6 tcp dport 443 dnat ip6 to fd00:1::10
            \t\tiifname @wan_ifaces ip daddr @wan_v4 udp dport 53 dnat ip to 192.168.1.10
            \t}
            \tchain rnm_postrouting {
            \t\ttype nat hook postrouting priority srcnat; policy accept;
            \t\tmeta nfproto ipv4 iifname @lan_ifaces oifname @wan_ifaces masquerade
            \t\tiifname @lan_ifaces ct status dnat ct original ip daddr @wan_v4 ip daddr 192.168.1.10 tcp dport 80 masquerade
            \t\tiifname @vpn_ifaces ct status dnat ct original ip daddr @wan_v4 ip daddr 192.168.1.10 tcp dport 80 masquerade
            \t\tiifname @lan_ifaces ct status dnat ct original ip6 daddr @wan_v6 ip6 daddr fd00:1::10 tcp dport 443 masquerade
            \t\tiifname @vpn_ifaces ct status dnat ct original ip6 daddr @wan_v6 ip6 daddr fd00:1::10 tcp dport 443 masquerade
            \t}
            \tchain rnm_forward {
            \t\tct status dnat ip daddr 192.168.1.10 tcp dport 80 accept
            \t\tct status dnat ip6 daddr fd00:1::10 tcp dport 443 accept
            \t\tct status dnat ip daddr 192.168.1.10 udp dport 53 accept
            \t}

            """)
    }

    @Test func generatedChains_comeBeforeTheTemplates_andMapToWhatGeneratedThem() {
        let r = Self.render(masquerade: [Self.lanToWan], forwards: [ForwardConfig(zone: "wan", proto: .tcp, port: 80...80, to: Self.a10)])
        let lines = r.text.split(separator: "\n", omittingEmptySubsequences: false)
        let pre = lines.firstIndex(of: "\tchain rnm_prerouting {")! + 1
        let post = lines.firstIndex(of: "\tchain rnm_postrouting {")! + 1
        let fwd = lines.firstIndex(of: "\tchain rnm_forward {")! + 1
        let template = lines.firstIndex(of: "chain forward {")! + 1
        #expect(pre < post && post < fwd && fwd < template)
        #expect(r.origin(ofLine: pre + 2)?.source == .generated("chain rnm_prerouting"))
        #expect(r.origin(ofLine: post + 2)?.source == .generated("chain rnm_postrouting"))
        #expect(r.origin(ofLine: fwd + 1)?.source == .generated("chain rnm_forward"))
        #expect(r.origin(ofLine: template + 2)?.source == .template(path: "/etc/rnm/fw.nft"))
        #expect(r.origin(ofLine: template + 2)?.line == 3)
    }

    @Test func structure_coversTheGeneratedChains_butNotTheZoneAddresses() {
        let forward = ForwardConfig(zone: "wan", proto: .tcp, port: 8080...8080, to: Self.a10, toPort: 80...80)
        let base = Self.render(masquerade: [Self.lanToWan], forwards: [forward])
        #expect(base.structure.contains("\tchain rnm_prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"))
        #expect(base.structure.contains("\t\tmeta nfproto ipv4 iifname @lan_ifaces oifname @wan_ifaces masquerade\n"))
        #expect(base.structure.contains("\t\tct status dnat ip daddr 192.168.1.10 tcp dport 80 accept\n"))
        // Any change to masquerade or forwards changes the structure (a whole-table load) ...
        var moved = forward
        moved.toPort = 81...81
        var hairpin = forward
        hairpin.hairpin = true
        let others = [
            Self.render(forwards: [forward]), Self.render(masquerade: [Self.lanToWan]),
            Self.render(masquerade: [Self.lanToWan], forwards: [moved]),
            Self.render(masquerade: [Self.lanToWan], forwards: [hairpin]),
        ]
        for other in others { #expect(other.structure != base.structure) }
        // ... while a new wan address (DHCP) is only an element of wan_v4.
        var c = Self.config
        c.masquerade = [Self.lanToWan]
        c.forwards = [forward]
        var observed = ObservedState()
        _ = observed.upsert(Link(index: 2, name: "eth0"))
        _ = observed.upsert(Address(key: AddressKey(ifindex: 2, address: IPAddress("198.51.100.7")!, prefixLength: 24), flags: .permanent))
        let withAddress = TableRenderer.render(config: c, desired: Desired.compute(config: c, observed: observed), now: 0)
        #expect(withAddress.structure == base.structure)
        #expect(withAddress.text != base.text)
    }
}

@Suite struct TableDiffTests {
    @Test func lineDiff_isMinimal() {
        let a: [Substring] = ["a", "b", "c", "d", "e"]
        let b: [Substring] = ["a", "x", "c", "e", "f"]
        let ops = LineDiff.diff(a, b).map { "\($0.0.rawValue)\($0.0 == .add ? b[$0.1] : a[$0.1])" }
        #expect(ops == ["-b", "+x", "-d", "+f"])
        #expect(LineDiff.diff(a, a).isEmpty)
    }

    @Test func structureChanges_nameTheirChainOrSet() {
        let live = "table inet rnm {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 9999 accept\n\t\tct state established accept\n\t}\n}\n"
        let want = "table inet rnm {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established accept\n\t}\n}\n"
        let d = TableDiff.compute(table: "rnm", desiredStructure: want, liveStructure: live, desired: TableState(name: "rnm"), live: nil)
        #expect(d.structure == [TableDiff.Change(.remove, "chain input", "tcp dport 9999 accept")])
        #expect(d.text == "table inet rnm: 0 to add, 1 to remove\n  chain input\n  -   tcp dport 9999 accept\n")
        let inSync = TableDiff.compute(table: "rnm", desiredStructure: want, liveStructure: want, desired: TableState(name: "rnm"), live: nil)
        #expect(inSync.isEmpty)
        #expect(inSync.text == "table inet rnm: in sync\n")
    }

    @Test func elements_areComparedByKey() {
        let spec = SetSpec(name: "s", type: .ipv4Addr)
        let a = SetElement.ipv4(IPv4Address("192.0.2.1")!)
        let b = SetElement.ipv4(IPv4Address("192.0.2.2")!)
        let desired = TableState(name: "rnm", sets: ["s": spec], elements: ["s": [a: .never]])
        let live = TableState(name: "rnm", sets: ["s": spec], elements: ["s": [b: 5]])
        let d = TableDiff.compute(table: "rnm", desiredStructure: "x", liveStructure: "x", desired: desired, live: live)
        #expect(d.elements == [TableDiff.Change(.remove, "set s", "192.0.2.2"), TableDiff.Change(.add, "set s", "192.0.2.1")])
        let gone = TableDiff.compute(table: "rnm", desiredStructure: "x", liveStructure: nil, desired: desired, live: nil)
        #expect(gone.structure == [TableDiff.Change(.add, "table inet rnm", "x")])
        #expect(gone.elements == [TableDiff.Change(.add, "set s", "192.0.2.1")])
    }
}
