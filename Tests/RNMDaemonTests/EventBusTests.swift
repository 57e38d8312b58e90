import Dispatch
@testable import RNMDaemon
import Synchronization
import Testing

@Suite struct EventBusTests {
    @Test func next_takesEverythingQueued() async {
        let bus = EventBus<Int>(capacity: 100)
        for i in 0..<10 { bus.send(i) }
        #expect(await bus.next() == Array(0..<10))
        #expect(bus.drainNow() == [])
    }

    @Test func fullBus_blocksTheProducerThread_untilTheConsumerDrains() async {
        let bus = EventBus<Int>(capacity: 10)
        let sent = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        Thread.detachForTest {
            for i in 0..<25 {
                bus.send(i)
                sent.add(1, ordering: .relaxed)
            }
            done.signal()
        }
        #expect(await eventually { sent.load(ordering: .relaxed) == 10 })
        try? await Task.sleep(for: .milliseconds(30))
        #expect(sent.load(ordering: .relaxed) == 10, "the 11th send must block")
        var received: [Int] = []
        while received.count < 25 {
            received += await bus.next() ?? []
        }
        done.wait()
        #expect(received == Array(0..<25))
        #expect(bus.highWater <= 10)
    }

    @Test func weightlessElements_neverBlock() {
        let bus = EventBus<Int>(capacity: 1)
        bus.send(1)
        for i in 0..<100 { #expect(bus.send(i, weight: 0)) }
    }

    @Test func close_wakesTheConsumerAndBlockedProducers() async {
        let bus = EventBus<Int>(capacity: 1)
        bus.send(0)
        let returned = DispatchSemaphore(value: 0)
        let result = Atomic<Bool>(true)
        Thread.detachForTest {
            result.store(bus.send(1), ordering: .relaxed)
            returned.signal()
        }
        try? await Task.sleep(for: .milliseconds(20))
        bus.close()
        returned.wait()
        #expect(result.load(ordering: .relaxed) == false)
        #expect(await bus.next() == [0])
        #expect(await bus.next() == nil)
    }

    @Test func waitingConsumer_isWokenBySend() async {
        let bus = EventBus<Int>(capacity: 10)
        async let got = bus.next()
        try? await Task.sleep(for: .milliseconds(20))
        bus.send(7)
        #expect(await got == [7])
    }

    @Test func cancellation_endsAWaitingNext() async {
        let bus = EventBus<Int>(capacity: 10)
        let task = Task { await bus.next() }
        try? await Task.sleep(for: .milliseconds(20))
        task.cancel()
        #expect(await task.value == nil)
    }
}

enum Thread {
    static func detachForTest(_ body: @escaping @Sendable () -> Void) {
        Threads.detach(name: "test-producer", body)
    }
}
