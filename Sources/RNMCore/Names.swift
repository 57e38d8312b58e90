/// Validation of names that end up in the kernel: interface names, zone, set and table names.
///
/// Names are checked once, where they enter (config, control requests). After that they only travel as typed
/// values (set elements, netlink attributes), never pasted into rule text.
public enum Names {
    /// Linux interface names: 1–15 bytes (IFNAMSIZ - 1), no `/`, `:`, whitespace or control characters,
    /// and not `.` or `..` (the kernel's `dev_valid_name`).
    public static func interfaceNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "an interface name must not be empty" }
        if bytes.count > 15 { return "an interface name is at most 15 bytes, this one has \(bytes.count)" }
        if name == "." || name == ".." { return "\"\(name)\" is not a valid interface name" }
        for b in bytes {
            if b == UInt8(ascii: "/") { return "an interface name must not contain '/'" }
            if b == UInt8(ascii: ":") { return "an interface name must not contain ':'" }
            if b == 0x20 || (b >= 0x09 && b <= 0x0D) { return "an interface name must not contain whitespace" }
            if b < 0x20 || b == 0x7F { return "an interface name must not contain control characters" }
        }
        return nil
    }

    /// Interface names are written into the table as nft strings (`"eth0"`), which have no escapes: a `"` or
    /// `\` cannot be expressed safely, so such names are refused.
    public static func nftTextProblem(_ name: String) -> String? {
        if name.contains("\"") { return "an interface name must not contain '\"' (it could not be quoted in nft syntax)" }
        if name.contains("\\") { return "an interface name must not contain '\\' (it could not be quoted in nft syntax)" }
        if name.contains("*") { return "an interface name must not contain '*' (nft would read it as a wildcard)" }
        return nil
    }

    /// Zone names become set names (`<zone>_v4`, `<zone>_v6`, `<zone>_ifaces`): `[a-z][a-z0-9_]*`, ≤ 24 chars.
    public static func zoneNameProblem(_ name: String) -> String? {
        identifierProblem(name, what: "zone name", maxLength: 24)
    }

    /// Declared set names follow the zone rule: they are nft identifiers we control.
    public static func setNameProblem(_ name: String) -> String? {
        identifierProblem(name, what: "set name", maxLength: 32)
    }

    /// Our table's name: `[a-z][a-z0-9_]*`, ≤ 32 chars.
    public static func tableNameProblem(_ name: String) -> String? {
        identifierProblem(name, what: "table name", maxLength: 32)
    }

    private static func identifierProblem(_ name: String, what: String, maxLength: Int) -> String? {
        let bytes = Array(name.utf8)
        guard let first = bytes.first else { return "a \(what) must not be empty" }
        if bytes.count > maxLength { return "a \(what) is at most \(maxLength) characters, this one has \(bytes.count)" }
        guard first >= UInt8(ascii: "a"), first <= UInt8(ascii: "z") else {
            return "a \(what) must start with a lower-case letter ([a-z][a-z0-9_]*)"
        }
        for b in bytes {
            let ok = (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                || b == UInt8(ascii: "_")
            if !ok { return "a \(what) may contain only a-z, 0-9 and '_' ([a-z][a-z0-9_]*)" }
        }
        return nil
    }
}

extension Names {
    /// Why `name` cannot name a plugin instance, or nil: [a-z0-9][a-z0-9_-]*, at most 32 characters.
    public static func pluginNameProblem(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 32 else { return "a plugin name has 1 to 32 characters" }
        func ok(_ c: UInt8, first: Bool) -> Bool {
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || (!first && (c == 0x5F || c == 0x2D))
        }
        guard ok(u[0], first: true), u.dropFirst().allSatisfy({ ok($0, first: false) }) else {
            return "a plugin name may contain only a-z, 0-9, '_' and '-' ([a-z0-9][a-z0-9_-]*)"
        }
        return nil
    }
}

extension String {
    /// `dir` joined with a relative `path`, with `./` and `../` resolved lexically (config paths are root's).
    public func replacingDotSlash(with path: String) -> String {
        var parts = self.split(separator: "/").map(String.init)
        for p in path.split(separator: "/") {
            if p == "." { continue }
            if p == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(String(p))
        }
        return "/" + parts.joined(separator: "/")
    }
}
