import Glibc

/// Kernel bytes recorded into Fixtures/*.hex: '# command' lines (`ip …`, or `rtnl …` for requests the
/// recorder sent itself), each followed by one 'nlmsg_type hex' line per message it produced.
enum Recording {
    static func load(_ name: String) -> [(command: String, messages: [[UInt8]])] {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast()
        let path = parts.joined(separator: "/") + "/Fixtures/" + name
        let fd = open(path, O_RDONLY)
        precondition(fd >= 0, "cannot open \(path)")
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        var out: [(String, [[UInt8]])] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("# ip ") || line.hasPrefix("# rtnl ") {
                out.append((String(line.dropFirst(2)), []))
            } else if !line.hasPrefix("#"), let hex = line.split(separator: " ").last, !out.isEmpty {
                out[out.count - 1].1.append(hexBytes(hex))
            }
        }
        return out
    }

    static func hexBytes(_ s: Substring) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }
}
