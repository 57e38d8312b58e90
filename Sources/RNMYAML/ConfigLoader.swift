internal import Glibc
public import RNMCore

/// Reads, parses and validates a config file: the one entry point for `rnmd --check`, start and reload.
public enum ConfigLoader {
    /// Reads the config and the rule templates it lists (relative to the config file's directory).
    /// A template that cannot be read is reported at its `rules:` entry.
    public static func load(path: String, limits: YAMLLimits = YAMLLimits()) throws(ConfigError) -> Config {
        let bytes = try readFile(path: path, maxBytes: limits.maxBytes)
        let root = try YAMLParser.parse(bytes, file: path, limits: limits)
        let full = absolute(path)
        let dir = String(full[..<(full.lastIndex(of: "/") ?? full.startIndex)])
        var config = try ConfigDecoder.decode(root, file: path, directory: dir.isEmpty ? "/" : dir)
        var issues: [ConfigIssue] = []
        for i in config.rules.indices {
            let t = config.rules[i]
            do {
                let bytes = try readFile(path: t.path, maxBytes: templateMaxBytes)
                guard let text = String(validating: bytes, as: UTF8.self), !bytes.contains(0) else {
                    issues.append(ConfigIssue(file: path, mark: t.mark, path: "rules[\(i)]",
                        message: "\(t.given): not UTF-8 text"))
                    continue
                }
                config.rules[i].text = text
            } catch {
                let why = error.issues.first?.message ?? "cannot read"
                issues.append(ConfigIssue(file: path, mark: t.mark, path: "rules[\(i)]", message: "\(t.given): \(why)"))
            }
        }
        if !issues.isEmpty { throw ConfigError(issues) }
        return config
    }

    /// A rule template is at most this large.
    public static let templateMaxBytes = 4 << 20

    /// `path` made absolute against the working directory (template paths are relative to the config's
    /// directory, which must not depend on where rnmd was started from later).
    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else { return path }
        let cwd = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return cwd.replacingDotSlash(with: path)
    }

    /// Reads a regular file of at most `maxBytes` bytes.
    public static func readFile(path: String, maxBytes: Int) throws(ConfigError) -> [UInt8] {
        func fail(_ message: String) -> ConfigError {
            ConfigError([ConfigIssue(file: path, mark: SourceMark(line: 0, column: 0), path: "", message: message)])
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw fail("not a regular file") }
        guard Int(st.st_size) <= maxBytes else {
            throw fail("the file has \(st.st_size) bytes; a config is at most \(maxBytes) bytes")
        }
        var out: [UInt8] = []
        out.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > maxBytes { throw fail("the file is larger than \(maxBytes) bytes") }
        }
        return out
    }
}
