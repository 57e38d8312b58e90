import RNMCore
import RNMYAML
import Testing

/// Fixtures live next to this file: `NAME.yaml` and, for invalid ones, `NAME.err` with the exact messages
/// (`FILE` stands for the fixture's path).
enum Fixture {
    static let directory: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast()
        return parts.joined(separator: "/") + "/Fixtures"
    }()

    static func path(_ name: String) -> String { "\(directory)/\(name)" }

    static func read(_ name: String) -> String? {
        guard let bytes = try? ConfigLoader.readFile(path: path(name), maxBytes: 1 << 20) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The loader's messages for a fixture, one per line, with the path replaced by FILE.
    static func errors(_ name: String) -> String {
        do {
            _ = try ConfigLoader.load(path: path(name))
            return "(valid)"
        } catch {
            return error.issues.map { $0.description.replacingOccurrences(of: path(name), with: "FILE") }
                .joined(separator: "\n")
        }
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Index>? {
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(target) { return i..<index(i, offsetBy: target.count) }
            i = index(after: i)
        }
        return nil
    }
}

@Suite struct ConfigFixtureTests {
    static let invalid = [
        "empty", "comment-only", "syntax", "types", "unknown", "duplicate", "names", "addresses", "two-docs", "tags",
        "not-mapping", "missing-interfaces", "escapes", "bad-utf8", "sets", "rules", "rules-kind", "templates", "plugins", "router-errors",
    ]

    @Test(arguments: invalid)
    func invalidFixture_reportsExactMessages(_ name: String) throws {
        let expected = try #require(Fixture.read("\(name).err"), "missing \(name).err")
        #expect(Fixture.errors("\(name).yaml") == expected.trimmingSuffixNewlines())
    }
}

extension String {
    func trimmingSuffixNewlines() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
