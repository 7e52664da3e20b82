// GraphSummary: the numbers `kvplan check` reports.
//
// Parameters and weight bytes are sums over weight tensors (a tied embedding
// is one tensor, so it counts once). KV figures come from cache tensors,
// grouped into layers by their loop index (`k_cache[3]` → layer 3); a cache's
// axis 1 is its token axis. The activation peak is the LOAD lower bound of
// any memory plan for the operator order: the most bytes of transient
// tensors (inputs, activations, outputs) live at one step, where a tensor
// is live from the step that produces it (step 0 for inputs) through its
// last reader (the last step for outputs), operands and results of a step
// counting together.

/// Summary statistics of a graph.
public struct GraphSummary: Codable, Sendable, Equatable {
    /// A symbolic dimension binding.
    public struct DimensionValue: Codable, Sendable, Equatable {
        public var name: String
        public var value: Int
    }
    /// Weight totals for one dtype.
    public struct WeightGroup: Codable, Sendable, Equatable {
        public var dtype: String
        public var tensors: Int
        public var parameters: Int
        public var bytes: Int
    }
    /// KV cache figures of one layer.
    public struct KVLayer: Codable, Sendable, Equatable {
        /// Layer label (the loop index, or the cache name when it has none).
        public var layer: String
        /// The cache tensors of the layer.
        public var caches: [String]
        /// Bytes one token occupies in this layer's caches, per sequence.
        public var bytesPerToken: Double
        /// Token capacity (axis 1 of the caches; the smallest if they differ).
        public var tokens: Int
        /// Exact bytes of the layer's caches.
        public var bytes: Int
    }
    /// KV cache totals.
    public struct KVSummary: Codable, Sendable, Equatable {
        public var layers: [KVLayer]
        /// Σ over layers of bytes per token.
        public var bytesPerToken: Double
        /// Exact bytes of all caches at the bound context and batch.
        public var totalBytes: Int
    }
    /// An op singled out (largest working set, activation peak).
    public struct OpReference: Codable, Sendable, Equatable {
        /// Step in the operator order.
        public var step: Int
        /// Op kind.
        public var kind: String
        /// Name of its first result.
        public var result: String
        /// `line:col` of the call.
        public var location: String
        /// The bytes in question.
        public var bytes: Int
    }

    public var graph: String
    public var dimensions: [DimensionValue]
    public var ops: Int
    public var opsByKind: [String: Int]
    public var tensors: Int
    public var tensorsByKind: [String: Int]
    public var parameters: Int
    public var weightBytes: Int
    public var weightsByDType: [WeightGroup]
    public var kvCache: KVSummary
    public var flops: Int
    /// The op whose operands and results together are largest.
    public var largestWorkingSet: OpReference?
    /// Peak bytes of live transient tensors over the operator order (LOAD).
    public var peakActivations: OpReference?
    /// Ops the runtime cannot execute (opaque).
    public var planningOnlyOps: Int
    public var warnings: Int

    /// Computes the summary of `graph`.
    public init(_ graph: Graph, warnings: Int = 0) {
        self.graph = graph.name
        dimensions = graph.dimensions.map { DimensionValue(name: $0.name, value: $0.value) }
        ops = graph.ops.count
        opsByKind = Dictionary(grouping: graph.ops, by: { $0.kind.rawValue }).mapValues(\.count)
        tensors = graph.tensors.count
        tensorsByKind = Dictionary(grouping: graph.tensors, by: { $0.kind.rawValue }).mapValues(\.count)
        let weights = graph.tensors.filter { $0.kind == .weight }
        parameters = weights.reduce(0) { $0 + $1.elementCount }
        weightBytes = weights.reduce(0) { $0 + $1.byteSize }
        weightsByDType = Dictionary(grouping: weights, by: \.dtype).sorted { $0.key < $1.key }.map {
            WeightGroup(dtype: $0.key.rawValue, tensors: $0.value.count,
                        parameters: $0.value.reduce(0) { $0 + $1.elementCount },
                        bytes: $0.value.reduce(0) { $0 + $1.byteSize })
        }
        kvCache = GraphSummary.kv(graph)
        flops = graph.ops.reduce(0) { $0 &+ $1.flops }
        planningOnlyOps = graph.ops.filter { $0.kind.isPlanningOnly }.count
        self.warnings = warnings
        largestWorkingSet = nil
        peakActivations = nil
        largestWorkingSet = GraphSummary.largestOp(graph)
        peakActivations = GraphSummary.activationPeak(graph)
    }

