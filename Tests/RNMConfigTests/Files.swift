import Glibc

func getpidValue() -> Int32 { getpid() }

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw POSIXFailure(code: errno) }
    defer { close(fd) }
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        guard n > 0 else { throw POSIXFailure(code: errno) }
        off += n
    }
}

func removeFile(_ path: String) { unlink(path) }

struct POSIXFailure: Error { var code: Int32 }
