import KVArtifact

// Decode attention split by KV tokens (a plan whose f32 cache does not fit the compute tier):
// each tile attends over its token range of the cache and carries the online-softmax state —
// per sequence and query head the running maximum logit m, the running sum of exp(logit − m)
// and the Dv accumulators of the exp-weighted values, f32, (Dv + 2) values per head, as the
// tiling pass sized it. The first tile starts the state from the new token (its logit, weight 1,
// its value row) and writes the token's K/V rows for the cache manager; a new maximum rescales
// sum and accumulators by exp(m_old − m_new); the last tile writes sum-normalised outputs.
// Tokens past the cache's occupancy are skipped, so a tile beyond it passes the state through.

extension SwiftEmitter {
    /// Parameters of a token tile: q, k, v, key/value cache parts, state in; state out (or y), new keys, new values; cache-manager state.
    static let attentionTileSignature = "_ q: UnsafeMutablePointer<Float>, _ k: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, "
        + "_ kc: UnsafeMutablePointer<Float>, _ vc: UnsafeMutablePointer<Float>, _ s: UnsafeMutablePointer<Float>, "
        + "_ o: UnsafeMutablePointer<Float>, _ kn: UnsafeMutablePointer<Float>, _ vn: UnsafeMutablePointer<Float>, _ state: UnsafeMutableRawPointer"

    /// Tile `j` of `tiles` over the cache tokens `part` (dimension 1) of an f32 cache.
    func attentionTileKernel(_ op: ModelProgram.Op, cache: ExecutionSchedule.KVCache, part: ValuePart, tile j: Int, tiles: Int) -> (String, String) {
        let heads = op.int("heads") ?? 1
        let kvHeads = op.int("kv_heads") ?? heads
        let d = program.tensors[op.operands[0]].shape.last! / heads
        let c = cache.channels, dv = c / kvHeads, groupSize = heads / kvHeads
        let scale = Float(op.double("scale") ?? 1 / Double(d).squareRoot())
        let (t0, length) = (part.start, part.end - part.start)
        let first = j == 0, last = j == tiles - 1
        var body = """
            let occupancy = (state + \(cache.stateLayout.occupancy)).assumingMemoryBound(to: Int32.self)
            withUnsafeTemporaryAllocation(of: Float.self, capacity: \(dv)) { acc in
                for b in 0..<\(cache.batch) {

        """
        if first {
            body += """
                        (kn + b &* \(c)).update(from: k + b &* \(c), count: \(c))
                        (vn + b &* \(c)).update(from: v + b &* \(c), count: \(c))

            """
        }
        body += """
                    let held = min(Int(occupancy[b &* \(kvHeads * cache.slots)]) &- \(t0), \(length))
                    for h in 0..<\(heads) {
                        let g = h / \(groupSize)
                        let qh = q + (b &* \(heads) &+ h) &* \(d)

        """
        if first {
            body += """
                            var m = dot(qh, k + (b &* \(c) &+ g &* \(d)), \(d)) * \(scale), total: Float = 1
                            let vNew = v + (b &* \(c) &+ g &* \(dv))
                            for i in 0..<\(dv) { acc[i] = vNew[i] }

            """
        } else {
            body += """
                            let st = s + (b &* \(heads) &+ h) &* \(dv + 2)
                            var m = st[0], total = st[1]
                            for i in 0..<\(dv) { acc[i] = st[2 &+ i] }

            """
        }
        body += """
                        var t = 0
                        while t < held {
                            let l = dot(qh, kc + ((b &* \(length) &+ t) &* \(c) &+ g &* \(d)), \(d)) * \(scale)
                            if l > m {
                                let r = exp(m - l)
                                total *= r
                                for i in 0..<\(dv) { acc[i] *= r }
                                m = l
                            }
                            let w = exp(l - m)
                            total += w
                            let row = vc + ((b &* \(length) &+ t) &* \(c) &+ g &* \(dv))
                            for i in 0..<\(dv) { acc[i] += w * row[i] }
                            t &+= 1
                        }

        """
        if last {
            body += """
                            let yh = o + (b &* \(heads) &+ h) &* \(dv)
                            for i in 0..<\(dv) { yh[i] = acc[i] / total }

            """
        } else {
            body += """
                            let out = o + (b &* \(heads) &+ h) &* \(dv + 2)
                            out[0] = m
                            out[1] = total
                            for i in 0..<\(dv) { out[2 &+ i] = acc[i] }

            """
        }
        body += "            }\n        }\n    }\n"
        return (Self.attentionTileSignature, body)
    }
}
