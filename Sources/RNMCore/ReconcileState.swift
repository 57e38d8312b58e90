/// The reconciler's whole state as one value: config, observed state, contributions per owner, and what the
/// kernel holds. Events update desired membership incrementally, so the hot path costs O(change), not
/// O(set size); `Desired.compute` is the from-scratch definition it must always agree with (property tests).
///
/// Time is passed in (`now`, monotonic nanoseconds) wherever deadlines matter, so tests control it.
public struct ReconcileState: Sendable {
    public private(set) var config: Config
    public private(set) var observed: ObservedState
    /// What the kernel holds, as last read back or committed. nil: our table does not exist.
    public private(set) var applied: TableState?
    /// Manual entries per declared set: what the user added (as given) and until when.
    public private(set) var manual: [String: [IPPrefix: Deadline]] = [:]
    /// Plugin contributions: plugin → set → entry (network prefix) → deadline.
    public private(set) var plugins: [String: [String: [IPPrefix: Deadline]]] = [:]
    /// No manual entry or plugin contribution expires before this (so `expire` scans only when one is due).
    private var nextExpiry: Deadline = .never
    /// No applied element expires before this.
    private var appliedNextExpiry: Deadline = .never

    private var zoneByInterface: [String: String]
    private var specs: [String: SetSpec]
    /// The zone a zone set belongs to (for owner names).
    private var zoneOfSet: [String: String] = [:]
    /// Per set, element → its contributors. For interval sets the keys are the contributed ranges.
    private var content: [String: [SetElement: Contributors]] = [:]
    /// Elements whose membership may have changed since the last commit (non-interval sets).
    private var dirty: [String: Set<SetElement>] = [:]
    /// Interval sets whose segments must be recomputed and diffed as a whole.
    private var dirtyIntervals: Set<String> = []
    private var needsFullDiff = true

