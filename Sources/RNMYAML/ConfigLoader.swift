internal import Glibc
public import RNMCore

/// Reads, parses and validates a config file: the one entry point for `rnmd --check`, start and reload.
public enum ConfigLoader {
    public static func load(path: String, limits: YAMLLimits = YAMLLimits()) throws(ConfigError) -> Config {
        let bytes = try readFile(path: path, maxBytes: limits.maxBytes)
        let root = try YAMLParser.parse(bytes, file: path, limits: limits)
        return try ConfigDecoder.decode(root, file: path)
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
