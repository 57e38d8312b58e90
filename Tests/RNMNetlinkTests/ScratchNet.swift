import Glibc
import RNMCore
import Synchronization

/// A fresh, empty network namespace for one test, never the host's.
///
/// `unshare(CLONE_NEWNET)` and `setns` act on the calling thread only, so nothing here moves the test's own
/// thread: a short-lived thread creates the namespace and keeps a file descriptor to it, and `run`/`spawn`
/// run closures on new threads that enter it first. Sockets stay in the namespace they were created in, so
/// a `NetlinkConfigurator` made inside `run` can be used from the test thread afterwards; what resolves the
/// namespace per call (RouteMonitor's sockets, /proc/sys) must run inside. The namespace goes away with the
/// descriptor and the last socket in it.
final class ScratchNet: Sendable {
    private let fd: Int32

    /// unshare and setns are not in Swift's Glibc module (they need _GNU_SOURCE): looked up at run time.
    private typealias NamespaceCall = @convention(c) (Int32, Int32) -> Int32
    private static let cloneNewNet: Int32 = 0x4000_0000
    // nonisolated(unsafe) is safe: both are immutable C function pointers resolved once at first use; calling
    // them from any thread is what libc allows.
    private nonisolated(unsafe) static let setnsCall = unsafeBitCast(dlsym(nil, "setns"), to: NamespaceCall.self)
    // nonisolated(unsafe) is safe: as above, an immutable C function pointer.
    private nonisolated(unsafe) static let unshareCall = unsafeBitCast(dlsym(nil, "unshare"), to: (@convention(c) (Int32) -> Int32).self)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init() throws {
        let made = Self.onNewThread(enter: nil) { () throws -> Int32 in
            guard Self.unshareCall(Self.cloneNewNet) == 0 else {
                throw Failure(description: "unshare(CLONE_NEWNET): \(String(cString: strerror(errno))) (run the tests as root)")
            }
            let fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw Failure(description: "open /proc/thread-self/ns/net: \(String(cString: strerror(errno)))") }
            return fd
        }
        fd = try made.get()
    }

    deinit { close(fd) }

    /// Runs `body` on a new thread inside the namespace and returns what it returned.
    func run<T>(_ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { escapable in
            try Self.onNewThread(enter: fd, escapable).get()
        }
    }

    /// Runs a shell command inside the namespace (nsenter on the descriptor) and returns its output.
    func shell(_ command: String) throws -> String {
        guard let f = popen("nsenter --net=/proc/\(getpid())/fd/\(fd) \(command) 2>&1", "r") else {
            throw Failure(description: "popen: \(String(cString: strerror(errno)))")
        }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        let status = pclose(f)
        let text = String(decoding: out, as: UTF8.self)
        guard status == 0 else { throw Failure(description: "\(command): exit status \(status): \(text)") }
        return text
    }

    /// Starts `body` on a new thread inside the namespace; `join()` waits for it.
    func spawn(_ body: @escaping @Sendable () -> Void) throws -> Joinable {
        let job = Job(enter: fd, work: body)
        return Joinable(thread: try job.start())
    }

    // @unchecked Sendable is safe: a pthread_t is an opaque id, copied by value; only join() uses it, once.
    struct Joinable: @unchecked Sendable {
        let thread: pthread_t
        func join() { pthread_join(thread, nil) }
    }

    // @unchecked Sendable is safe: a Job is handed to one new thread, which alone runs `work` and writes
    // `failure`; the creator reads `failure` only after pthread_join.
    private final class Job: @unchecked Sendable {
        let enter: Int32?
        let work: () -> Void
        var failure: String?
        init(enter: Int32?, work: @escaping () -> Void) {
            self.enter = enter
            self.work = work
        }

        func start() throws -> pthread_t {
            let arg = Unmanaged.passRetained(self).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                if let ns = job.enter, ScratchNet.setnsCall(ns, ScratchNet.cloneNewNet) != 0 {
                    job.failure = "setns: \(String(cString: strerror(errno)))"
                    return nil
                }
                job.work()
                return nil
            }, arg)
            guard rc == 0 else {
                Unmanaged<Job>.fromOpaque(arg).release()
                throw Failure(description: "pthread_create: \(String(cString: strerror(rc)))")
            }
            return tid
        }
    }

    private final class Box<T> {
        var result: Result<T, any Error> = .failure(Failure(description: "not run"))
    }

    private static func onNewThread<T>(enter: Int32?, _ body: @escaping () throws -> T) -> Result<T, any Error> {
        let box = Box<T>()
        let job = Job(enter: enter) { box.result = Result { try body() } }
        do {
            let tid = try job.start()
            pthread_join(tid, nil)
            if let f = job.failure { return .failure(Failure(description: f)) }
            return box.result
        } catch {
            return .failure(error)
        }
    }
}

/// What a RouteMonitor handed to its sink, and a gate that can hold the sink (to overflow the socket).
final class MonitorLog: Sendable {
    private let outputs = Mutex<[MonitorOutput]>([])
    private let held = Atomic<Bool>(false)

    func sink(_ output: MonitorOutput) {
        while held.load(ordering: .acquiring) {
            var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&ts, nil)
        }
        outputs.withLock { $0.append(output) }
    }

    func hold(_ on: Bool) { held.store(on, ordering: .releasing) }

    var all: [MonitorOutput] { outputs.withLock { $0 } }

    /// Every event handed over in `.events`, in order.
    var events: [NetEvent] {
        all.flatMap { o -> [NetEvent] in
            if case .events(let e) = o { e } else { [] }
        }
    }

    /// Polls until `predicate` holds (true) or `seconds` pass (false).
    func wait(seconds: Double = 5, _ predicate: (MonitorLog) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if predicate(self) { return true }
            var ts = timespec(tv_sec: 0, tv_nsec: 2_000_000)
            nanosleep(&ts, nil)
        }
        return predicate(self)
    }
}