    public init(config: Config, observed: ObservedState = ObservedState(), applied: TableState? = nil) {
        self.config = config
        self.observed = observed
        self.applied = applied
        zoneByInterface = config.zoneByInterface
        specs = Desired.sets(for: config)
        appliedNextExpiry = Self.earliest(applied)
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
            let routes = observed.routes
            observed = ObservedState(links: links, addresses: addresses)
            observed.routes = routes
            rebuild()
        case .routeChanged(let r):
            observed.routes[r.key] = r
        case .routeRemoved(let k):
            observed.routes[k] = nil
        case .routes(let all):
            observed.routes = Dictionary(all.map { ($0.key, $0) }, uniquingKeysWith: { _, b in b })
        }
    }

    /// A new config (reload): everything is recomputed and fully diffed against the kernel. Manual entries
    /// stay for sets that are still declared and can still hold them; the others are returned (dropped).
    @discardableResult
    public mutating func replaceConfig(_ config: Config, now: UInt64) -> [(set: String, entry: IPPrefix)] {
        self.config = config
        zoneByInterface = config.zoneByInterface
        specs = Desired.sets(for: config)
        var dropped: [(String, IPPrefix)] = []
        var kept: [String: [IPPrefix: Deadline]] = [:]
        for (set, entries) in manual {
            for (p, d) in entries {
                guard let s = config.declaredSet(named: set), p.address.family == s.family,
                    s.interval || p.length == s.family.maxPrefixLength
                else {
                    dropped.append((set, p))
                    continue
                }
                // Deadlines follow what the set can hold now.
                var deadline = d
                if !s.timeoutFlag { deadline = .never }
                if s.timeoutFlag, deadline == .never, let def = s.defaultTimeoutMs { deadline = now &+ def * 1_000_000 }
                kept[set, default: [:]][p] = deadline
            }
        }
        manual = kept
        // Plugin contributions stay where the plugin is still enabled, still granted the set, and the set can
        // still hold them (the host restarts a plugin whose grants changed; it contributes anew).
        var keptPlugins: [String: [String: [IPPrefix: Deadline]]] = [:]
        let grants = Dictionary(config.plugins.filter(\.enabled).map { ($0.name, Set($0.sets)) }, uniquingKeysWith: { a, _ in a })
        let retired = Self.retiredName("")
        for (plugin, sets) in plugins {
            let base = plugin.hasSuffix(retired) ? String(plugin.dropLast(retired.count)) : plugin
            for (set, entries) in sets {
                guard grants[base]?.contains(set) == true, let s = config.declaredSet(named: set) else { continue }
                var out: [IPPrefix: Deadline] = [:]
                for (p, d) in entries where p.address.family == s.family && (s.interval || p.length == s.family.maxPrefixLength) {
                    out[p] = s.timeoutFlag ? d : .never
                }
                if !out.isEmpty { keptPlugins[plugin, default: [:]][set] = out }
            }
        }
        plugins = keptPlugins
        rebuild()
        return dropped
    }

    /// What a read-back of our table found (nil: the table does not exist). The next plan is a full diff.
    public mutating func setApplied(_ state: TableState?) {
        applied = state
        appliedNextExpiry = Self.earliest(state)
        needsFullDiff = true
    }

    private static func earliest(_ state: TableState?) -> Deadline {
        var d = Deadline.never
        for els in state?.elements.values ?? [:].values {
            for v in els.values where v < d { d = v }
        }
        return d
    }

    // MARK: - Manual entries

    /// Adds (or refreshes) manual entries, all or nothing. `timeoutMs` nil: the set's default timeout, or
    /// none. Returns the entries as stored.
    @discardableResult
    public mutating func addManual(
        set name: String, _ entries: [IPPrefix], timeoutMs: UInt64?, now: UInt64
    ) throws(ManualEntryError) -> [IPPrefix] {
        guard let set = config.declaredSet(named: name) else { throw .undeclaredSet(name, declared: config.sets.map(\.name)) }
        guard !entries.isEmpty else { throw .noElements }
        if timeoutMs != nil && !set.timeoutFlag { throw .timeoutNotAllowed(name) }
        var seen = Set<IPPrefix>()
        var canonical: [IPPrefix] = []
        for given in entries {
            guard given.address.family == set.family else { throw .wrongFamily(given, set: name, family: set.family) }
            guard set.interval || given.length == set.family.maxPrefixLength else { throw .prefixNeedsInterval(given, set: name) }
            let p = given.network
            guard seen.insert(p).inserted else { throw .duplicate(given) }
            canonical.append(p)
        }
        expire(now: now)
        let deadline: Deadline = (timeoutMs ?? set.defaultTimeoutMs).map { now &+ $0 * 1_000_000 } ?? .never
        nextExpiry = min(nextExpiry, deadline)
        for p in canonical {
            manual[name, default: [:]][p] = deadline
            contributeManual(name, p, deadline, set: set)
        }
        return canonical
    }

    /// Removes manual entries, all or nothing: each must be a current manual entry of the set.
    @discardableResult
    public mutating func deleteManual(set name: String, _ entries: [IPPrefix], now: UInt64) throws(ManualEntryError) -> [IPPrefix] {
        guard config.declaredSet(named: name) != nil else { throw .undeclaredSet(name, declared: config.sets.map(\.name)) }
        guard !entries.isEmpty else { throw .noElements }
        expire(now: now)
        let canonical = entries.map(\.network)
        for (p, given) in zip(canonical, entries) where manual[name]?[p] == nil { throw .notAManualEntry(given, set: name) }
        for p in canonical {
            withdrawManual(name, p)
            manual[name]?[p] = nil
        }
        if manual[name]?.isEmpty == true { manual[name] = nil }
        return canonical
    }

    /// Drops manual entries and plugin contributions whose deadline has passed (the kernel expires their
    /// elements by itself) and forgets applied elements that are past due. Never needs a transaction. Returns
    /// the manual entries that expired. Costs nothing until something is due.
    @discardableResult
    public mutating func expire(now: UInt64) -> [(set: String, entry: IPPrefix)] {
        var gone: [(String, IPPrefix)] = []
        if now >= nextExpiry {
            var next = Deadline.never
            for (set, entries) in manual {
                for (p, d) in entries {
                    if d != .never && d <= now {
                        withdrawManual(set, p)
                        manual[set]?[p] = nil
                        gone.append((set, p))
                    } else if d < next {
                        next = d
                    }
                }
                if manual[set]?.isEmpty == true { manual[set] = nil }
            }
            for (plugin, sets) in plugins {
                for (set, entries) in sets {
                    for (p, d) in entries {
                        if d != .never && d <= now {
                            withdrawPluginEntry(plugin, set, p)
                            plugins[plugin]?[set]?[p] = nil
                        } else if d < next {
                            next = d
                        }
                    }
                    if plugins[plugin]?[set]?.isEmpty == true { plugins[plugin]?[set] = nil }
                }
                if plugins[plugin]?.isEmpty == true { plugins[plugin] = nil }
            }
            nextExpiry = next
        }
        if now >= appliedNextExpiry, var a = applied {
            var changed = false
            var next = Deadline.never
            for (set, els) in a.elements {
                for (e, d) in els {
                    if d != .never && d <= now {
                        a.elements[set]?[e] = nil
                        changed = true
                    } else if d < next {
                        next = d
                    }
                }
            }
            appliedNextExpiry = next
            if changed {
                applied = a
                for s in a.sets.keys where specs[s]?.isInterval == true { dirtyIntervals.insert(s) }
            }
        }
        return gone
    }

    // MARK: - Plugin contributions

    /// The deadline of a plugin's entry in `set`: its own timeout, else the set's default, else never; never
    /// in a set without the timeout flag.
    private static func pluginDeadline(_ timeoutMs: UInt64, set: DeclaredSet, now: UInt64) -> Deadline {
        guard set.timeoutFlag else { return .never }
        if timeoutMs > 0 { return now &+ timeoutMs &* 1_000_000 }
        return set.defaultTimeoutMs.map { now &+ $0 * 1_000_000 } ?? .never
    }

    /// Applies a plugin's changes to its contribution to `set` (checked by the host against the plugin's
    /// grants; what this set cannot hold is skipped). Adding refreshes the deadline; removing what the plugin
    /// does not contribute does nothing. Returns how many changes took effect.
    @discardableResult
    public mutating func applyPlugin(_ plugin: String, set name: String, _ changes: [PluginChange], now: UInt64) -> Int {
        guard let set = config.declaredSet(named: name) else { return 0 }
        // Work on the plugin's entries for this set taken out of the nested dictionaries (uniquely referenced,
        // so every change is an in-place update, not a re-hash of plugin and set name per element).
        var sets = plugins.removeValue(forKey: plugin) ?? [:]
        var mine = sets.removeValue(forKey: name) ?? [:]
        var n = 0
        var earliest = nextExpiry
        for c in changes where c.prefix.address.family == set.family && (set.interval || c.prefix.length == set.family.maxPrefixLength) {
            let p = c.prefix.network
            if c.add {
                let d = Self.pluginDeadline(c.timeoutMs, set: set, now: now)
                if mine.updateValue(d, forKey: p) == d { continue }
                earliest = min(earliest, d)
                contributePluginEntry(plugin, name, p, d, set: set)
                n += 1
            } else if mine.removeValue(forKey: p) != nil {
                withdrawPluginEntry(plugin, name, p, set: set)
                n += 1
            }
        }
        nextExpiry = earliest
        if !mine.isEmpty { sets[name] = mine }
        if !sets.isEmpty { plugins[plugin] = sets }
        return n
    }

    /// Makes a plugin's contribution to `set` exactly `entries` (each with `timeoutMs`, as in `applyPlugin`):
    /// only the difference changes.
    public mutating func replacePlugin(_ plugin: String, set name: String, _ entries: [IPPrefix], timeoutMs: UInt64, now: UInt64) {
        guard let set = config.declaredSet(named: name) else { return }
        var want: Set<IPPrefix> = []
        want.reserveCapacity(entries.count)
        for p in entries where p.address.family == set.family && (set.interval || p.length == set.family.maxPrefixLength) {
            want.insert(p.network)
        }
        let have = plugins[plugin]?[name] ?? [:]
        var changes: [PluginChange] = []
        for p in have.keys where !want.contains(p) { changes.append(PluginChange(add: false, prefix: p)) }
        for p in want { changes.append(PluginChange(add: true, prefix: p, timeoutMs: timeoutMs)) }
        applyPlugin(plugin, set: name, changes, now: now)
    }

    /// Withdraws everything a plugin contributes (it stopped, failed or was removed). Returns how many
    /// entries it had.
    @discardableResult
    public mutating func withdrawPlugin(_ plugin: String) -> Int {
        guard let sets = plugins[plugin] else { return 0 }
        var n = 0
        for (set, entries) in sets {
            for p in entries.keys { withdrawPluginEntry(plugin, set, p) }
            n += entries.count
        }
        plugins[plugin] = nil
        return n
    }

    /// The owner name a restarting plugin's contributions carry until its new instance runs (plugin names
    /// have no spaces, so it cannot be another plugin's).
    public static func retiredName(_ plugin: String) -> String { plugin + " (previous instance)" }

    /// The plugin is restarting: its contributions become its previous instance's, unchanged in the kernel,
    /// until `withdrawPlugin(retiredName(plugin))` (once the new instance runs and re-contributed, or failed).
    public mutating func retirePlugin(_ plugin: String) {
        let old = Self.retiredName(plugin)
        withdrawPlugin(old)
        guard let sets = plugins.removeValue(forKey: plugin) else { return }
        for (set, entries) in sets {
            guard let s = config.declaredSet(named: set) else { continue }
            for (p, d) in entries {
                let e = s.element(p)
                guard var c = content[set]?[e] else { continue }
                c.plugins[plugin] = nil
                c.plugins[old] = d
                content[set]![e] = c
            }
        }
        plugins[old] = sets
    }

    /// How many entries a plugin contributes, over all sets.
    public func pluginEntryCount(_ plugin: String) -> Int { plugins[plugin]?.values.reduce(0) { $0 + $1.count } ?? 0 }

    /// How many entries a plugin contributes to a set.
    public func pluginCount(_ plugin: String, set: String) -> Int { plugins[plugin]?[set]?.count ?? 0 }

    // MARK: - Outputs

    /// The desired table, materialised (keys and deadlines, as the kernel should hold them).
    public var desired: TableState {
        var elements: [String: [SetElement: Deadline]] = [:]
        for (name, spec) in specs { elements[name] = desiredElements(name, spec) }
        return TableState(name: config.table, sets: specs, elements: elements)
    }

    private func desiredElements(_ name: String, _ spec: SetSpec) -> [SetElement: Deadline] {
        let c = content[name] ?? [:]
        if spec.isInterval { return Segments.compute(c.map { ($0.key, $0.value.deadline) }) }
        return c.mapValues(\.deadline)
    }

    /// Number of desired elements in a set (O(1) for plain sets).
    public func desiredCount(of set: String) -> Int {
        guard let spec = specs[set] else { return 0 }
        return spec.isInterval ? desiredElements(set, spec).count : (content[set]?.count ?? 0)
    }

    /// Configured interfaces that no link currently carries the name of, in config order.
    public var absentInterfaces: [InterfaceConfig] {
        let present = Set(observed.links.values.map(\.name))
        return config.interfaces.filter { !present.contains($0.name) }
    }

    /// Contributions to a set with their owners and deadlines, sorted (for `set show`).
    public func contributions(of set: String) -> [(element: SetElement, owners: [Owner], deadline: Deadline)] {
        let zone = zoneOfSet[set]
        return (content[set] ?? [:]).map { ($0.key, $0.value.owners(zone: zone), $0.value.deadline) }
            .sorted { $0.element < $1.element }
    }

    /// The distinct owners contributing to a set.
    public func owners(of set: String) -> [Owner] {
        let zone = zoneOfSet[set]
        var seen = Set<Owner>()
        for c in (content[set] ?? [:]).values { seen.formUnion(c.owners(zone: zone)) }
        return seen.sorted()
    }

    public var setSpecs: [String: SetSpec] { specs }

    /// The one transaction that makes the kernel equal to the desired state at `now`; empty if it already is.
    /// Call `expire(now:)` first so that nothing past due is planned.
    public func plan(now: UInt64 = 0) -> Plan {
        guard !needsFullDiff, let applied, applied.name == config.table else {
            return diff(applied: applied, desired: desired, now: now)
        }
        var plan = Plan(table: config.table, now: now)
        for (set, elements) in dirty {
            guard let spec = specs[set], !spec.isInterval else { continue }
            let want = content[set] ?? [:]
            let have = applied.elements[set] ?? [:]
            var adds: [PlannedElement] = []
            var removes: [SetElement] = []
            for e in elements {
                let w = want[e]?.deadline
                let h = have[e]
                switch (w, h) {
                case (let w?, nil):
                    if let p = planned(e, w, spec, now: now) { adds.append(p) }
                case (nil, .some):
                    removes.append(e)
                case (let w?, let h?) where !w.isSameDeadline(as: h):
                    removes.append(e)
                    if let p = planned(e, w, spec, now: now) { adds.append(p) }
                default:
                    break
                }
            }
            if !adds.isEmpty { plan.add[set] = adds.sorted() }
            if !removes.isEmpty { plan.remove[set] = removes.sorted() }
        }
        for set in dirtyIntervals {
            guard let spec = specs[set], spec.isInterval, applied.sets[set] == spec else { continue }
            let want = desiredElements(set, spec)
            let have = applied.elements[set] ?? [:]
            var adds: [PlannedElement] = []
            var removes: [SetElement] = []
            for (e, d) in want {
                if let h = have[e], h.isSameDeadline(as: d) { continue }
                if have[e] != nil { removes.append(e) }
                if let p = planned(e, d, spec, now: now) { adds.append(p) }
            }
            for e in have.keys where want[e] == nil { removes.append(e) }
            if !adds.isEmpty { plan.add[set] = adds.sorted() }
            if !removes.isEmpty { plan.remove[set] = removes.sorted() }
        }
        return plan
    }

    /// The kernel loaded the whole table holding `managed` (what `TableRenderer.render` put in it).
    public mutating func loadedWholeTable(_ managed: TableState) {
        applied = managed
        appliedNextExpiry = Self.earliest(managed)
        dirty.removeAll(keepingCapacity: true)
        dirtyIntervals.removeAll()
        needsFullDiff = false
    }

    /// The kernel accepted `plan`: it is now the applied state.
    public mutating func committed(_ plan: Plan) {
        plan.apply(to: &applied)
        for (set, els) in plan.add {
            let spec = applied?.sets[set]
            for e in els { appliedNextExpiry = min(appliedNextExpiry, plan.deadline(of: e, in: spec)) }
        }
        dirty.removeAll(keepingCapacity: true)
        dirtyIntervals.removeAll()
        needsFullDiff = false
    }

    // MARK: - Membership bookkeeping

    private mutating func rebuild() {
        content = [:]
        zoneOfSet = [:]
        for name in specs.keys { content[name] = [:] }
        for zone in config.zones {
            zoneOfSet[Desired.v4SetName(zone)] = zone
            zoneOfSet[Desired.v6SetName(zone)] = zone
        }
        for (s, e) in Desired.configElements(for: config) { content[s, default: [:]][e, default: Contributors()].config = true }
        for a in observed.addresses.values { contribute(a, link: observed.links[a.key.ifindex]) }
        for (set, entries) in manual {
            guard let s = config.declaredSet(named: set) else { continue }
            for (p, d) in entries { contributeManual(set, p, d, set: s) }
        }
        for (plugin, sets) in plugins {
            for (set, entries) in sets {
                guard let s = config.declaredSet(named: set) else { continue }
                for (p, d) in entries { contributePluginEntry(plugin, set, p, d, set: s) }
            }
        }
        dirty = [:]
        dirtyIntervals = []
        needsFullDiff = true
    }

    private mutating func contribute(_ address: Address, link: Link?) {
        guard let (s, e) = Desired.contribution(
            of: address, link: link, zoneByInterface: zoneByInterface, policy: config.addressPolicy)
        else { return }
        content[s, default: [:]][e, default: Contributors()].addresses += 1
        if !needsFullDiff { dirty[s, default: []].insert(e) }
    }

    private mutating func retract(_ address: Address, link: Link?) {
        guard let (s, e) = Desired.contribution(
            of: address, link: link, zoneByInterface: zoneByInterface, policy: config.addressPolicy)
        else { return }
        if var c = content[s]?[e] {
            c.addresses -= 1
            content[s]![e] = c.isEmpty ? nil : c
        }
        if !needsFullDiff { dirty[s, default: []].insert(e) }
    }

    private mutating func contributeManual(_ name: String, _ p: IPPrefix, _ deadline: Deadline, set: DeclaredSet) {
        let e = set.element(p)
        content[name, default: [:]][e, default: Contributors()].manual = deadline
        markDirty(name, e)
    }

    private mutating func withdrawManual(_ name: String, _ p: IPPrefix) {
        guard let set = config.declaredSet(named: name) else { return }
        let e = set.element(p)
        if var c = content[name]?[e] {
            c.manual = nil
            content[name]![e] = c.isEmpty ? nil : c
        }
        markDirty(name, e)
    }

    private mutating func contributePluginEntry(_ plugin: String, _ name: String, _ p: IPPrefix, _ deadline: Deadline, set: DeclaredSet) {
        let e = set.element(p)
        content[name, default: [:]][e, default: Contributors()].plugins[plugin] = deadline
        markDirty(name, e)
    }

    private mutating func withdrawPluginEntry(_ plugin: String, _ name: String, _ p: IPPrefix, set known: DeclaredSet? = nil) {
        guard let set = known ?? config.declaredSet(named: name) else { return }
        let e = set.element(p)
        if var c = content[name]?[e] {
            c.plugins[plugin] = nil
            content[name]![e] = c.isEmpty ? nil : c
        }
        markDirty(name, e)
    }

    private mutating func markDirty(_ set: String, _ e: SetElement) {
        guard !needsFullDiff else { return }
        if specs[set]?.isInterval == true { dirtyIntervals.insert(set) } else { dirty[set, default: []].insert(e) }
    }
}

