/// The seam between the reconciler and nftables. The real one speaks libnftnl batches and libnftables
/// (RNMFirewall); tests use a recording fake.
public protocol FirewallBackend: Sendable {
    /// The managed sets named in `sets` and their elements, as the kernel holds them (other sets in the
    /// table, such as those templates declare, are not read); nil if the table does not exist.
    func readBack(table: String, sets: Set<String>) throws -> TableState?

    /// Applies `plan` (element changes) as **one** nftables transaction and returns once the kernel
    /// acknowledged it. On error the kernel has kept its previous state (transactions are all-or-nothing).
    func commit(_ plan: Plan) throws

    /// Loads the whole table as one transaction that replaces it (with `dryRun`, the kernel checks it and
    /// changes nothing). On error nothing changed; the error names template files and lines.
    func load(_ table: RenderedTable, dryRun: Bool) throws

    /// The table's structure in nft's canonical form: chains, rules, set declarations, no set elements, no
    /// counter values. nil if the table does not exist.
    func listStructure(table: String) throws -> String?

    /// The structure `table` would have once loaded, in the same canonical form as `listStructure`, worked
    /// out without touching the live table (the real backend loads it into a scratch network namespace).
    func canonicalStructure(_ table: RenderedTable) throws -> String
}
