/// The pure rules that turn config and observed state into the desired table.
public enum Desired {
    public static func v4SetName(_ zone: String) -> String { zone + "_v4" }
    public static func v6SetName(_ zone: String) -> String { zone + "_v6" }
    public static func ifacesSetName(_ zone: String) -> String { zone + "_ifaces" }

    /// Every managed set the config implies: per zone `<zone>_v4`, `<zone>_v6`, `<zone>_ifaces`, and the
    /// sets declared under `sets:`.
    public static func sets(for config: Config) -> [String: SetSpec] {
        var out: [String: SetSpec] = [:]
        for zone in config.zones {
            out[v4SetName(zone)] = SetSpec(name: v4SetName(zone), type: .ipv4Addr)
            out[v6SetName(zone)] = SetSpec(name: v6SetName(zone), type: .ipv6Addr)
            out[ifacesSetName(zone)] = SetSpec(name: ifacesSetName(zone), type: .ifname)
        }
        for s in config.sets { out[s.name] = s.spec }
        return out
    }

    /// Elements that come from config alone: interface names per zone, declared sets' `elements:`.
    public static func configElements(for config: Config) -> [(set: String, element: SetElement)] {
        config.interfaces.map { (ifacesSetName($0.zone), SetElement.ifname($0.name)) }
            + config.sets.flatMap { s in s.elements.map { (s.name, s.element($0.network)) } }
    }

    /// Whether an address counts as one of its zone's addresses under the policy.
    public static func isMember(_ address: Address, policy: AddressPolicy) -> Bool {
        if address.isTentative || address.isDADFailed { return false }
        if address.isLinkLocal && !policy.linkLocal { return false }
        if address.isDeprecated && !policy.deprecated { return false }
        if address.isTemporary && !policy.temporary { return false }
        return true
    }

    /// The (set, element) an address contributes, if any. `zoneByInterface` is `config.zoneByInterface`.
    public static func contribution(
        of address: Address, link: Link?, zoneByInterface: [String: String], policy: AddressPolicy
    ) -> (set: String, element: SetElement)? {
        guard let link, let zone = zoneByInterface[link.name], isMember(address, policy: policy) else { return nil }
        switch address.key.address {
        case .v4(let a): return (v4SetName(zone), .ipv4(a))
        case .v6(let a): return (v6SetName(zone), .ipv6(a))
        }
    }

    /// From scratch: `desired = f(config, observed, manual entries)`. Permanent owners win over timed ones;
    /// among timed ones the latest deadline wins; interval sets hold disjoint merged ranges.
    public static func compute(
        config: Config, observed: ObservedState, manual: [String: [IPPrefix: Deadline]] = [:],
        plugins: [String: [String: [IPPrefix: Deadline]]] = [:]
    ) -> TableState {
        let specs = sets(for: config)
        var wanted: [String: [SetElement: Deadline]] = [:]
        func want(_ s: String, _ e: SetElement, _ d: Deadline) {
            let old = wanted[s]?[e]
            wanted[s, default: [:]][e] = old.map { $0 == .never || d == .never ? .never : max($0, d) } ?? d
        }
        for (s, e) in configElements(for: config) { want(s, e, .never) }
        let zones = config.zoneByInterface
        for a in observed.addresses.values {
            if let (s, e) = contribution(
                of: a, link: observed.links[a.key.ifindex], zoneByInterface: zones, policy: config.addressPolicy)
            {
                want(s, e, .never)
            }
        }
        for (set, entries) in manual {
            guard let d = config.declaredSet(named: set) else { continue }
            for (p, deadline) in entries { want(set, d.element(p.network), deadline) }
        }
        for (_, sets) in plugins {
            for (set, entries) in sets {
                guard let d = config.declaredSet(named: set) else { continue }
                for (p, deadline) in entries { want(set, d.element(p.network), deadline) }
            }
        }
        var state = TableState(name: config.table, sets: specs)
        for (name, spec) in specs {
            let w = wanted[name] ?? [:]
            state.elements[name] = spec.isInterval ? Segments.compute(w.map { ($0.key, $0.value) }) : w
        }
        return state
    }
}
