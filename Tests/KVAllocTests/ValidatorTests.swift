import Testing
import KVAlloc

@Suite("Validator: exact kinds of failure")
struct ValidatorTests {
    let p = problem([(0, 4, 10), (2, 6, 20), (4, 8, 30)])

    @Test("a valid packing passes, with touching lifetimes sharing bytes (half-open)")
    func valid() {
        // b0 [0,4) and b2 [4,8) touch at step 4 but are not live together, so they share bytes 20..<30.
        let s = Solution(offsets: [20, 0, 20], buffers: p.buffers)
        #expect(s.height == 50)
        #expect(Validator.violations(of: s, for: p, capacity: 50).isEmpty)
    }

    @Test("overlap names the two buffers")
    func overlap() {
        let s = Solution(offsets: [0, 5, 40], buffers: p.buffers)
        #expect(Validator.violations(of: s, for: p) == [.overlap("b0", "b1")])
    }

    @Test("over capacity names the buffer and its top")
    func overCapacity() {
        let s = Solution(offsets: [20, 0, 20], buffers: p.buffers)
        #expect(Validator.violations(of: s, for: p, capacity: 49) == [.overCapacity(buffer: "b2", top: 50, capacity: 49)])
    }

    @Test("misalignment, moved pins, negative offsets, wrong heights and counts")
    func otherKinds() {
        var q = p
        q.buffers[1].alignment = 8
        q.buffers[2].fixedOffset = 0
        let s = Solution(offsets: [-1, 12, 16], height: 40)
        #expect(Validator.violations(of: s, for: q) == [
            .negativeOffset(buffer: "b0", offset: -1),
            .misaligned(buffer: "b1", offset: 12, alignment: 8),
            .moved(buffer: "b2", offset: 16, fixed: 0),
            .wrongHeight(stated: 40, actual: 46),
            .overlap("b1", "b2"),
        ])
        #expect(Validator.violations(of: Solution(offsets: [0], height: 10), for: p) == [.wrongCount(expected: 3, got: 1)])
    }

    @Test("zero-sized buffers overlap nothing")
    func zeroSized() {
        let q = problem([(0, 4, 0), (0, 4, 8)])
        #expect(Validator.isValid(Solution(offsets: [0, 0], buffers: q.buffers), for: q, capacity: 8))
    }
}

@Suite("Problem: LOAD and well-formedness")
struct ProblemTests {
    @Test("LOAD is the largest sum live at one step; frees come before allocations at the same step")
    func load() {
        #expect(problem([(0, 4, 10), (2, 6, 20), (4, 8, 30)]).load == 50)
        #expect(problem([(0, 2, 7), (2, 4, 9)]).load == 9)
        #expect(problem([]).load == 0)
    }

    @Test("ill-formed problems are refused with the buffer named")
    func refusals() {
        #expect(throws: ProblemError.duplicateID("b", first: 0, second: 1)) {
            try Problem(buffers: [Buffer(id: "b", lower: 0, upper: 1, size: 1), Buffer(id: "b", lower: 0, upper: 1, size: 1)]).validate()
        }
        #expect(throws: ProblemError.emptyLifetime(index: 0, id: "b0")) { try problem([(3, 3, 1)]).validate() }
        #expect(throws: ProblemError.negativeSize(index: 0, id: "b0")) { try problem([(0, 3, -1)]).validate() }
        #expect(throws: ProblemError.pinnedOverlap("a", "b")) {
            try Problem(buffers: [Buffer(id: "a", lower: 0, upper: 4, size: 8, fixedOffset: 0),
                                  Buffer(id: "b", lower: 2, upper: 6, size: 8, fixedOffset: 4)]).validate()
        }
    }
}
