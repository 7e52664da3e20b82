import KVArtifact
import KVGraph

/// Tiling: split ops whose working set exceeds the compute tier into tiles that fit.
///
/// A tensor is split at most once, into `k` contiguous parts (values named `name#j`); a step
/// tiled `k` ways reads and writes part `j` of every tensor split `k` ways along its axis and the
/// whole of every other operand. Matmul splits its weight and result along the output columns
/// (the input row is read whole by every tile); elementwise ops split every operand of the
/// result's length along that length. The smallest `k` whose largest tile fits is chosen, so
/// tiles are as big as the tier allows (fewer steps, fewer reloads of shared operands). Ops of
/// other kinds, and ops whose smallest legal tile does not fit, are refused with the bytes they
/// need. An embedding lookup reads only the gathered rows of its table (a value of its own,
/// substituted for the table by the problem builder), never the whole table. Not yet: attention along KV tokens, matmul along K, convolutions along rows.
struct TilingPass {
    /// Tile counts per op (1 = untiled) and the parts of each tensor (its value indices).
    var tiles: [Int]
    var parts: [[Int]]
    var values: [Value]
    /// Per op, the tensors it splits along its tile axis.
    var splitTensors: [Set<Int>]
    /// Per op, operands read through another value (an embedding table through its gathered rows).
    var substitutions: [Int: [Int: Int]]

    /// Decides the tiles of every op of `graph` (in order) for a compute tier of `capacity` bytes.
    init(graph: Graph, values tensorValues: [Value], substitutions: [Int: [Int: Int]], capacity: Int,
         alignment: Int) throws(PlanningError) {
        values = tensorValues
        self.substitutions = substitutions
        parts = tensorValues.indices.map { [$0] }
        tiles = Array(repeating: 1, count: graph.ops.count)
        splitTensors = Array(repeating: [], count: graph.ops.count)
        func aligned(_ b: Int) -> Int { (b + alignment - 1) / alignment * alignment }
        func bytes(_ t: Int) -> Int { parts[t].reduce(0) { $0 + aligned(values[$1].bytes) } }

        for opID in graph.order {
            let op = graph.ops[opID]
            let swap = substitutions[opID] ?? [:]
            let touched = Array(Set((op.operands + op.results + op.updates).map { swap[$0] ?? $0 })).sorted()
            let whole = touched.reduce(0) { $0 + bytes($1) }
            guard whole > capacity else { continue }
            // The tensors this op can split, with their length along the tile axis.
            var axis: [Int: Int] = [:]
            switch op.kind {
            case .matmul:
                guard op.operands.count >= 2, let y = op.results.first else { break }
                let w = op.operands[1], shape = graph.tensors[w].shape.sizes
                let transposed = op.attribute("transpose_b") == .bool(true)
                let columns = transposed ? shape[shape.count - 2] : shape[shape.count - 1]
                if graph.tensors[w].shape.count == 2 { axis[w] = columns }
                axis[y] = columns
                if op.operands.count >= 3 { axis[op.operands[2]] = columns }  // bias
            case .add, .mul, .silu, .gelu, .relu, .siluMul:
                guard let y = op.results.first else { break }
                let length = graph.tensors[y].elementCount
                for t in touched where graph.tensors[t].elementCount == length { axis[t] = length }
            default:
                break
            }
            guard !axis.isEmpty else {
                throw PlanningError("op '\(op.kind.rawValue)' producing '\(graph.tensors[op.results.first ?? 0].name)' needs \(whole) B at once, more than the \(capacity) B compute tier, and kvplan cannot tile \(op.kind.rawValue) yet")
            }
            // The smallest tile count whose largest tile fits; tensors already split another way are read whole.
            let maxK = axis.values.min()!
            var chosen: Int?
            var k = 2
            while k <= maxK {
                var need = 0
                for t in touched {
                    if let n = axis[t], parts[t].count == 1 || parts[t].count == k {
                        let total = parts[t].reduce(0) { $0 + values[$1].bytes }
                        need += aligned((total + k - 1) / k + (n % k == 0 ? 0 : total / n + 1))
                    } else {
                        need += bytes(t)
                    }
                }
                if need <= capacity { chosen = k; break }
                k = k < 64 ? k + 1 : k + k / 8
            }
            guard let k = chosen else {
                throw PlanningError("op '\(op.kind.rawValue)' producing '\(graph.tensors[op.results.first ?? 0].name)' needs \(whole) B at once; even its smallest legal tile does not fit the \(capacity) B compute tier")
            }
            tiles[opID] = k
            for (t, n) in axis where parts[t].count == 1 || parts[t].count == k {
                if parts[t].count == 1 { split(t, into: k, length: n) }
                splitTensors[opID].insert(t)
            }
        }
    }

    /// Replaces tensor `t`'s single value by `k` parts along a length of `n` units.
    private mutating func split(_ t: Int, into k: Int, length n: Int) {
        let base = values[parts[t][0]]
        var made: [Int] = []
        for j in 0..<k {
            let lo = n * j / k, hi = n * (j + 1) / k
            let bytes = base.bytes * hi / n - base.bytes * lo / n
            var v = base
            v.name = "\(base.name)#\(j)"
            v.bytes = bytes
            made.append(values.count)
            values.append(v)
        }
        parts[t] = made
    }

    /// The values op `opID`'s tile `j` touches for `tensors`.
    func values(of tensors: [Int], op opID: Int, tile j: Int) -> [Int] {
        let swap = substitutions[opID] ?? [:]
        return tensors.map { swap[$0] ?? $0 }.flatMap { t in splitTensors[opID].contains(t) ? [parts[t][j]] : parts[t] }
    }
}
