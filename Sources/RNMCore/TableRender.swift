/// The whole table as nft text: what rnmd loads with libnftables in one transaction.
///
/// Layout: the `define`s rnm derives from config (`<zone>_ifaces`), the user's `defines:`, then
/// `table inet T {}` + `delete table inet T` (so the load replaces whatever is there, in the same
/// transaction), then `table inet T { … }` holding the managed set declarations with their current
/// elements, the chains rnm generates from `masquerade:` and `forwards:` (`NATRender`: `rnm_prerouting`,
/// `rnm_postrouting`, and `rnm_forward`, always), followed by each template verbatim (so nft's line:column in
/// a template are the template's own).
public struct RenderedTable: Equatable, Sendable {
    public var table: String
    /// The text to load.
    public var text: String
    /// The same table without managed set elements and without the replace preamble: two renders with equal
    /// structure differ only in elements, which element transactions handle.
    public var structure: String
    /// Where each line of `text` came from, sorted by `firstLine`.
    public var origins: [LineOrigin]
    /// The managed sets and elements the text declares (what the kernel holds after loading it).
    public var managed: TableState
    /// The table of ours under another name this load deletes, if any.
    public var replacing: String?

    /// What produced a run of rendered lines.
    public struct LineOrigin: Equatable, Sendable {
        /// 1-based line in `text` where the run starts.
        public var firstLine: Int
        public var source: Source

        public enum Source: Equatable, Sendable {
            /// A template file; its line 1 is `firstLine`.
            case template(path: String)
            /// Lines rnm generated (defines, set declarations, the table header).
            case generated(String)
        }
    }

    /// The origin of rendered line `line` (1-based): a template path and the line in it, or what rnm generated.
    public func origin(ofLine line: Int) -> (source: LineOrigin.Source, line: Int)? {
        var found: LineOrigin? = nil
        for o in origins {
            if o.firstLine > line { break }
            found = o
        }
        guard let found else { return nil }
        return (found.source, line - found.firstLine + 1)
    }

    /// Rewrites nft's diagnostics (`FILE:LINE:COL-COL: Error: …`, with FILE the name the rendered text was
    /// loaded under) so that each location names the template file and its line, or the generated part.
    public func mapDiagnostics(_ diagnostics: String, loadedAs name: String) -> String {
        var out: [Substring] = []
        for line in diagnostics.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix(name + ":") else {
                out.append(line)
                continue
            }
            let rest = line.dropFirst(name.count + 1)
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard let n = Int(digits), let (source, inner) = origin(ofLine: n) else {
                out.append(line)
                continue
            }
            let tail = rest.dropFirst(digits.count)
            switch source {
            case .template(let path):
                out.append(Substring("\(path):\(inner)\(tail)"))
            case .generated(let what):
                out.append(Substring("(rnm-generated \(what), rendered line \(n))\(tail)"))
            }
        }
        return out.joined(separator: "\n")
    }
}

