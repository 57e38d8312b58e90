import RNMCore
import RNMTesting
import Testing

/// Deterministic generator so a failure names a seed that reproduces it.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A naive reference for what netlink events mean: plain dictionaries, rebuilt by brute force.
struct ReferenceModel {
    var links: [Int32: Link] = [:]
    var addresses: [AddressKey: Address] = [:]

    mutating func apply(_ e: NetEvent) {
        switch e {
        case .linkChanged(let l): links[l.index] = l
        case .linkRemoved(let i):
            links[i] = nil
            addresses = addresses.filter { $0.key.ifindex != i }
        case .addressChanged(let a): addresses[a.key] = a
        case .addressRemoved(let k): addresses[k] = nil
        case .snapshot(let ls, let as_):
            links = Dictionary(uniqueKeysWithValues: ls.map { ($0.index, $0) })
            addresses = Dictionary(as_.map { ($0.key, $0) }, uniquingKeysWith: { _, b in b })
        case .routeChanged, .routeRemoved, .routes:
            break  // routes do not feed sets
        }
    }

    func desired(_ config: Config) -> TableState {
        var out = TableState(name: config.table, sets: Desired.sets(for: config))
        for n in out.sets.keys { out.elements[n] = [:] }
        for i in config.interfaces { out.elements[i.zone + "_ifaces"]![.ifname(i.name)] = .never }
        let zones = config.zoneByInterface
        for a in addresses.values {
            guard let l = links[a.key.ifindex], let z = zones[l.name] else { continue }
            let p = config.addressPolicy
            if a.flags.contains(.tentative) || a.flags.contains(.dadFailed) { continue }
            if a.key.address.isLinkLocal && !p.linkLocal { continue }
            if a.flags.contains(.deprecated) && !p.deprecated { continue }
            if a.key.address.family == .v6 && a.flags.contains(.secondaryOrTemporary) && !p.temporary { continue }
            switch a.key.address {
            case .v4(let x): out.elements[z + "_v4"]![.ipv4(x)] = .never
            case .v6(let x): out.elements[z + "_v6"]![.ipv6(x)] = .never
            }
        }
        return out
    }
}

@Suite struct PropertyTests {
    static let names = ["eth0", "eth1", "eth2", "x0", "x1"]
    static let pool: [IPAddress] = [
        "192.0.2.1", "192.0.2.2", "198.51.100.1", "169.254.1.1", "2001:db8::1", "2001:db8::2", "fe80::1", "fe80::2",
    ].map { IPAddress($0)! }
    static let flagChoices: [AddressFlags] = [.permanent, [], .tentative, [.tentative, .dadFailed], .deprecated, .secondaryOrTemporary, [.deprecated, .secondaryOrTemporary]]

