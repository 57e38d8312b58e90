@testable import RNMDaemon
import Synchronization
import Testing

@Suite struct EventBusTests {
    @Test func next_takesEverythingQueued() {
        let bus = EventBus<Int>(capacity: 100)
        for i in 0..<10 { bus.send(i) }
        #expect(bus.next() == Array(0..<10))
        #expect(bus.next(timeout: .zero) == [])
    }

    @Test func fullBus_blocksTheProducerThread_untilTheConsumerDrains() async {
        let bus = EventBus<Int>(capacity: 10)
        let sent = Atomic<Int>(0)
        let done = Completion()
        Threads.detach(name: "test-producer") {
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
            received += bus.next(timeout: .seconds(1)) ?? []
        }
        #expect(done.wait(timeout: .seconds(1)))
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
        let returned = Completion()
        let result = Atomic<Bool>(true)
        Threads.detach(name: "test-producer") {
            result.store(bus.send(1), ordering: .relaxed)
            returned.signal()
        }
        try? await Task.sleep(for: .milliseconds(20))
        bus.close()
        #expect(returned.wait(timeout: .seconds(1)))
        #expect(result.load(ordering: .relaxed) == false)
        #expect(bus.next() == [0])
        #expect(bus.next() == nil)
    }

    @Test func waitingConsumer_isWokenBySend() {
        let bus = EventBus<Int>(capacity: 10)
        Threads.detach(name: "test-producer") {
            bus.send(7)
        }
        #expect(bus.next(timeout: .seconds(2)) == [7])
    }

    @Test func timeout_returnsEmpty_andPauseSeesClose() {
        let bus = EventBus<Int>(capacity: 10)
        let t0 = ContinuousClock.now
        #expect(bus.next(timeout: .milliseconds(30)) == [])
        #expect(ContinuousClock.now - t0 >= .milliseconds(30))
        #expect(bus.pause(.milliseconds(10)))
        bus.close()
        #expect(!bus.pause(.seconds(5)))
    }
}