public enum TableRenderer {
    /// Renders `config` with the managed sets holding `desired`'s elements as of `now` (monotonic ns;
    /// elements already due are left out, the others get their remaining time). `replacing` names a table of
    /// ours under another name (the config's `table:` changed) to delete in the same transaction.
    public static func render(
        config: Config, desired: TableState, now: UInt64, replacing old: String? = nil, source: String = ""
    ) -> RenderedTable {
        var w = Writer()
        let t = config.table
        var managed = TableState(name: t, sets: desired.sets)
        for (name, els) in desired.elements where desired.sets[name] != nil {
            managed.elements[name] = els.filter { $0.value == .never || $0.value > now }
        }
        for name in desired.sets.keys where managed.elements[name] == nil { managed.elements[name] = [:] }
        w.generated("header")
        w.line("# Table inet \(t) as rendered by rnmd\(source.isEmpty ? "" : " from \(source)").")
        w.line("# Managed sets show their elements as of rendering; rnmd keeps them current.")
        let defines = self.defines(config)
        if !defines.isEmpty { w.generated("defines") }
        for (name, value) in defines { w.line("define \(name) = \(value)") }
        w.generated("table header")
        var preamble: [String] = []
        if let old, old != t { preamble += ["table inet \(old) {}", "delete table inet \(old)"] }
        preamble += ["table inet \(t) {}", "delete table inet \(t)"]
        for l in preamble { w.line(l) }
        w.line("table inet \(t) {")
        for spec in desired.sets.values.sorted(by: { $0.name < $1.name }) {
            w.generated("set \(spec.name)")
            for l in setHead(spec) { w.line(l) }
            let live = (managed.elements[spec.name] ?? [:]).sorted { $0.key < $1.key }
            if !live.isEmpty {
                w.line("\t\telements = {")
                for (e, d) in live { w.line("\t\t\t\(elementText(e, deadline: d, now: now)),") }
                w.line("\t\t}")
            }
            w.line("\t}")
        }
        for chain in NATRender.chains(config) {
            w.generated("chain \(chain.name)")
            for l in chain.lines { w.line(l) }
        }
        for tpl in config.rules {
            w.generated("separator")
            w.line("")
            w.line("# \(tpl.path)")
            w.origins.append(.init(firstLine: w.lineCount + 1, source: .template(path: tpl.path)))
            var text = tpl.text
            if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
            w.text += text
            w.lineCount += text.utf8.reduce(0) { $1 == 0x0A ? $0 + 1 : $0 }
        }
        w.generated("table footer")
        w.line("}")
        return RenderedTable(
            table: t, text: w.text, structure: structureText(config: config, desired: desired, defines: defines),
            origins: w.origins, managed: managed, replacing: old == t ? nil : old)
    }

    /// The defines rnm derives (`<zone>_ifaces`, a quoted list of the zone's interface names), then the
    /// user's, in order.
    public static func defines(_ config: Config) -> [(String, String)] {
        var out: [(String, String)] = []
        for zone in config.zones {
            let names = config.interfaces.filter { $0.zone == zone }.map { quote($0.name) }
            out.append((Desired.ifacesSetName(zone), "{ " + names.joined(separator: ", ") + " }"))
        }
        for d in config.defines { out.append((d.name, d.value)) }
        return out
    }

    /// The set's declaration lines, without elements and the closing brace.
    static func setHead(_ spec: SetSpec) -> [String] {
        var l = ["\tset \(spec.name) {", "\t\ttype \(spec.type)"]
        let flags = spec.flags.names
        if !flags.isEmpty { l.append("\t\tflags " + flags.joined(separator: ",")) }
        if let ms = spec.timeoutMs { l.append("\t\ttimeout \(ms)ms") }
        return l
    }

    /// One element as nft text. Interface names are quoted (config validation refused names with `"`, `\`
    /// or `*`); addresses and ranges are typed values printed in their canonical form.
    public static func elementText(_ e: SetElement, deadline: Deadline, now: UInt64) -> String {
        let key: String
        switch e {
        case .ifname(let n): key = quote(n)
        default: key = e.description
        }
        guard deadline != .never, deadline > now else { return key }
        let ms = max((deadline - now + 999_999) / 1_000_000, 1)
        return key + " timeout \(ms)ms"
    }

    static func quote(_ s: String) -> String { "\"" + s + "\"" }

    /// The structure: defines, set declarations without elements, generated chains, templates. Used to decide
    /// whether a new config needs a whole-table load or only element changes.
    static func structureText(config: Config, desired: TableState, defines: [(String, String)]) -> String {
        var s = ""
        for (n, v) in defines { s += "define \(n) = \(v)\n" }
        s += "table inet \(config.table) {\n"
        for spec in desired.sets.values.sorted(by: { $0.name < $1.name }) {
            s += setHead(spec).joined(separator: "\n") + "\n\t}\n"
        }
        for chain in NATRender.chains(config) { s += chain.lines.joined(separator: "\n") + "\n" }
        for tpl in config.rules { s += "# \(tpl.path)\n" + tpl.text + "\n" }
        return s + "}\n"
    }

    private struct Writer {
        var text = ""
        var lineCount = 0
        var origins: [RenderedTable.LineOrigin] = []

        mutating func line(_ l: String) {
            text += l
            text += "\n"
            lineCount += 1
        }

        mutating func generated(_ what: String) {
            origins.append(.init(firstLine: lineCount + 1, source: .generated(what)))
        }
    }
}