/// One change a plugin asked for: add (with a timeout in ms, 0 = the set's default) or remove.
public struct PluginChange: Hashable, Sendable {
    public var add: Bool
    public var prefix: IPPrefix
    public var timeoutMs: UInt64

    public init(add: Bool, prefix: IPPrefix, timeoutMs: UInt64 = 0) {
        self.add = add
        self.prefix = prefix
        self.timeoutMs = timeoutMs
    }
}

/// Why a manual entry request was refused (nothing of it was applied).
public enum ManualEntryError: Error, Equatable, Sendable, CustomStringConvertible {
    case undeclaredSet(String, declared: [String])
    case noElements
    case timeoutNotAllowed(String)
    case wrongFamily(IPPrefix, set: String, family: IPFamily)
    case prefixNeedsInterval(IPPrefix, set: String)
    case duplicate(IPPrefix)
    case notAManualEntry(IPPrefix, set: String)

    public var description: String {
        switch self {
        case .undeclaredSet(let s, let declared):
            return "set \(YAMLNode.quoted(s)) is not declared under `sets:`"
                + (declared.isEmpty ? " (none are)" : " (declared: \(declared.joined(separator: ", ")))")
        case .noElements: return "no addresses given"
        case .timeoutNotAllowed(let s): return "set \(s) has no timeout flag; declare it with `flags: [timeout]`"
        case .wrongFamily(let p, let s, let f):
            return "\(p.address) is not an \(f == .v4 ? "IPv4" : "IPv6") address (set \(s) holds \(SetKeyType(f)))"
        case .prefixNeedsInterval(let p, let s): return "\(p) is a prefix; set \(s) has no interval flag"
        case .duplicate(let p): return "\(p.compactDescription) is given twice"
        case .notAManualEntry(let p, let s): return "\(p.compactDescription) is not a manual entry of set \(s)"
        }
    }

    /// A stable machine-readable code for the control protocol.
    public var code: String {
        switch self {
        case .undeclaredSet: "unknown_set"
        case .noElements, .duplicate, .wrongFamily, .prefixNeedsInterval, .timeoutNotAllowed: "invalid_argument"
        case .notAManualEntry: "not_found"
        }
    }
}
