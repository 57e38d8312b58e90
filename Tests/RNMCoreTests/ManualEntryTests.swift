import RNMCore
import RNMTesting
import Testing

let second: UInt64 = 1_000_000_000

@Suite struct ManualEntryTests {
    static let config = Config(
        table: "rnm",
        interfaces: [InterfaceConfig(name: "eth0", zone: "wan")],
        sets: [
            DeclaredSet(name: "bl_v4", family: .v4, interval: true, timeoutFlag: true, elements: [IPPrefix("203.0.113.0/24")!]),
            DeclaredSet(name: "allow_v6", family: .v6),
            DeclaredSet(name: "ban_v4", family: .v4, timeoutFlag: true, defaultTimeoutMs: 600_000),
        ])

    static func p(_ s: String) -> IPPrefix { IPPrefix(s)! }
    static func r4(_ lo: String, _ hi: String) -> SetElement { .ipv4Range(IPv4Address(lo)!, IPv4Address(hi)!) }

    func converged(now: UInt64 = 100 * second) -> (ReconcileState, RecordingFirewall) {
        var s = ReconcileState(config: Self.config)
        let fw = RecordingFirewall()
        s.setApplied(nil)
        s.apply(.snapshot(links: [], addresses: []))
        let plan = s.plan(now: now)
        try! fw.commit(plan)
        s.committed(plan)
        return (s, fw)
    }

    @Test func declaredSets_areCreatedWithTheirShape_andConfigElements() {
        let (_, fw) = converged()
        let t = fw.table("rnm")!
        #expect(t.sets["bl_v4"] == SetSpec(name: "bl_v4", type: .ipv4Addr, flags: [.interval, .timeout]))
        #expect(t.sets["ban_v4"] == SetSpec(name: "ban_v4", type: .ipv4Addr, flags: [.timeout], timeoutMs: 600_000))
        #expect(t.keys["bl_v4"] == [Self.r4("203.0.113.0", "203.0.113.255")])
    }

    @Test func addWithTimeout_plansAnElementWithItsTimeout_andDeleteRemovesIt() throws {
        var (s, fw) = converged()
        let now = 200 * second
        try s.addManual(set: "allow_v6", [Self.p("2001:db8::5")], timeoutMs: nil, now: now)
        try s.addManual(set: "ban_v4", [Self.p("192.0.2.9")], timeoutMs: nil, now: now)  // the set's default: 10m
        try s.addManual(set: "bl_v4", [Self.p("198.51.100.0/24")], timeoutMs: 60_000, now: now)
        let plan = s.plan(now: now)
        #expect(plan.add["allow_v6"] == [PlannedElement(.ipv6(IPv6Address("2001:db8::5")!))])
        #expect(plan.add["ban_v4"] == [PlannedElement(.ipv4(IPv4Address("192.0.2.9")!), timeoutMs: 600_000)])
        #expect(plan.add["bl_v4"] == [PlannedElement(Self.r4("198.51.100.0", "198.51.100.255"), timeoutMs: 60_000)])
        try fw.commit(plan)
        s.committed(plan)
        try s.deleteManual(set: "allow_v6", [Self.p("2001:db8::5")], now: now)
        #expect(s.plan(now: now).remove == ["allow_v6": [.ipv6(IPv6Address("2001:db8::5")!)]])
    }

    @Test func refusals_changeNothing() {
        var (s, _) = converged()
        let now = 200 * second
        let cases: [(() throws(ManualEntryError) -> Void, String)] = [
            ({ () throws(ManualEntryError) in try s.addManual(set: "nope", [Self.p("1.2.3.4")], timeoutMs: nil, now: now) }, "unknown_set"),
            ({ () throws(ManualEntryError) in try s.addManual(set: "allow_v6", [Self.p("1.2.3.4")], timeoutMs: nil, now: now) }, "invalid_argument"),
            ({ () throws(ManualEntryError) in try s.addManual(set: "allow_v6", [Self.p("2001:db8::/64")], timeoutMs: nil, now: now) }, "invalid_argument"),
            ({ () throws(ManualEntryError) in try s.addManual(set: "allow_v6", [Self.p("2001:db8::1")], timeoutMs: 1000, now: now) }, "invalid_argument"),
            ({ () throws(ManualEntryError) in try s.addManual(set: "bl_v4", [Self.p("10.0.0.1"), Self.p("10.0.0.1/32")], timeoutMs: nil, now: now) }, "invalid_argument"),
            ({ () throws(ManualEntryError) in try s.deleteManual(set: "bl_v4", [Self.p("203.0.113.0/24")], now: now) }, "not_found"),
        ]
        for (run, code) in cases {
            do {
                try run()
                Issue.record("accepted a \(code) case")
            } catch {
                #expect(error.code == code, "\(error)")
            }
        }
        #expect(s.manual.isEmpty)
        #expect(s.plan(now: now).isEmpty)
    }

