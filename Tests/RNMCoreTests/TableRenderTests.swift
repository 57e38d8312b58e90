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
