import RNMCore
import Testing

@Suite struct ReconcileTests {
    @Test func firstPlan_createsTableSetsAndInterfaceNames() {
        var s = ReconcileState(config: F.config)
        s.setApplied(nil)
        s.apply(.snapshot(links: [F.link(2, "eth0")], addresses: [F.addr(2, "198.51.100.7/24")]))
        let plan = s.plan()
        #expect(plan.createTable)
        #expect(plan.createSets.map(\.name) == ["lan_ifaces", "lan_v4", "lan_v6", "wan_ifaces", "wan_v4", "wan_v6"])
        #expect(plan.adds["lan_ifaces"] == [.ifname("eth1"), .ifname("eth2")])
        #expect(plan.adds["wan_ifaces"] == [.ifname("eth0")])
        #expect(plan.adds["wan_v4"] == [F.v4("198.51.100.7")])
        #expect(plan.remove.isEmpty)
    }

    @Test func readBack_withStaleAndMissing_convergesInOnePlan() {
        var applied = Desired.compute(config: F.config, observed: ObservedState())
        applied.elements["wan_v4"] = [F.v4("203.0.113.9"): .never]  // left over from a previous run
        var s = ReconcileState(config: F.config)
        s.setApplied(applied)
        s.apply(.snapshot(links: [F.link(2, "eth0")], addresses: [F.addr(2, "198.51.100.7/24")]))
        let plan = s.plan()
        #expect(!plan.createTable)
        #expect(plan.createSets.isEmpty && plan.deleteSets.isEmpty)
        #expect(plan.remove == ["wan_v4": [F.v4("203.0.113.9")]])
        #expect(plan.adds == ["wan_v4": [F.v4("198.51.100.7")]])
    }

