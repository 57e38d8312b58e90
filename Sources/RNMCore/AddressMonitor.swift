/// The seam between the daemon and whatever reports links and addresses: RNMNetlink's `RouteMonitor` for
/// real, `ScriptedMonitor` (RNMTesting) in tests.
public protocol AddressMonitor: Sendable {
    /// Blocks on the calling (dedicated) thread until `stop()`, handing everything it learns to `sink`.
    func run(_ sink: (MonitorOutput) -> Void) throws
    /// Makes `run` return soon. Safe from any thread.
    func stop()
}

/// What the monitor hands to its sink.
public enum MonitorOutput: Sendable {
    /// Incremental changes, in kernel order (one recv's worth at a time).
    case events([NetEvent])
    /// A full dump: at start (`overrun == false`) or after the kernel dropped notifications (ENOBUFS).
    /// `since` is when the monitor noticed the overrun (or started), so the reconciler can time the resync.
    case snapshot(links: [Link], addresses: [Address], overrun: Bool, since: ContinuousClock.Instant)
}

