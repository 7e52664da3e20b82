import KVGraph

/// The KV caches of a graph, layer by layer, as the KV budget pass sees them.
///
/// A layer is one attention op with the two caches it updates (keys first, then values); its
/// channels are the cache's elements per token and sequence (KV heads × head dimension), its
/// context the cache's token axis (`[batch, ctx, kv_heads, head_dim]`).
public struct KVGraphLayers: Sendable {
    /// Per layer: the key cache and value cache tensor indices.
    public var caches: [(keys: Int, values: Int)]
    public var channels: [Int]
    /// KV heads per layer.
    public var kvHeads: [Int]
    public var context: Int
    public var batch: Int

    /// The layers of `graph`, or an error naming what does not fit the expected cache shape.
    public init(_ graph: Graph) throws(PlanningError) {
        caches = []
        channels = []
        kvHeads = []
        context = 0
        batch = 1
        for opID in graph.order where graph.ops[opID].kind == .attention && graph.ops[opID].updates.count == 2 {
            let op = graph.ops[opID]
            let (k, v) = (op.updates[0], op.updates[1])
            let shape = graph.tensors[k].shape.sizes
            guard shape.count == 4, graph.tensors[v].shape.sizes == shape else {
                throw PlanningError("KV cache '\(graph.tensors[k].name)': expected [batch, ctx, kv_heads, head_dim] for keys and values alike")
            }
            if caches.isEmpty { (batch, context) = (shape[0], shape[1]) }
            guard shape[0] == batch, shape[1] == context else {
                throw PlanningError("KV cache '\(graph.tensors[k].name)': every layer's cache must have one batch and context (\(batch), \(context))")
            }
            caches.append((k, v))
            channels.append(shape[2] * shape[3])
            kvHeads.append(shape[2])
        }
        guard !caches.isEmpty else { throw PlanningError("the graph has no attention op with a KV cache, so there is no KV budget to plan") }
    }
}
