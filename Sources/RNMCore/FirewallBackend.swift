/// The seam between the reconciler and nftables. The real one speaks libnftnl batches over netlink
/// (RNMFirewall.NftablesBackend); tests use a recording fake.
public protocol FirewallBackend: Sendable {
    /// Our table as the kernel holds it (managed sets and their elements); nil if the table does not exist.
    func readBack(table: String) throws -> TableState?

    /// Applies `plan` as **one** nftables transaction and returns once the kernel acknowledged it.
    /// On error the kernel has kept its previous state (transactions are all-or-nothing).
    func commit(_ plan: Plan) throws
}