    static func kv(_ graph: Graph) -> KVSummary {
        var groups: [String: [Tensor]] = [:]
        var order: [String] = []
        for t in graph.tensors where t.kind == .cache {
            let key: String
            if let open = t.name.firstIndex(of: "[") {
                key = String(t.name[t.name.index(after: open)...].dropLast())
            } else { key = t.name }
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(t)
        }
        let layers = order.map { key -> KVLayer in
            let caches = groups[key]!
            let bitsPerToken = caches.reduce(0) { acc, t in
                acc + t.shape.dropFirst(2).reduce(1) { $0 * $1.size } * t.dtype.bits
            }
            return KVLayer(layer: key, caches: caches.map(\.name), bytesPerToken: Double(bitsPerToken) / 8,
                           tokens: caches.map { $0.shape[1].size }.min()!,
                           bytes: caches.reduce(0) { $0 + $1.byteSize })
        }
        return KVSummary(layers: layers, bytesPerToken: layers.reduce(0) { $0 + $1.bytesPerToken },
                         totalBytes: layers.reduce(0) { $0 + $1.bytes })
    }

    static func reference(_ graph: Graph, step: Int, bytes: Int) -> OpReference {
        let op = graph.ops[graph.order[step]]
        return OpReference(step: step, kind: op.kind.rawValue,
                           result: op.results.first.map { graph.tensors[$0].name } ?? "",
                           location: op.location.description, bytes: bytes)
    }

    static func largestOp(_ graph: Graph) -> OpReference? {
        var best: (Int, Int)?
        for (step, id) in graph.order.enumerated() {
            let op = graph.ops[id]
            let bytes = Set(op.operands + op.results).reduce(0) { $0 &+ graph.tensors[$1].byteSize }
            if best == nil || bytes > best!.1 { best = (step, bytes) }
        }
        return best.map { reference(graph, step: $0.0, bytes: $0.1) }
    }

    /// Live intervals [first, last] over steps of transient tensors.
    public static func liveIntervals(_ graph: Graph) -> [TensorID: ClosedRange<Int>] {
        let steps = graph.order.count
        guard steps > 0 else { return [:] }
        var first: [TensorID: Int] = [:]
        var last: [TensorID: Int] = [:]
        for (step, id) in graph.order.enumerated() {
            let op = graph.ops[id]
            for r in op.results { first[r] = step; last[r] = max(last[r] ?? step, step) }
            for o in op.operands where !graph.tensors[o].isPersistent {
                if graph.tensors[o].kind == .input { first[o] = 0 }
                last[o] = max(last[o] ?? step, step)
            }
        }
        var out: [TensorID: ClosedRange<Int>] = [:]
        for (t, f) in first {
            let end = graph.tensors[t].kind == .output ? steps - 1 : last[t]!
            out[t] = f...max(f, end)
        }
        return out
    }

    static func activationPeak(_ graph: Graph) -> OpReference? {
        let steps = graph.order.count
        guard steps > 0 else { return nil }
        var delta = [Int](repeating: 0, count: steps + 1)
        for (t, range) in liveIntervals(graph) {
            delta[range.lowerBound] += graph.tensors[t].byteSize
            delta[range.upperBound + 1] -= graph.tensors[t].byteSize
        }
        var live = 0
        var best = (0, -1)
        for s in 0..<steps {
            live += delta[s]
            if live > best.1 { best = (s, live) }
        }
        return reference(graph, step: best.0, bytes: best.1)
    }
}
