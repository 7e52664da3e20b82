import KVArtifact
import KVPlanner
import Testing

@Suite("Home tiers: an exact assignment, not first fit")
struct HomeAssignmentTests {
    /// Compute tier, DRAM (10 GB/s to the compute tier), host (1 GB/s to DRAM only: staged).
    static func target(dram: Int, host: Int) -> PlanTarget {
        PlanTarget(name: "t", tiers: [.init(name: "spad", capacity: 1000, alignment: 1), .init(name: "dram", capacity: dram, alignment: 1),
                                      .init(name: "host", capacity: host, alignment: 1)],
                   links: [.init(from: "dram", to: "spad", bandwidth: 1e10, latency: 0), .init(from: "spad", to: "dram", bandwidth: 1e10, latency: 0),
                           .init(from: "host", to: "dram", bandwidth: 1e9, latency: 0), .init(from: "dram", to: "host", bandwidth: 1e9, latency: 0)])
    }

    @Test("the tensor read three times stays near; first fit would have pushed it out")
    func readsDecide() throws {
        let items = [HomeAssignment.Item(bytes: 60, reads: 1, writes: 0), HomeAssignment.Item(bytes: 50, reads: 3, writes: 0)]
        let t = Self.target(dram: 100, host: 1000)
        #expect(try HomeAssignment.assign(items, free: [1000, 100, 1000], target: t).get() == [2, 1])
    }

    @Test("everything in the nearest tier: first fit, nothing to decide")
    func allNear() throws {
        let items = [HomeAssignment.Item(bytes: 60, reads: 1, writes: 0), HomeAssignment.Item(bytes: 40, reads: 3, writes: 0)]
        #expect(try HomeAssignment.assign(items, free: [1000, 100, 1000], target: Self.target(dram: 100, host: 1000)).get() == [1, 1])
    }

    @Test("a packing first fit misses is found; a truly impossible one names the first item first fit could not place")
    func packing() throws {
        let items = [40, 50, 60].map { HomeAssignment.Item(bytes: $0, reads: 1, writes: 0) }
        let t = Self.target(dram: 100, host: 50)
        #expect(try HomeAssignment.assign(items, free: [1000, 100, 50], target: t).get() == [1, 2, 1])
        let tooBig = [40, 50, 70].map { HomeAssignment.Item(bytes: $0, reads: 1, writes: 0) }
        #expect(throws: HomeAssignment.Failure(item: 2)) { try HomeAssignment.assign(tooBig, free: [1000, 100, 50], target: t).get() }
    }
}