    @Test func overlappingRanges_fromTwoOwners_becomeDisjointSegmentsWithTheirDeadlines() throws {
        var (s, fw) = converged()
        let now = 200 * second
        // config holds 203.0.113.0/24 forever; manual adds /16 around it for 60 s, and a host inside for 1 h.
        try s.addManual(set: "bl_v4", [Self.p("203.0.0.0/16")], timeoutMs: 60_000, now: now)
        try s.addManual(set: "bl_v4", [Self.p("203.0.200.1")], timeoutMs: 3_600_000, now: now)
        let d = s.desired.elements["bl_v4"]!
        #expect(d == [
            Self.r4("203.0.0.0", "203.0.112.255"): now + 60 * second,
            Self.r4("203.0.113.0", "203.0.113.255"): .never,
            Self.r4("203.0.114.0", "203.0.200.0"): now + 60 * second,
            Self.r4("203.0.200.1", "203.0.200.1"): now + 3600 * second,
            Self.r4("203.0.200.2", "203.0.255.255"): now + 60 * second,
        ])
        let plan = s.plan(now: now)
        try fw.commit(plan)  // the fake kernel refuses overlaps, like nftables
        s.committed(plan)
        // 61 s later the /16 has expired in the kernel by itself: no transaction, and the state agrees.
        let later = now + 61 * second
        #expect(s.expire(now: later).map(\.entry) == [Self.p("203.0.0.0/16")])
        #expect(s.plan(now: later).isEmpty)
        #expect(s.desired.keys["bl_v4"] == [Self.r4("203.0.113.0", "203.0.113.255"), Self.r4("203.0.200.1", "203.0.200.1")])
    }

    @Test func readdingWithANewTimeout_refreshesTheElementInOneTransaction() throws {
        var (s, fw) = converged()
        let now = 200 * second
        try s.addManual(set: "ban_v4", [Self.p("192.0.2.9")], timeoutMs: 60_000, now: now)
        var plan = s.plan(now: now)
        try fw.commit(plan)
        s.committed(plan)
        try s.addManual(set: "ban_v4", [Self.p("192.0.2.9")], timeoutMs: 3_600_000, now: now + second)
        plan = s.plan(now: now + second)
        #expect(plan.remove["ban_v4"] == [.ipv4(IPv4Address("192.0.2.9")!)])
        #expect(plan.add["ban_v4"] == [PlannedElement(.ipv4(IPv4Address("192.0.2.9")!), timeoutMs: 3_600_000)])
        try fw.commit(plan)
        s.committed(plan)
        // The same timeout again within the 2 s tolerance: nothing to do.
        try s.addManual(set: "ban_v4", [Self.p("192.0.2.9")], timeoutMs: 3_600_000, now: now + 2 * second)
        #expect(s.plan(now: now + 2 * second).isEmpty)
    }

    @Test func reload_keepsEntriesTheNewSetsCanHold_andDropsTheRest() throws {
        var (s, _) = converged()
        let now = 200 * second
        try s.addManual(set: "bl_v4", [Self.p("10.0.0.0/8"), Self.p("10.1.1.1")], timeoutMs: nil, now: now)
        try s.addManual(set: "allow_v6", [Self.p("2001:db8::5")], timeoutMs: nil, now: now)
        var config = Self.config
        config.sets[0].interval = false  // bl_v4 can no longer hold a /8
        config.sets.remove(at: 1)  // allow_v6 is gone
        let dropped = s.replaceConfig(config, now: now)
        #expect(Set(dropped.map(\.entry)) == [Self.p("10.0.0.0/8"), Self.p("2001:db8::5")])
        #expect(s.manual == ["bl_v4": [Self.p("10.1.1.1"): .never]])
    }

    @Test func contributions_showOwners() throws {
        var (s, _) = converged()
        try s.addManual(set: "bl_v4", [Self.p("203.0.113.0/24")], timeoutMs: 60_000, now: 200 * second)
        let c = s.contributions(of: "bl_v4")
        #expect(c.count == 1)
        #expect(c[0].owners == [.config, .manual])
        #expect(c[0].deadline == .never)  // config keeps it forever
    }
}

@Suite struct IntervalReadBackTests {
    @Test func prefixesAndRanges_print() {
        #expect(SetElement(range: IPPrefix("10.1.2.3/8")!).description == "10.0.0.0/8")
        #expect(SetElement.ipv4Range(IPv4Address("10.0.0.5")!, IPv4Address("10.0.0.9")!).description == "10.0.0.5-10.0.0.9")
        #expect(SetElement(range: IPPrefix("0.0.0.0/0")!).description == "0.0.0.0/0")
        #expect(SetElement(range: IPPrefix("2001:db8::1/32")!).description == "2001:db8::/32")
        #expect(SetElement(range: IPPrefix("2001:db8::1")!).description == "2001:db8::1")
    }
}
