public import RNMCore
import Synchronization

/// An in-memory `FirewallBackend`: holds one table like the kernel would, applies plans all-or-nothing,
/// records every transaction, and can be told to refuse the next commits or read-backs.
public final class RecordingFirewall: FirewallBackend {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private struct State {
        var tables: [String: TableState] = [:]
        var commits: [Plan] = []
        var loads: [RenderedTable] = []
        var dryRuns = 0
        var structures: [String: String] = [:]
        var failLoads = 0
        var failDryRuns = 0
        var failCommits = 0
        var failReadBacks = 0
        var readBacks = 0
    }

    private let state: Mutex<State>

    public init(tables: [TableState] = []) {
        var s = State()
        for t in tables { s.tables[t.name] = t }
        state = Mutex(s)
    }

    /// Every committed plan, in order.
    public var commits: [Plan] { state.withLock { $0.commits } }
    public var readBacks: Int { state.withLock { $0.readBacks } }
    /// Every whole-table load (not dry runs), in order.
    public var loads: [RenderedTable] { state.withLock { $0.loads } }
    public var dryRuns: Int { state.withLock { $0.dryRuns } }

    /// The next `n` real loads fail (and change nothing).
    public func failNextLoads(_ n: Int) { state.withLock { $0.failLoads = n } }
    /// The next `n` dry runs fail (as nft does for a template it refuses).
    public func failNextDryRuns(_ n: Int) { state.withLock { $0.failDryRuns = n } }
    /// Transactions of either kind: element commits and whole-table loads.
    public var transactions: Int { state.withLock { $0.commits.count + $0.loads.count } }

    /// Changes a table's structure behind the daemon's back (what `listStructure` returns).
    public func setStructure(_ name: String, _ text: String?) { state.withLock { $0.structures[name] = text } }

    /// What the "kernel" holds now.
    public func table(_ name: String) -> TableState? { state.withLock { $0.tables[name] } }

    /// The next `n` commits fail (and change nothing).
    public func failNextCommits(_ n: Int) { state.withLock { $0.failCommits = n } }
    public func failNextReadBacks(_ n: Int) { state.withLock { $0.failReadBacks = n } }

    /// What the kernel's own timeouts do: elements whose deadline has passed are gone.
    public func expire(now: UInt64) {
        state.withLock { s in
            for (name, var t) in s.tables {
                for (set, els) in t.elements {
                    t.elements[set] = els.filter { $0.value == .never || $0.value > now }
                }
                s.tables[name] = t
            }
        }
    }

    /// Changes the "kernel" behind the daemon's back (drift).
    public func mutate(_ name: String, _ body: (inout TableState?) -> Void) {
        state.withLock { body(&$0.tables[name]) }
    }

    static func overlaps(_ a: SetElement, _ b: SetElement) -> Bool {
        switch (a, b) {
        case (.ipv4Range(let a0, let a1), .ipv4Range(let b0, let b1)): return a0 <= b1 && b0 <= a1
        case (.ipv6Range(let a0, let a1), .ipv6Range(let b0, let b1)): return a0 <= b1 && b0 <= a1
        default: return false
        }
    }

    public func readBack(table: String, sets: Set<String>) throws -> TableState? {
        try state.withLock { s in
            s.readBacks += 1
            if s.failReadBacks > 0 {
                s.failReadBacks -= 1
                throw Failure(description: "injected read-back failure")
            }
            guard var t = s.tables[table] else { return nil }
            t.sets = t.sets.filter { sets.contains($0.key) }
            t.elements = t.elements.filter { sets.contains($0.key) }
            return t
        }
    }

    /// Replaces the table with the rendered one (its structure becomes the rendered structure text).
    public func load(_ table: RenderedTable, dryRun: Bool) throws {
        try state.withLock { s in
            if dryRun {
                if s.failDryRuns > 0 {
                    s.failDryRuns -= 1
                    throw Failure(description: "injected dry-run failure")
                }
                s.dryRuns += 1
                return
            }
            if s.failLoads > 0 {
                s.failLoads -= 1
                throw Failure(description: "injected load failure")
            }
            if let old = table.replacing {
                s.tables[old] = nil
                s.structures[old] = nil
            }
            s.tables[table.table] = table.managed
            s.structures[table.table] = table.structure
            s.loads.append(table)
        }
    }

    public func canonicalStructure(_ table: RenderedTable) throws -> String { table.structure }

    public func listStructure(table: String) throws -> String? {
        state.withLock { s in s.tables[table] == nil ? nil : s.structures[table] ?? "" }
    }

    public func commit(_ plan: Plan) throws {
        try state.withLock { s in
            if s.failCommits > 0 {
                s.failCommits -= 1
                throw Failure(description: "injected commit failure")
            }
            // Model the kernel's checks: deleting what is not there fails the whole transaction.
            var tables = s.tables
            if let old = plan.deleteTable {
                guard tables.removeValue(forKey: old) != nil else { throw Failure(description: "no table \(old)") }
            }
            var t = tables[plan.table] ?? (plan.createTable ? TableState(name: plan.table) : nil)
            guard var table = t else { throw Failure(description: "no table \(plan.table)") }
            for name in plan.deleteSets {
                guard table.sets.removeValue(forKey: name) != nil else { throw Failure(description: "no set \(name)") }
                table.elements[name] = nil
            }
            for spec in plan.createSets {
                if let existing = table.sets[spec.name], existing != spec {
                    throw Failure(description: "set \(spec.name) exists with another type")
                }
                table.sets[spec.name] = spec
                table.elements[spec.name] = table.elements[spec.name] ?? [:]
            }
            for (name, els) in plan.remove {
                guard table.sets[name] != nil else { throw Failure(description: "no set \(name)") }
                for e in els {
                    guard table.elements[name]!.removeValue(forKey: e) != nil else {
                        throw Failure(description: "no element \(e) in \(name)")
                    }
                }
            }
            for (name, els) in plan.add {
                guard let spec = table.sets[name] else { throw Failure(description: "no set \(name)") }
                for e in els {
                    guard e.element.keyType == spec.type else { throw Failure(description: "wrong type for \(name)") }
                    guard e.element.isRange == spec.isInterval else { throw Failure(description: "range/interval mismatch in \(name)") }
                    if e.timeoutMs != nil && !spec.flags.contains(.timeout) {
                        throw Failure(description: "timeout on an element of \(name), which has no timeout flag")
                    }
                    if spec.isInterval, let overlap = table.elements[name]!.keys.first(where: { Self.overlaps($0, e.element) }) {
                        throw Failure(description: "\(e.element) overlaps \(overlap) in \(name)")
                    }
                    table.elements[name]![e.element] = plan.deadline(of: e, in: spec)
                }
            }
            t = table
            tables[plan.table] = t
            s.tables = tables
            s.commits.append(plan)
        }
    }
}
