/// The reconciler's whole state as one value: config, observed state, desired membership and what the kernel
/// holds. Events update desired membership incrementally, so the hot path costs O(change), not O(set size);
/// `Desired.compute` is the from-scratch definition it must always agree with (checked by property tests).
public struct ReconcileState: Sendable {
    public private(set) var config: Config
    public private(set) var observed: ObservedState
    /// What the kernel holds, as last read back or committed. nil: our table does not exist.
    public private(set) var applied: TableState?

    private var zoneByInterface: [String: String]
    private var specs: [String: SetSpec]
    /// Per set, element → number of contributors (addresses, config entries). Zero entries are removed.
    private var counts: [String: [SetElement: Int]] = [:]
    /// Elements whose membership may have changed since the last commit.
    private var dirty: [String: Set<SetElement>] = [:]
    private var needsFullDiff = true

    public init(config: Config, observed: ObservedState = ObservedState(), applied: TableState? = nil) {
        self.config = config
        self.observed = observed
        self.applied = applied
        zoneByInterface = config.zoneByInterface
        specs = Desired.sets(for: config)
        rebuild()
    }

    // MARK: - Inputs

    public mutating func apply(_ event: NetEvent) {
        switch event {
        case .linkChanged(let link):
            let old = observed.upsert(link)
            guard old?.name != link.name else { return }  // flags or oper state only: membership is unchanged
            for a in observed.addresses(onLink: link.index) {
                retract(a, link: old)
                contribute(a, link: link)
            }
        case .linkRemoved(let index):
            let (link, addresses) = observed.removeLink(index)
            for a in addresses { retract(a, link: link) }
        case .addressChanged(let address):
            let link = observed.links[address.key.ifindex]
            let old = observed.upsert(address)
            if let old {
                if old == address { return }
                retract(old, link: link)
            }
            contribute(address, link: link)
        case .addressRemoved(let key):
            if let old = observed.removeAddress(key) { retract(old, link: observed.links[key.ifindex]) }
        case .snapshot(let links, let addresses):
            observed = ObservedState(links: links, addresses: addresses)
            rebuild()
        }
    }

    /// A new config (reload): everything is recomputed and fully diffed against the kernel.
    public mutating func replaceConfig(_ config: Config) {
        self.config = config
        zoneByInterface = config.zoneByInterface
        specs = Desired.sets(for: config)
        rebuild()
    }

    /// What a read-back of our table found (nil: the table does not exist). The next plan is a full diff.
    public mutating func setApplied(_ state: TableState?) {
        applied = state
        needsFullDiff = true
    }

    // MARK: - Outputs

    /// The desired table, materialised.
    public var desired: TableState {
        var elements: [String: Set<SetElement>] = [:]
        for name in specs.keys { elements[name] = Set((counts[name] ?? [:]).keys) }
        return TableState(name: config.table, sets: specs, elements: elements)
    }

    /// Configured interfaces that no link currently carries the name of, in config order.
    public var absentInterfaces: [InterfaceConfig] {
        let present = Set(observed.links.values.map(\.name))
        return config.interfaces.filter { !present.contains($0.name) }
    }

    /// Number of desired elements in a set (O(1)).
    public func desiredCount(of set: String) -> Int { counts[set]?.count ?? 0 }

    /// The one transaction that makes the kernel equal to the desired state; empty if it already is.
    public func plan() -> Plan {
        guard !needsFullDiff, let applied, applied.name == config.table else {
            return diff(applied: applied, desired: desired)
        }
        var plan = Plan(table: config.table)
        for (set, elements) in dirty {
            let want = counts[set] ?? [:]
            let have = applied.elements[set] ?? []
            var adds: [SetElement] = []
            var removes: [SetElement] = []
            for e in elements {
                let w = want[e] != nil
                let h = have.contains(e)
                if w && !h { adds.append(e) } else if !w && h { removes.append(e) }
            }
            if !adds.isEmpty { plan.add[set] = adds.sorted() }
            if !removes.isEmpty { plan.remove[set] = removes.sorted() }
        }
        return plan
    }

    /// The kernel accepted `plan`: it is now the applied state.
    public mutating func committed(_ plan: Plan) {
        plan.apply(to: &applied)
        dirty.removeAll(keepingCapacity: true)
        needsFullDiff = false
    }

    // MARK: - Membership bookkeeping

    private mutating func rebuild() {
        counts = [:]
        for name in specs.keys { counts[name] = [:] }
        for (s, e) in Desired.configElements(for: config) { counts[s, default: [:]][e, default: 0] += 1 }
        for a in observed.addresses.values { contribute(a, link: observed.links[a.key.ifindex]) }
        dirty = [:]
        needsFullDiff = true
    }

    private mutating func contribute(_ address: Address, link: Link?) {
        guard let (s, e) = Desired.contribution(
            of: address, link: link, zoneByInterface: zoneByInterface, policy: config.addressPolicy)
        else { return }
        counts[s, default: [:]][e, default: 0] += 1
        if !needsFullDiff { dirty[s, default: []].insert(e) }
    }

    private mutating func retract(_ address: Address, link: Link?) {
        guard let (s, e) = Desired.contribution(
            of: address, link: link, zoneByInterface: zoneByInterface, policy: config.addressPolicy)
        else { return }
        if let n = counts[s]?[e] {
            counts[s]![e] = n > 1 ? n - 1 : nil
        }
        if !needsFullDiff { dirty[s, default: []].insert(e) }
    }
}
