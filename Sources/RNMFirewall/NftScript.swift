internal import CNftables
internal import CRNMShims
internal import Glibc
public import RNMCore
import Synchronization

/// nft refused a script: its diagnostics, with locations mapped back to template files where known.
public struct NftScriptError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// libnftables, for what is best said in nft syntax: loading the whole table (one transaction) and listing
/// it in nft's canonical form. Element changes do not come here; they go through libnftnl batches.
///
/// libnftables keeps process-wide state it initialises on first use without locking, so every call is
/// serialised on one lock. Each call gets a fresh context: its cache of the ruleset (which can be large)
/// is freed when the call returns.
public enum NftScript {
    private static let lock = Mutex(())

    /// Loads `rendered` as one transaction (or, with `dryRun`, has the kernel check it and abort).
    /// The text is passed as a memfd path so nft reports `line:column`, which are mapped back to the
    /// template files.
    public static func load(_ rendered: RenderedTable, dryRun: Bool) throws(NftScriptError) {
        let fd = RNM_memfd("rnm-table")
        guard fd >= 0 else { throw NftScriptError("memfd_create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes = Array(rendered.text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw NftScriptError("writing the rendered table: \(String(cString: strerror(errno)))")
            }
            off += n
        }
        bytes = []
        let name = "/proc/self/fd/\(fd)"
        let result = run(dryRun: dryRun, flags: 0) { nft_run_cmd_from_filename($0, name) }
        if result.status != 0 {
            let mapped = rendered.mapDiagnostics(result.errors, loadedAs: name)
            throw NftScriptError(mapped.isEmpty ? "nft refused the table (no diagnostics)" : trimmed(mapped))
        }
    }

    /// `nft --terse --stateless list table inet <table>`: our table's structure in canonical form (no set
    /// elements, no counter values). nil if the table does not exist.
    public static func listStructure(table: String) throws(NftScriptError) -> String? {
        // Table names are validated identifiers ([a-z][a-z0-9_]*), safe in command text.
        let flags = UInt32(NFT_CTX_OUTPUT_TERSE | NFT_CTX_OUTPUT_STATELESS)
        let result = run(dryRun: false, flags: flags) { nft_run_cmd_from_buffer($0, "list table inet \(table)") }
        if result.status != 0 {
            if result.errors.contains("No such file or directory") { return nil }
            throw NftScriptError("listing table inet \(table): \(trimmed(result.errors))")
        }
        return result.output
    }

    /// Runs an nft script text (used on scratch namespaces and by tests). Returns the output.
    public static func run(script: String, flags: UInt32 = 0) throws(NftScriptError) -> String {
        let result = run(dryRun: false, flags: flags) { nft_run_cmd_from_buffer($0, script) }
        if result.status != 0 { throw NftScriptError(trimmed(result.errors)) }
        return result.output
    }

    /// Output flags for `run(script:flags:)`.
    public static let terseStateless = UInt32(NFT_CTX_OUTPUT_TERSE | NFT_CTX_OUTPUT_STATELESS)

    private static func run(
        dryRun: Bool, flags: UInt32, _ body: (OpaquePointer) -> Int32
    ) -> (status: Int32, output: String, errors: String) {
        lock.withLock { _ in
            guard let ctx = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else { return (-1, "", "nft_ctx_new failed") }
            defer { nft_ctx_free(ctx) }
            nft_ctx_set_dry_run(ctx, dryRun)
            nft_ctx_output_set_flags(ctx, flags)
            _ = nft_ctx_buffer_output(ctx)
            _ = nft_ctx_buffer_error(ctx)
            let status = body(ctx)
            let out = nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? ""
            let err = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? ""
            return (status, out, err)
        }
    }

    private static func trimmed(_ s: String) -> String {
        var t = Substring(s)
        while t.last == "\n" { t = t.dropLast() }
        return String(t)
    }
}
