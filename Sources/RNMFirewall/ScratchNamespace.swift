internal import CRNMShims
internal import Glibc
import Synchronization

/// Runs a body on a new thread that first moves into its own, empty network namespace (unshare of the
/// network namespace applies to the calling thread only). The namespace disappears with the thread. Used to
/// see what nft makes of a table without touching the live one.
enum ScratchNamespace {
    // @unchecked Sendable is safe: `result` is written by the worker thread before it exits and read by the
    // caller only after pthread_join; nothing else touches a Job.
    private final class Job: @unchecked Sendable {
        let body: () throws(NftScriptError) -> String
        var result: Result<String, NftScriptError> = .failure(NftScriptError("not run"))
        init(_ body: @escaping () throws(NftScriptError) -> String) { self.body = body }
    }

    static func run(_ body: @escaping () throws(NftScriptError) -> String) throws(NftScriptError) -> String {
        let job = Job(body)
        let arg = Unmanaged.passRetained(job).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, 2 << 20)
        var tid = pthread_t()
        let rc = pthread_create(&tid, &attr, { raw in
            let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
            if RNM_unshare_netns() != 0 {
                job.result = .failure(NftScriptError(
                    "cannot create a scratch network namespace (needs CAP_SYS_ADMIN): \(String(cString: strerror(errno)))"))
                return nil
            }
            do throws(NftScriptError) {
                job.result = .success(try job.body())
            } catch {
                job.result = .failure(error)
            }
            return nil
        }, arg)
        guard rc == 0 else {
            Unmanaged<Job>.fromOpaque(arg).release()
            throw NftScriptError("pthread_create: \(String(cString: strerror(rc)))")
        }
        pthread_join(tid, nil)
        return try job.result.get()
    }
}