    static func randomEvent(_ rng: inout SplitMix64, _ model: ReferenceModel) -> NetEvent {
        let index = Int32.random(in: 1...6, using: &rng)
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<15:
            return .linkChanged(Link(index: index, name: names.randomElement(using: &rng)!, isUp: Bool.random(using: &rng)))
        case 15..<20:
            return .linkRemoved(index: index)
        case 20..<70:
            let ip = pool.randomElement(using: &rng)!
            let len: UInt8 = Bool.random(using: &rng) ? (ip.family == .v4 ? 24 : 64) : ip.family.maxPrefixLength
            let key = AddressKey(ifindex: index, address: ip, prefixLength: len)
            return .addressChanged(Address(key: key, flags: flagChoices.randomElement(using: &rng)!, scope: ip.isLinkLocal ? 253 : 0))
        case 70..<95:
            if let k = model.addresses.keys.randomElement(using: &rng), Bool.random(using: &rng) { return .addressRemoved(k) }
            return .addressRemoved(AddressKey(ifindex: index, address: pool.randomElement(using: &rng)!, prefixLength: 24))
        default:
            // A dump: the current truth, possibly with a random change folded in (as after an overrun).
            var m = model
            if Bool.random(using: &rng) { m.apply(randomEvent(&rng, model)) }
            return .snapshot(links: Array(m.links.values), addresses: Array(m.addresses.values))
        }
    }

    @Test(arguments: 0..<64)
    func randomEventSequences_incrementalEqualsFromScratch_andKernelConverges(seed: Int) throws {
        var rng = SplitMix64(state: UInt64(seed) &* 7919)
        var config = F.config
        config.interfaces.append(InterfaceConfig(name: "x0", zone: "dmz"))
        config.addressPolicy = AddressPolicy(
            linkLocal: Bool.random(using: &rng), deprecated: Bool.random(using: &rng), temporary: Bool.random(using: &rng))
        let kernel = RecordingFirewall()
        var state = ReconcileState(config: config)
        state.setApplied(try kernel.readBack(table: config.table, sets: Set(state.setSpecs.keys)))
        var model = ReferenceModel()
        for step in 0..<300 {
            let e = Self.randomEvent(&rng, model)
            model.apply(e)
            state.apply(e)
            let truth = model.desired(config)
            #expect(state.desired == truth, "seed \(seed) step \(step) after \(e)")
            #expect(state.desired == Desired.compute(config: config, observed: state.observed), "seed \(seed) step \(step)")
            // Commit at random moments, so plans cover batches of events of every size.
            if Int.random(in: 0..<4, using: &rng) == 0 {
                let plan = state.plan()
                try kernel.commit(plan)
                state.committed(plan)
                #expect(kernel.table(config.table) == truth, "seed \(seed) step \(step)")
                // Replaying the truth as a dump must plan nothing.
                state.apply(.snapshot(links: Array(model.links.values), addresses: Array(model.addresses.values)))
                #expect(state.plan().isEmpty, "seed \(seed) step \(step): replay planned \(state.plan())")
                state.committed(state.plan())
            }
        }
        let plan = state.plan()
        try kernel.commit(plan)
        state.committed(plan)
        #expect(kernel.table(config.table) == model.desired(config))
    }

    @Test(arguments: 0..<32)
    func diff_appliedToAnyState_reachesDesired(seed: Int) {
        var rng = SplitMix64(state: UInt64(seed) &+ 99)
        func randomTable() -> TableState {
            var t = TableState(name: "rnm")
            for name in ["a_v4", "b_v4", "c_v6", "d_if"] where Bool.random(using: &rng) {
                let type: SetKeyType = name.hasSuffix("v4") ? (Bool.random(using: &rng) ? .ipv4Addr : .ipv6Addr) : name.hasSuffix("v6") ? .ipv6Addr : .ifname
                let timed = type != .ifname && Bool.random(using: &rng)
                t.sets[name] = SetSpec(name: name, type: type, flags: timed ? [.timeout] : [])
                var els: [SetElement: Deadline] = [:]
                for _ in 0..<Int.random(in: 0..<6, using: &rng) {
                    // Deadlines in the future (the diff is made at now = 0), some of them timed.
                    let d: Deadline = timed && Bool.random(using: &rng) ? UInt64.random(in: 1...3, using: &rng) * 10 * second : .never
                    switch type {
                    case .ipv4Addr: els[.ipv4(IPv4Address(UInt32.random(in: 0..<8, using: &rng)))] = d
                    case .ipv6Addr: els[.ipv6(IPv6Address(high: 0, low: UInt64.random(in: 0..<8, using: &rng)))] = d
                    default: els[.ifname("if\(Int.random(in: 0..<8, using: &rng))")] = .never
                    }
                }
                t.elements[name] = els
            }
            return t
        }
        let applied = randomTable()
        let desired = randomTable()
        let kernel = RecordingFirewall(tables: [applied])
        let plan = diff(applied: applied, desired: desired, now: 0)
        #expect(throws: Never.self) { try kernel.commit(plan) }
        #expect(kernel.table("rnm")!.matches(desired))
        #expect(plan.applying(to: applied).matches(desired))
        #expect(diff(applied: desired, desired: desired, now: 0).isEmpty)
    }
}
