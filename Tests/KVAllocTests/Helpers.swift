import KVAlloc
import KVSolver

/// Builds a problem from `(lower, upper, size)` triples, ids b0, b1, ….
func problem(_ triples: [(Int, Int, Int)], capacity: Int? = nil) -> Problem {
    Problem(buffers: triples.enumerated().map { i, t in Buffer(id: "b\(i)", lower: t.0, upper: t.1, size: t.2) }, capacity: capacity)
}

/// The least height of any packing, by GLPK over the disjunctive DSA model (independent of KVAlloc's search).
func optimumByMIP(_ p: Problem) throws -> Int {
    var m = LinearModel(name: "dsa")
    let bound = Double(p.buffers.reduce(0) { $0 + $1.size })
    let height = try m.addVariable("H", upper: bound, kind: .integer)
    var x: [Variable] = []
    for (i, b) in p.buffers.enumerated() {
        let v = try m.addVariable("x\(i)", upper: bound, kind: .integer)
        x.append(v)
        try m.add(v - height <= Double(-b.size))
        if let f = b.fixedOffset { try m.add(1.0 * v == Double(f)) }
    }
    for i in p.buffers.indices {
        for j in p.buffers.indices where j > i && p.buffers[i].livesWith(p.buffers[j]) && p.buffers[i].size > 0 && p.buffers[j].size > 0 {
            // z = 1: i below j; z = 0: j below i.
            let z = try m.addVariable("z\(i)_\(j)", kind: .binary)
            try m.add(x[i] - x[j] + bound * z <= bound - Double(p.buffers[i].size))
            try m.add(x[j] - x[i] - bound * z <= -Double(p.buffers[j].size))
        }
    }
    try m.setObjective(.minimize, 1.0 * height)
    let r = try MIPSolver.solve(m)
    guard r.status == .optimal, let objective = r.objective else { throw MIPFailure() }
    return Int(objective.rounded())
}

struct MIPFailure: Error {}

/// Every combination of the switchable techniques (2⁹ = 512), with one preorder.
func allOptionCombinations() -> [SearchOptions] {
    let names = SearchOptions.techniqueNames
    return (0..<(1 << names.count)).map { mask in
        var options = SearchOptions()
        options.preorders = [Preorder("TWA")!]
        for (k, name) in names.enumerated() where mask & (1 << k) != 0 { options = options.disabling(name)! }
        return options
    }
}
