internal import Glibc

/// Manual entries on disk: `<state_dir>/manual.json`, replaced atomically (temp file, fsync, rename, fsync of
/// the directory), so a crash at any point leaves either the old or the new file, never a torn one.
package struct FileStore: ManualEntryStore {
    package let directory: String
    package var path: String { directory + "/manual.json" }

    package init(directory: String) { self.directory = directory }

    package struct Failure: Error, CustomStringConvertible {
        package var description: String
    }

    private func fail(_ what: String) -> Failure { Failure(description: "\(what): \(String(cString: strerror(errno)))") }

    package func load() throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw fail("open \(path)")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("read \(path)")
            }
            if n == 0 { return out }
            out += buf[0..<n]
            if out.count > 64 << 20 { throw Failure(description: "\(path) is larger than 64 MiB") }
        }
    }

    package func save(_ bytes: [UInt8]) throws {
        if case .failure(let e) = ControlServer.makeDirectories(directory, mode: 0o750, group: nil) {
            throw Failure(description: e.description)
        }
        let tmp = directory + "/.manual.json.tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o640)
        guard fd >= 0 else { throw fail("create \(tmp)") }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = fail("write \(tmp)")
                close(fd)
                throw e
            }
            off += n
        }
        guard fsync(fd) == 0 else {
            let e = fail("fsync \(tmp)")
            close(fd)
            throw e
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw fail("rename \(tmp)") }
        ok = true
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}
