/// What differs between the desired table and the live one: structure lines (chains, rules, set
/// declarations, in nft's canonical listing) and managed set elements. Empty when in sync.
public struct TableDiff: Equatable, Sendable {
    public enum Op: String, Sendable {
        case add = "+"
        case remove = "-"
    }

    public struct Change: Equatable, Sendable {
        public var op: Op
        /// The enclosing object: `table inet rnm`, `chain input`, `set lan_v4`.
        public var context: String
        /// The line (without indentation) or the element.
        public var text: String

        public init(_ op: Op, _ context: String, _ text: String) {
            self.op = op
            self.context = context
            self.text = text
        }
    }

    public var table: String
    /// A table of ours under another name that applying would delete.
    public var deletesTable: String?
    public var structure: [Change]
    public var elements: [Change]

    public var isEmpty: Bool { deletesTable == nil && structure.isEmpty && elements.isEmpty }
    public var additions: Int { (structure + elements).filter { $0.op == .add }.count }
    public var removals: Int { (structure + elements).filter { $0.op == .remove }.count }

    /// - Parameters:
    ///   - desiredStructure, liveStructure: canonical listings (nil: the table does not exist).
    ///   - desired: managed sets and elements wanted; live: what the kernel holds of them (nil: no table).
    public static func compute(
        table: String, deletesTable: String? = nil, desiredStructure: String?, liveStructure: String?,
        desired: TableState, live: TableState?
    ) -> TableDiff {
        var diff = TableDiff(table: table, deletesTable: deletesTable, structure: [], elements: [])
        let want = lines(desiredStructure)
        let have = lines(liveStructure)
        let wantContext = contexts(want, table: table)
        let haveContext = contexts(have, table: table)
        for (op, i) in LineDiff.diff(have, want) {
            switch op {
            case .add: diff.structure.append(Change(.add, wantContext[i], trimmed(want[i])))
            case .remove: diff.structure.append(Change(.remove, haveContext[i], trimmed(have[i])))
            }
        }
        for name in desired.sets.keys.sorted() {
            let w = Set((desired.elements[name] ?? [:]).keys)
            let h = Set((live?.elements[name] ?? [:]).keys)
            let context = "set \(name)"
            for e in h.subtracting(w).sorted() { diff.elements.append(Change(.remove, context, elementText(e))) }
            for e in w.subtracting(h).sorted() { diff.elements.append(Change(.add, context, elementText(e))) }
        }
        return diff
    }

    static func elementText(_ e: SetElement) -> String {
        if case .ifname(let n) = e { return "\"\(n)\"" }
        return e.description
    }

    static func lines(_ text: String?) -> [Substring] {
        guard let text else { return [] }
        return text.split(separator: "\n", omittingEmptySubsequences: true)
            .filter { !$0.allSatisfy { $0 == " " || $0 == "\t" } }
    }

    static func trimmed(_ line: Substring) -> String {
        String(line.drop { $0 == "\t" || $0 == " " })
    }

    /// For each line, the object it belongs to: the nearest preceding less-indented line that opens a block.
    static func contexts(_ lines: [Substring], table: String) -> [String] {
        var stack: [(depth: Int, name: String)] = []
        var out: [String] = []
        for l in lines {
            let depth = l.prefix { $0 == "\t" }.count
            while let top = stack.last, top.depth >= depth { stack.removeLast() }
            out.append(stack.last?.name ?? "table inet \(table)")
            let t = trimmed(l)
            if t.hasSuffix("{") {
                stack.append((depth, String(t.dropLast().drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())))
            }
        }
        return out
    }

    /// Terraform-style text: a summary line, then changes grouped by object.
    public var text: String {
        if isEmpty { return "table inet \(table): in sync\n" }
        var out = "table inet \(table): \(additions) to add, \(removals) to remove"
        if let d = deletesTable { out += ", table inet \(d) to delete" }
        out += "\n"
        var current: String? = nil
        for c in structure + elements {
            if c.context != current {
                out += "  \(c.context)\n"
                current = c.context
            }
            out += "  \(c.op.rawValue)   \(c.text)\n"
        }
        return out
    }

    public var json: JSON {
        func list(_ cs: [Change]) -> JSON {
            .array(cs.map { .object([("op", .string($0.op.rawValue)), ("object", .string($0.context)), ("text", .string($0.text))]) })
        }
        return .object([
            ("table", .string(table)), ("in_sync", .bool(isEmpty)), ("add", .int(additions)), ("remove", .int(removals)),
            ("delete_table", deletesTable.map { .string($0) } ?? .null),
            ("structure", list(structure)), ("elements", list(elements)),
        ])
    }
}

/// A minimal line diff (longest common subsequence), for plans: common prefix and suffix are matched
/// first, the middle by dynamic programming when it is small enough, else as a whole replacement.
public enum LineDiff {
    /// Operations turning `a` into `b`, in order: `.remove` indexes `a`, `.add` indexes `b`.
    public static func diff(_ a: [Substring], _ b: [Substring]) -> [(TableDiff.Op, Int)] {
        var lo = 0
        while lo < a.count, lo < b.count, a[lo] == b[lo] { lo += 1 }
        var ha = a.count
        var hb = b.count
        while ha > lo, hb > lo, a[ha - 1] == b[hb - 1] {
            ha -= 1
            hb -= 1
        }
        let n = ha - lo
        let m = hb - lo
        if n == 0 && m == 0 { return [] }
        guard n > 0, m > 0, n * m <= 4_000_000 else {
            return (lo..<ha).map { (.remove, $0) } + (lo..<hb).map { (.add, $0) }
        }
        // lcs[i][j]: LCS length of a[lo+i..<ha] and b[lo+j..<hb].
        var lcs = [Int32](repeating: 0, count: (n + 1) * (m + 1))
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i * (m + 1) + j] = a[lo + i] == b[lo + j]
                    ? lcs[(i + 1) * (m + 1) + j + 1] + 1
                    : max(lcs[(i + 1) * (m + 1) + j], lcs[i * (m + 1) + j + 1])
            }
        }
        var out: [(TableDiff.Op, Int)] = []
        var i = 0
        var j = 0
        while i < n || j < m {
            if i < n, j < m, a[lo + i] == b[lo + j] {
                i += 1
                j += 1
            } else if i < n, j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1] {
                out.append((.remove, lo + i))
                i += 1
            } else {
                out.append((.add, lo + j))
                j += 1
            }
        }
        return out
    }
}
