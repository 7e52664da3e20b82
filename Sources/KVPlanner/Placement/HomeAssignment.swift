import KVArtifact
import KVSolver

/// Home tiers for persistent tensors (weights, inputs, KV caches, outputs), decided exactly.
///
/// Rationale. When the first backing tier (HBM or DRAM) cannot hold every persistent tensor,
/// which ones live further out (host memory) is a decision, as in offloading systems (FlexGen,
/// DeepSpeed-Inference). A tensor's home costs the time its traffic takes between there and the
/// compute tier: bytes × (reads × the route's seconds per byte inward + writes × outward), each hop
/// of a staged route counted. Choosing one home per tensor under every tier's capacity to
/// minimise the sum is a generalised assignment problem; GLPK solves it exactly (a 7B model has a
/// few hundred tensors). First fit in order of first use is the warm start and the fallback when
/// the solver stops without an answer; among equal-cost homes first fit's choice is kept (a 1e-9
/// relative preference), so the assignment is deterministic and moves nothing without a reason.
public enum HomeAssignment {
    /// A persistent tensor to be homed.
    public struct Item: Sendable {
        /// Its size.
        public var bytes: Int
        /// Ops reading it (each brings it to the compute tier once).
        public var reads: Int
        /// Times it is written back whole (outputs).
        public var writes: Int
        public init(bytes: Int, reads: Int, writes: Int) {
            self.bytes = bytes
            self.reads = reads
            self.writes = writes
        }
    }

    /// The home tier of every item (tiers 1..<count), or the first item first fit could not place
    /// when the program finds no assignment either.
    public static func assign(_ items: [Item], free: [Int], target: PlanTarget, timeLimit: Double = 5) -> Result<[Int], Failure> {
        // First fit, in the given order (first use).
        var left = free
        var firstFit: [Int] = []
        var unplaced: Int?  // the first item first fit cannot place (the program may still fit it)
        for (k, item) in items.enumerated() {
            let tier = (1..<free.count).first(where: { left[$0] >= item.bytes })
            if tier == nil, unplaced == nil { unplaced = k }
            left[tier ?? 1] -= tier == nil ? 0 : item.bytes
            firstFit.append(tier ?? 0)
        }
        // Nothing to decide when everything fits in the nearest backing tier.
        if unplaced == nil, !firstFit.contains(where: { $0 != 1 }) { return .success(firstFit) }
        let fallback: Result<[Int], Failure> = unplaced.map { .failure(Failure(item: $0)) } ?? .success(firstFit)
        let homes = Array(1..<free.count)
        func secondsPerByte(from a: Int, to b: Int) -> Double {
            guard a != b else { return 0 }
            guard let route = target.route(from: a, to: b) else { return .infinity }
            let hops = route.via.map { [(a, $0), ($0, b)] } ?? [(a, b)]
            return hops.reduce(0) { $0 + 1 / (target.link($1.0, $1.1)?.bandwidth ?? .infinity) }
        }
        var m = LinearModel(name: "home-tiers")
        var u: [[Variable?]] = []
        var warm: [Double] = []
        var objective = LinearExpression()
        do {
            for (k, item) in items.enumerated() {
                var row: [Variable?] = []
                for h in homes {
                    let cost = Double(item.bytes) * (Double(item.reads) * secondsPerByte(from: h, to: 0)
                                                     + Double(item.writes) * secondsPerByte(from: 0, to: h))
                    guard cost.isFinite, item.bytes <= free[h] else { row.append(nil); continue }
                    let v = try m.addVariable("u[\(k),\(h)]", lower: 0, upper: 1, kind: .binary)
                    warm.append(firstFit[k] == h ? 1 : 0)
                    // Microseconds; first fit's home is preferred among equal costs.
                    objective = objective + (cost * 1e6 * (firstFit[k] == h ? 1 : 1 + 1e-9) + (firstFit[k] == h ? 0 : 1e-9)) * v
                    row.append(v)
                }
                u.append(row)
                try m.add(LinearExpression(row.compactMap { $0 }.map { ($0, 1) }) == 1, name: "one-home[\(k)]")
            }
            for (j, h) in homes.enumerated() {
                let terms = items.indices.compactMap { k in u[k][j].map { ($0, Double(items[k].bytes)) } }
                try m.add(LinearExpression(terms) <= Double(free[h]), name: "capacity[\(h)]")
            }
            try m.setObjective(.minimize, objective)
            let result = try MIPSolver.solve(m, options: SolveOptions(timeLimit: timeLimit, warmStart: unplaced == nil && m.isFeasible(warm) ? warm : nil))
            guard let value = result.objective, result.status == .optimal || result.status == .feasible,
                  unplaced != nil || value <= m.objectiveValue(at: warm) else { return fallback }
            return .success(items.indices.map { k in homes[u[k].firstIndex { $0.map { result[$0] > 0.5 } ?? false }!] })
        } catch {
            return fallback
        }
    }

    /// The item (by index) that fits in no backing tier.
    public struct Failure: Error, Equatable {
        public var item: Int
        public init(item: Int) { self.item = item }
    }
}