    @Test func readBack_withWrongSetTypeAndForeignSet_replacesAndDeletes() {
        var applied = Desired.compute(config: F.config, observed: ObservedState())
        applied.sets["wan_v4"] = SetSpec(name: "wan_v4", type: .ipv6Addr)
        applied.sets["old_v4"] = SetSpec(name: "old_v4", type: .ipv4Addr)
        applied.elements["old_v4"] = [F.v4("192.0.2.1"): .never]
        var s = ReconcileState(config: F.config)
        s.setApplied(applied)
        s.apply(.snapshot(links: [], addresses: []))
        let plan = s.plan()
        #expect(plan.deleteSets == ["old_v4", "wan_v4"])
        #expect(plan.createSets == [SetSpec(name: "wan_v4", type: .ipv4Addr)])
        #expect(plan.remove.isEmpty)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var events: [NetEvent]
        var add: [String: [SetElement]] = [:]
        var remove: [String: [SetElement]] = [:]
        var policy = AddressPolicy()
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "v4 address added", events: [.addressChanged(F.addr(2, "198.51.100.7/24"))],
             add: ["wan_v4": [F.v4("198.51.100.7")]]),
        Case(name: "v6 address added", events: [.addressChanged(F.addr(3, "2001:db8::1/64"))],
             add: ["lan_v6": [F.v6("2001:db8::1")]]),
        Case(name: "address on an unzoned interface", events: [.linkChanged(F.link(9, "docker0")), .addressChanged(F.addr(9, "172.17.0.1/16"))]),
        Case(name: "address on an unknown ifindex", events: [.addressChanged(F.addr(42, "192.0.2.1/24"))]),
        Case(name: "tentative v6 is not published", events: [.addressChanged(F.addr(3, "2001:db8::2/64", [.tentative]))]),
        Case(name: "tentative then DAD done", events: [
            .addressChanged(F.addr(3, "2001:db8::2/64", [.tentative])), .addressChanged(F.addr(3, "2001:db8::2/64", [.permanent])),
        ], add: ["lan_v6": [F.v6("2001:db8::2")]]),
        Case(name: "DAD failed is never published", events: [
            .addressChanged(F.addr(3, "2001:db8::3/64", [.tentative])), .addressChanged(F.addr(3, "2001:db8::3/64", [.tentative, .dadFailed])),
        ]),
        Case(name: "link-local excluded by default", events: [.addressChanged(F.addr(3, "fe80::1/64", scope: 253))]),
        Case(name: "link-local included by policy", events: [.addressChanged(F.addr(3, "fe80::1/64", scope: 253))],
             add: ["lan_v6": [F.v6("fe80::1")]], policy: AddressPolicy(linkLocal: true)),
        Case(name: "v4 link-local excluded", events: [.addressChanged(F.addr(3, "169.254.9.9/16"))]),
        Case(name: "deprecated kept by default", events: [.addressChanged(F.addr(3, "2001:db8::4/64", [.deprecated]))],
             add: ["lan_v6": [F.v6("2001:db8::4")]]),
        Case(name: "deprecated dropped by policy", events: [.addressChanged(F.addr(3, "2001:db8::4/64", [.deprecated]))],
             policy: AddressPolicy(deprecated: false)),
        Case(name: "temporary dropped by policy", events: [.addressChanged(F.addr(3, "2001:db8::5/64", [.secondaryOrTemporary]))],
             policy: AddressPolicy(temporary: false)),
        Case(name: "v4 secondary is not 'temporary'", events: [.addressChanged(F.addr(3, "192.168.1.2/24", [.secondaryOrTemporary, .permanent]))],
             add: ["lan_v4": [F.v4("192.168.1.2")]], policy: AddressPolicy(temporary: false)),
        Case(name: "renew with the same address", events: [
            .addressChanged(F.addr(2, "198.51.100.7/24")), .addressChanged(F.addr(2, "198.51.100.7/24")),
        ], add: ["wan_v4": [F.v4("198.51.100.7")]]),
        Case(name: "added then removed before commit", events: [
            .addressChanged(F.addr(2, "198.51.100.7/24")), .addressRemoved(F.addr(2, "198.51.100.7/24").key),
        ]),
        Case(name: "same address on two lan interfaces, one removed", events: [
            .linkChanged(F.link(4, "eth2")), .addressChanged(F.addr(3, "10.0.0.1/24")), .addressChanged(F.addr(4, "10.0.0.1/24")),
            .addressRemoved(F.addr(3, "10.0.0.1/24").key),
        ], add: ["lan_v4": [F.v4("10.0.0.1")]]),
        Case(name: "link appears after its address", events: [
            .addressChanged(F.addr(4, "10.0.0.2/24")), .linkChanged(F.link(4, "eth2")),
        ], add: ["lan_v4": [F.v4("10.0.0.2")]]),
        Case(name: "same address as /24 and /32", events: [
            .addressChanged(F.addr(2, "198.51.100.7/24")), .addressChanged(F.addr(2, "198.51.100.7/32")),
            .addressRemoved(F.addr(2, "198.51.100.7/24").key),
        ], add: ["wan_v4": [F.v4("198.51.100.7")]]),
    ]

    @Test(arguments: cases)
    func events_fromConvergedState_planExactly(_ c: Case) {
        var config = F.config
        config.addressPolicy = c.policy
        var s = F.converged(config: config)
        for e in c.events { s.apply(e) }
        let plan = s.plan()
        #expect(plan.adds == c.add)
        #expect(plan.remove == c.remove)
        #expect(!plan.createTable && plan.createSets.isEmpty && plan.deleteSets.isEmpty)
        // And the incremental answer equals the from-scratch one.
        #expect(plan.applying(to: s.applied) == Desired.compute(config: config, observed: s.observed))
    }

    @Test func rename_movesAddressesBetweenZones_inOnePlan() {
        var s = F.converged(addresses: [F.addr(2, "198.51.100.7/24"), F.addr(2, "2001:db8:1::7/64")])
        s.apply(.linkChanged(F.link(2, "eth2")))  // eth0 (wan) is now called eth2 (lan)
        let plan = s.plan()
        #expect(plan.remove == ["wan_v4": [F.v4("198.51.100.7")], "wan_v6": [F.v6("2001:db8:1::7")]])
        #expect(plan.adds == ["lan_v4": [F.v4("198.51.100.7")], "lan_v6": [F.v6("2001:db8:1::7")]])
    }

    @Test func linkFlags_doNotTouchSets() {
        var s = F.converged(addresses: [F.addr(2, "198.51.100.7/24")])
        s.apply(.linkChanged(Link(index: 2, name: "eth0", isUp: false, operState: .down)))
        s.apply(.linkChanged(Link(index: 2, name: "eth0", isUp: true, operState: .up)))
        #expect(s.plan().isEmpty)
    }

    @Test func linkRemoved_withdrawsItsAddresses_andRecreatedLinkIsNew() {
        var s = F.converged(addresses: [F.addr(2, "198.51.100.7/24")])
        s.apply(.linkRemoved(index: 2))
        #expect(s.plan().remove == ["wan_v4": [F.v4("198.51.100.7")]])
        s.committed(s.plan())
        s.apply(.linkChanged(F.link(7, "eth0")))
        s.apply(.addressChanged(F.addr(7, "198.51.100.8/24")))
        #expect(s.plan().adds == ["wan_v4": [F.v4("198.51.100.8")]])
    }

    @Test func replayedSnapshot_yieldsNoOperations() {
        let links = [F.link(2, "eth0"), F.link(3, "eth1")]
        let addresses = [F.addr(2, "198.51.100.7/24"), F.addr(3, "10.0.0.1/24"), F.addr(3, "2001:db8::1/64")]
        var s = F.converged(links: links, addresses: addresses)
        for _ in 0..<3 {
            s.apply(.snapshot(links: links, addresses: addresses))
            #expect(s.plan().isEmpty)
        }
    }

    @Test func reload_renamingTheTable_deletesTheOldOneInTheSamePlan() {
        var s = F.converged(addresses: [F.addr(2, "198.51.100.7/24")])
        var config = F.config
        config.table = "rnm2"
        s.replaceConfig(config, now: 0)
        let plan = s.plan()
        #expect(plan.deleteTable == "rnm")
        #expect(plan.createTable && plan.table == "rnm2")
        #expect(plan.adds["wan_v4"] == [F.v4("198.51.100.7")])
    }

    @Test func reload_removingAZone_deletesItsSets() {
        var s = F.converged(addresses: [F.addr(3, "10.0.0.1/24")])
        var config = F.config
        config.interfaces.removeAll { $0.zone == "lan" }
        s.replaceConfig(config, now: 0)
        let plan = s.plan()
        #expect(plan.deleteSets == ["lan_ifaces", "lan_v4", "lan_v6"])
        #expect(plan.adds.isEmpty && plan.remove.isEmpty)
    }

    @Test func reload_unchangedConfig_isNoOp() {
        var s = F.converged(addresses: [F.addr(3, "10.0.0.1/24")])
        s.replaceConfig(F.config, now: 0)
        #expect(s.plan().isEmpty)
    }
}

@Suite struct AbsentInterfaceTests {
    @Test func absentInterfaces_followTheLinks() {
        var s = F.converged(links: [F.link(2, "eth0")])
        #expect(s.absentInterfaces.map(\.name) == ["eth1", "eth2"])
        s.apply(.linkChanged(F.link(5, "eth2")))
        #expect(s.absentInterfaces.map(\.name) == ["eth1"])
        s.apply(.linkRemoved(index: 2))
        #expect(s.absentInterfaces.map(\.name) == ["eth0", "eth1"])
    }
}

extension Plan {
    /// Added elements without their timeouts (none of these tests use timeouts).
    var adds: [String: [SetElement]] { add.mapValues { $0.map(\.element) } }
}
