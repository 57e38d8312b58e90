import RNMCore
import RNMTesting
import Testing

/// Random manual additions, deletions, plugin contributions (apply, replace, withdraw by two plugins) and the passing of time on declared sets (interval and plain, with
/// timeouts), committed at random moments into a fake kernel that refuses overlapping intervals and expires
/// elements by itself. After every step: the incremental state equals the from-scratch definition, and every
/// address of a small universe is covered exactly as the entries say.
@Suite struct ManualPropertyTests {
    static let config = Config(
        table: "rnm", interfaces: [InterfaceConfig(name: "eth0", zone: "wan")],
        sets: [
            DeclaredSet(name: "iv4", family: .v4, interval: true, timeoutFlag: true, elements: [IPPrefix("10.0.0.64/28")!]),
            DeclaredSet(name: "pv4", family: .v4, timeoutFlag: true),
        ])

    /// The universe: 10.0.0.0/25, so prefixes overlap often.
    static func randomPrefix(_ rng: inout SplitMix64, interval: Bool) -> IPPrefix {
        let host = UInt32.random(in: 0..<128, using: &rng)
        let len: UInt8 = interval ? [25, 26, 27, 28, 29, 30, 31, 32].randomElement(using: &rng)! : 32
        return IPPrefix(address: .v4(IPv4Address(0x0A00_0000 | host)), length: len)
    }

    /// Deadline per address from the entries themselves (config forever, manual until its deadline).
    static func coverage(_ manual: [IPPrefix: Deadline], config: [IPPrefix], now: UInt64) -> [UInt32: Deadline] {
        var out: [UInt32: Deadline] = [:]
        func cover(_ p: IPPrefix, _ d: Deadline) {
            guard case .ipv4Range(let lo, let hi) = SetElement(range: p) else { return }
            for a in lo.value...hi.value where a & 0xFFFF_FF80 == 0x0A00_0000 {
                let old = out[a]
                out[a] = old == nil ? d : (old == .never || d == .never ? .never : max(old!, d))
            }
        }
        for p in config { cover(p, .never) }
        for (p, d) in manual where d == .never || d > now { cover(p, d) }
        return out
    }

    static func coverage(of elements: [SetElement: Deadline], now: UInt64) -> [UInt32: Deadline] {
        var out: [UInt32: Deadline] = [:]
        for (e, d) in elements where d == .never || d > now {
            guard case .ipv4Range(let lo, let hi) = e else { continue }
            for a in lo.value...hi.value where a & 0xFFFF_FF80 == 0x0A00_0000 {
                #expect(out[a] == nil, "overlapping segments at \(IPv4Address(a))")
                out[a] = d
            }
        }
        return out
    }

    @Test(arguments: 0..<48)
    func randomManualOperations_keepKernelStateAndEntriesInAgreement(seed: Int) throws {
        var rng = SplitMix64(state: UInt64(seed) &* 104_729 &+ 7)
        let kernel = RecordingFirewall()
        var state = ReconcileState(config: Self.config)
        var now: UInt64 = 1000 * second
        state.setApplied(try kernel.readBack(table: "rnm", sets: Set(state.setSpecs.keys)))
        state.apply(.snapshot(links: [], addresses: []))
        for step in 0..<200 {
            switch Int.random(in: 0..<14, using: &rng) {
            case 0..<5:
                let set = Bool.random(using: &rng) ? "iv4" : "pv4"
                let n = Int.random(in: 1...3, using: &rng)
                var entries: [IPPrefix] = []
                for _ in 0..<n { entries.append(Self.randomPrefix(&rng, interval: set == "iv4")) }
                let timeout: UInt64? = Bool.random(using: &rng) ? UInt64.random(in: 1...60, using: &rng) * 1000 : nil
                _ = try? state.addManual(set: set, entries, timeoutMs: timeout, now: now)
            case 5..<7:
                let set = Bool.random(using: &rng) ? "iv4" : "pv4"
                if let p = state.manual[set]?.keys.randomElement(using: &rng) {
                    _ = try? state.deleteManual(set: set, [p], now: now)
                }
            case 7..<10:
                let set = Bool.random(using: &rng) ? "iv4" : "pv4"
                let plugin = Bool.random(using: &rng) ? "p1" : "p2"
                var changes: [PluginChange] = []
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let timeout: UInt64 = Bool.random(using: &rng) ? UInt64.random(in: 1...60, using: &rng) * 1000 : 0
                    changes.append(PluginChange(add: Int.random(in: 0..<3, using: &rng) > 0,
                                                prefix: Self.randomPrefix(&rng, interval: set == "iv4"), timeoutMs: timeout))
                }
                state.applyPlugin(plugin, set: set, changes, now: now)
            case 10:
                let set = Bool.random(using: &rng) ? "iv4" : "pv4"
                let entries = (0..<Int.random(in: 0...4, using: &rng)).map { _ in Self.randomPrefix(&rng, interval: set == "iv4") }
                state.replacePlugin(Bool.random(using: &rng) ? "p1" : "p2", set: set, entries,
                                    timeoutMs: Bool.random(using: &rng) ? 30_000 : 0, now: now)
            case 11:
                state.withdrawPlugin(Bool.random(using: &rng) ? "p1" : "p2")
            default:
                now += UInt64.random(in: 0...20, using: &rng) * second
            }
            state.expire(now: now)
            kernel.expire(now: now)
            let from = Desired.compute(config: Self.config, observed: state.observed, manual: state.manual, plugins: state.plugins)
            #expect(state.desired.matches(from), "seed \(seed) step \(step)")
            // Every owner's entries, as timed claims on the universe (the same prefix from two owners: the later deadline).
            var claims = state.manual["iv4"] ?? [:]
            for sets in state.plugins.values {
                for (p, d) in sets["iv4"] ?? [:] { claims[p] = claims[p].map { max($0, d) } ?? d }
            }
            let want = Self.coverage(claims, config: Self.config.sets[0].elements, now: now)
            #expect(Self.coverage(of: state.desired.elements["iv4"] ?? [:], now: now) == want, "seed \(seed) step \(step)")
            if Int.random(in: 0..<3, using: &rng) == 0 {
                let plan = state.plan(now: now)
                try kernel.commit(plan)
                state.committed(plan)
                #expect(kernel.table("rnm")!.matches(state.desired), "seed \(seed) step \(step)")
                #expect(state.plan(now: now).isEmpty)
            }
        }
    }
}
